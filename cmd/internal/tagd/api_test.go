package tagd_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getorcreate/getorcreate/cmd/internal/tagd"
	"github.com/getorcreate/getorcreate/internal/testdb"
)

// TestAPI drives the JSON API over HTTP on every database: the happy paths,
// canonical keys, pagination, item tags, and every error status.
func TestAPI(t *testing.T) {
	testdb.Each(t, func(t *testing.T, d *testdb.DB) {
		srv, _ := startServer(t, d, tagd.Options{})
		base := srv.URL

		t.Run("submit", func(t *testing.T) {
			a := postTag(t, base, " Go ")
			if a.Status != http.StatusCreated {
				t.Fatalf("first submission: %d %s, want 201", a.Status, a.Body)
			}
			first := a.tag(t)
			if first.Key != "go" || first.Name != "Go" || first.Count != 1 || !first.Created || first.ID == 0 ||
				first.CreatedAt.IsZero() || !first.CreatedAt.Equal(first.UpdatedAt) {
				t.Fatalf("first submission: %+v", first)
			}
			if a.Header.Get("Location") != "/api/tags/go" {
				t.Fatalf("Location %q", a.Header.Get("Location"))
			}
			var raw map[string]any
			a.json(t, &raw)
			for _, f := range []string{"id", "name", "key", "count", "created", "created_at", "updated_at"} {
				if _, ok := raw[f]; !ok {
					t.Errorf("answer lacks %q: %s", f, a.Body)
				}
			}
			for i, form := range []string{"GO", "go", "\tgo\u00a0"} {
				if form == "\tgo\u00a0" {
					form = "\u00a0go\u3000" // no-break and ideographic spaces are whitespace too
				}
				a := postTag(t, base, form)
				got := a.tag(t)
				if a.Status != http.StatusOK || got.Created || got.ID != first.ID || got.Name != "Go" || got.Count != int64(i+2) {
					t.Fatalf("submitting %q: %d %+v", form, a.Status, got)
				}
				if got.UpdatedAt.Before(first.UpdatedAt) || !got.CreatedAt.Equal(first.CreatedAt) {
					t.Fatalf("timestamps: first %+v, now %+v", first, got)
				}
			}
		})

		t.Run("canonical", func(t *testing.T) {
			cases := []struct {
				forms []string
				key   string
			}{
				{[]string{"Straße", "STRASSE", "strasse"}, "strasse"},
				{[]string{"\u00e9cole", "E\u0301COLE"}, "\u00e9cole"}, // NFC: composed and decomposed é
				{[]string{"Big   Data", " big data "}, "big data"},
				{[]string{strings.Repeat("x", 64)}, strings.Repeat("x", 64)},
				{[]string{"日本語", " 日本語"}, "日本語"},
			}
			for _, c := range cases {
				for i, f := range c.forms {
					a := postTag(t, base, f)
					got := a.tag(t)
					if got.Key != c.key || got.Count != int64(i+1) || (i == 0) != (a.Status == http.StatusCreated) {
						t.Fatalf("%q: %d %+v, want key %q count %d", f, a.Status, got, c.key, i+1)
					}
				}
			}
			// The path takes any form of the name, and the key itself even
			// when folding made it longer than a name may be.
			long := strings.Repeat("ß", 64)
			if a := postTag(t, base, long); a.Status != http.StatusCreated {
				t.Fatalf("64 × ß: %d %s", a.Status, a.Body)
			}
			for _, p := range []string{"STRASSE", "Stra%C3%9Fe", "E%CC%81cole", url.PathEscape(strings.Repeat("ss", 64))} {
				a := do(t, nil, "GET", base+"/api/tags/"+p, "", "")
				if a.Status != http.StatusOK {
					t.Fatalf("GET %s: %d %s", p, a.Status, a.Body)
				}
			}
			wantError(t, do(t, nil, "GET", base+"/api/tags/unknown-tag", "", ""), 404, "not_found")
			// A slash in a name survives the path, escaped.
			a := postTag(t, base, "C/C++ ?#%")
			loc := a.Header.Get("Location")
			if a.Status != 201 || loc != "/api/tags/c%2Fc++%20%3F%23%25" {
				t.Fatalf("slash: %d, Location %q", a.Status, loc)
			}
			if a := do(t, nil, "GET", base+loc, "", ""); a.Status != 200 || a.tag(t).Key != "c/c++ ?#%" {
				t.Fatalf("GET %s: %d %s", loc, a.Status, a.Body)
			}
		})

		t.Run("list", func(t *testing.T) {
			// p-1 gets 1 submission, p-2 two, ...; ties broken by id.
			for i := 1; i <= 5; i++ {
				for j := 0; j < i; j++ {
					postTag(t, base, fmt.Sprintf("P-%d", i))
				}
			}
			postTag(t, base, "p_under") // _ must not act as a LIKE wildcard
			var all []tagd.Tag
			cursor := ""
			for pages := 0; ; pages++ {
				if pages > 10 {
					t.Fatal("pagination does not end")
				}
				var l tagd.ListAnswer
				do(t, nil, "GET", base+"/api/tags?prefix=P-&limit=2&cursor="+cursor, "", "").json(t, &l)
				all = append(all, l.Tags...)
				if l.Next == "" {
					break
				}
				cursor = l.Next
			}
			var keys []string
			for _, tg := range all {
				keys = append(keys, fmt.Sprintf("%s=%d", tg.Key, tg.Count))
			}
			want := []string{"p-5=5", "p-4=4", "p-3=3", "p-2=2", "p-1=1"}
			if !slices.Equal(keys, want) {
				t.Fatalf("pages gave %v, want %v", keys, want)
			}
			var under tagd.ListAnswer
			do(t, nil, "GET", base+"/api/tags?prefix=P_", "", "").json(t, &under)
			if len(under.Tags) != 1 || under.Tags[0].Key != "p_under" {
				t.Fatalf("prefix P_ matched %+v, want only p_under", under.Tags)
			}
			var l tagd.ListAnswer
			do(t, nil, "GET", base+"/api/tags", "", "").json(t, &l)
			if len(l.Tags) != 14 || l.Tags[0].Key != "p-5" || l.Next != "" {
				t.Fatalf("unfiltered list: %d tags, first %+v, next %q", len(l.Tags), l.Tags[0], l.Next)
			}
			for i := 1; i < len(l.Tags); i++ {
				if l.Tags[i].Count > l.Tags[i-1].Count {
					t.Fatalf("not by count descending: %+v", l.Tags)
				}
			}
		})

		t.Run("items", func(t *testing.T) {
			body := `{"tags": ["go", "Databases", "GO", "databases "]}`
			var first, second, got tagd.ItemAnswer
			a := do(t, nil, "PUT", base+"/api/items/post-1/tags", "application/json", body)
			if a.Status != 200 {
				t.Fatalf("PUT: %d %s", a.Status, a.Body)
			}
			a.json(t, &first)
			before := postTag(t, base, "go").tag(t).Count - 1 // the count PUT left
			if len(first.Tags) != 2 || first.Tags[0].Key != "go" || !first.Tags[0].Attached || first.Tags[0].Created ||
				first.Tags[1].Key != "databases" || !first.Tags[1].Created || first.Tags[1].Count != 1 || first.Tags[0].Count != before {
				t.Fatalf("first PUT: %+v", first)
			}
			do(t, nil, "PUT", base+"/api/items/post-1/tags", "application/json", body).json(t, &second)
			if second.Tags[0].Attached || second.Tags[1].Attached || second.Tags[1].Created ||
				second.Tags[0].Count != before+1 || second.Tags[1].Count != 1 {
				t.Fatalf("second PUT changed something: %+v", second)
			}
			do(t, nil, "GET", base+"/api/items/post-1/tags", "", "").json(t, &got)
			if got.Item != "post-1" || len(got.Tags) != 2 || got.Tags[0].Key != "databases" || got.Tags[1].Key != "go" {
				t.Fatalf("GET item: %+v", got)
			}
			// Another item counts the same tag again, once.
			do(t, nil, "PUT", base+"/api/items/post-2/tags", "application/json", `{"tags":["databases"]}`).json(t, &got)
			if got.Tags[0].Count != 2 || !got.Tags[0].Attached {
				t.Fatalf("second item: %+v", got)
			}
			wantError(t, do(t, nil, "GET", base+"/api/items/no-such-item/tags", "", ""), 404, "not_found")
			// One bad name refuses the whole request: nothing half-written.
			wantError(t, do(t, nil, "PUT", base+"/api/items/post-3/tags", "application/json", `{"tags":["fresh-tag","bad\u0007"]}`), 400, "invalid_tag")
			wantError(t, do(t, nil, "GET", base+"/api/tags/fresh-tag", "", ""), 404, "not_found")
			wantError(t, do(t, nil, "GET", base+"/api/items/post-3/tags", "", ""), 404, "not_found")
			wantError(t, do(t, nil, "PUT", base+"/api/items/post-3/tags", "application/json", `{"tags":[]}`), 400, "invalid_tags")
			many := `{"tags":["t0"` + strings.Repeat(`,"t"`, 100) + `]}`
			wantError(t, do(t, nil, "PUT", base+"/api/items/post-3/tags", "application/json", many), 400, "invalid_tags")
			wantError(t, do(t, nil, "PUT", base+"/api/items/%20x/tags", "application/json", `{"tags":["a"]}`), 400, "invalid_item")
		})

		t.Run("errors", func(t *testing.T) {
			const js = "application/json"
			post := func(body string) answer { return do(t, nil, "POST", base+"/api/tags", js, body) }
			for _, c := range []struct{ body, code string }{
				{`{`, "invalid_json"},
				{`{"name": "x", "colour": "red"}`, "invalid_json"}, // unknown field
				{`{"Name": "x", "name": "y", "nam": 1}`, "invalid_json"},
				{`{"name": 5}`, "invalid_json"},
				{`{"name": "a"} {"name": "b"}`, "invalid_json"},
				{`[]`, "invalid_json"},
				{`{}`, "invalid_tag"},
				{`{"name": null}`, "invalid_tag"},
				{`{"name": "   "}`, "invalid_tag"},
				{`{"name": "` + strings.Repeat("x", 65) + `"}`, "invalid_tag"},
				{`{"name": "a\u0001b"}`, "invalid_tag"},
				{`{"name": "a\nb"}`, "invalid_tag"},
				{`{"name": "a\u0085b"}`, "invalid_tag"}, // C1 control
				{"{\"name\": \"a\xffb\"}", "invalid_utf8"},
				{`{"name": "a\ud800b"}`, "invalid_utf8"}, // lone surrogate
			} {
				wantError(t, post(c.body), 400, c.code)
			}
			for _, q := range []string{"limit=0", "limit=101", "limit=x", "cursor=nope", "cursor=MTox%21", "sort=name", "prefix=%01"} {
				a := do(t, nil, "GET", base+"/api/tags?"+q, "", "")
				if a.Status != 400 {
					t.Fatalf("GET /api/tags?%s: %d %s", q, a.Status, a.Body)
				}
				wantError(t, a, 400, map[string]string{"limit": "invalid_limit", "cursor": "invalid_cursor", "sort": "invalid_query", "prefix": "invalid_tag"}[strings.Split(q, "=")[0]])
			}
			wantError(t, do(t, nil, "GET", base+"/api/nothing", "", ""), 404, "not_found")
			for _, c := range []struct{ method, path, allow string }{
				{"DELETE", "/api/tags", "GET, POST"},
				{"PATCH", "/api/tags/go", "GET"},
				{"POST", "/api/items/x/tags", "GET, PUT"},
			} {
				a := do(t, nil, c.method, base+c.path, js, `{}`)
				wantError(t, a, 405, "method_not_allowed")
				if a.Header.Get("Allow") != c.allow {
					t.Fatalf("%s %s: Allow %q", c.method, c.path, a.Header.Get("Allow"))
				}
			}
			big := `{"name": "` + strings.Repeat("x", 70<<10) + `"}`
			wantError(t, post(big), 413, "body_too_large")
			wantError(t, do(t, nil, "POST", base+"/api/tags", "text/plain", `{"name":"x"}`), 415, "unsupported_media_type")
			wantError(t, do(t, nil, "POST", base+"/api/tags", "", `{"name":"x"}`), 415, "unsupported_media_type")
			wantError(t, do(t, nil, "PUT", base+"/api/items/i/tags", "application/json; charset=latin1", `{"tags":["x"]}`), 415, "unsupported_media_type")
			if a := do(t, nil, "POST", base+"/api/tags", "application/json; charset=UTF-8", `{"name":"charset-ok"}`); a.Status != 201 {
				t.Fatalf("explicit UTF-8 charset refused: %d %s", a.Status, a.Body)
			}
			// None of the refused names became a tag.
			var l tagd.ListAnswer
			do(t, nil, "GET", base+"/api/tags?prefix=x&limit=100", "", "").json(t, &l)
			for _, tg := range l.Tags {
				if tg.Key != strings.Repeat("x", 64) {
					t.Fatalf("a refused submission was written: %+v", tg)
				}
			}
		})

		t.Run("ops", func(t *testing.T) {
			if a := do(t, nil, "GET", base+"/healthz", "", ""); a.Status != 200 {
				t.Fatalf("healthz %d", a.Status)
			}
			if a := do(t, nil, "GET", base+"/readyz", "", ""); a.Status != 200 {
				t.Fatalf("readyz %d %s", a.Status, a.Body)
			}
			a := do(t, nil, "GET", base+"/", "", "")
			if a.Status != 200 || !strings.HasPrefix(a.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(a.Body), `<form id="submit-form"`) {
				t.Fatalf("page: %d %s", a.Status, a.Header.Get("Content-Type"))
			}
			fams := scrape(t, base)
			for _, c := range []struct {
				family string
				labels map[string]string
				min    float64
			}{
				{"tagd_http_requests_total", map[string]string{"route": "POST /api/tags", "method": "POST", "status": "201"}, 1},
				{"tagd_http_requests_total", map[string]string{"route": "/api/tags", "method": "DELETE", "status": "405"}, 1},
				{"tagd_http_request_duration_seconds", map[string]string{"route": "POST /api/tags", "method": "POST", "status": "400"}, 1},
				{"tagd_getorcreate_total", map[string]string{"outcome": "created"}, 1},
				{"tagd_getorcreate_total", map[string]string{"outcome": "existing"}, 1},
				{"tagd_getorcreate_retried_total", nil, 0},
				{"tagd_rate_limited_total", nil, 0},
				{"go_sql_max_open_connections", map[string]string{"db_name": "tagd"}, 8},
				{"go_sql_open_connections", map[string]string{"db_name": "tagd"}, 1},
				{"go_goroutines", nil, 1},
				{"process_resident_memory_bytes", nil, 1 << 20},
			} {
				if v := sample(t, fams, c.family, c.labels); v < c.min {
					t.Errorf("%s%v = %v, want at least %v", c.family, c.labels, v, c.min)
				}
			}
			if v := sample(t, fams, "tagd_http_requests_total", map[string]string{"route": "/api/tags", "method": "DELETE", "status": "405"}); v != 1 {
				t.Errorf("one DELETE /api/tags counted %v times", v)
			}
			if v := sample(t, fams, "go_sql_max_open_connections", map[string]string{"db_name": "tagd"}); v != 8 {
				t.Errorf("pool size %v, want 8", v)
			}
		})
	})
}

// TestAuthRateLimitUnavailable covers 401, 429 and 503 on every database.
func TestAuthRateLimitUnavailable(t *testing.T) {
	testdb.Each(t, func(t *testing.T, d *testdb.DB) {
		t.Run("token", func(t *testing.T) {
			srv, _ := startServer(t, d, tagd.Options{Token: "s3cret"})
			wantError(t, postTag(t, srv.URL, "locked"), 401, "unauthorized")
			wantError(t, postTag(t, srv.URL, "locked", "Authorization", "Bearer wrong"), 401, "unauthorized")
			wantError(t, do(t, nil, "PUT", srv.URL+"/api/items/i/tags", "application/json", `{"tags":["locked"]}`), 401, "unauthorized")
			if a := postTag(t, srv.URL, "locked", "Authorization", "Bearer s3cret"); a.Status != 201 {
				t.Fatalf("with the token: %d %s", a.Status, a.Body)
			}
			if a := do(t, nil, "GET", srv.URL+"/api/tags/locked", "", ""); a.Status != 200 || a.tag(t).Count != 1 {
				t.Fatalf("reads need no token, and refused writes count nothing: %d %s", a.Status, a.Body)
			}
		})
		t.Run("rate", func(t *testing.T) {
			srv, _ := startServer(t, d, tagd.Options{RateLimit: 0.5, RateBurst: 3})
			for i := 0; i < 3; i++ {
				if a := postTag(t, srv.URL, "limited"); a.Status/100 != 2 {
					t.Fatalf("request %d within the burst: %d", i, a.Status)
				}
			}
			a := postTag(t, srv.URL, "limited")
			wantError(t, a, 429, "rate_limited")
			if a.Header.Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
			if a := do(t, nil, "GET", srv.URL+"/healthz", "", ""); a.Status != 200 {
				t.Fatal("health checks must not be rate limited")
			}
		})
		t.Run("unavailable", func(t *testing.T) {
			// The database goes away: a proxy in front of the real server
			// closes, cutting every connection, and new ones are refused.
			via, proxy := d.ThroughProxy(t)
			srv, _ := startServerDSN(t, d, via, tagd.Options{})
			if a := postTag(t, srv.URL, "before"); a.Status != 201 {
				t.Fatalf("%d %s", a.Status, a.Body)
			}
			proxy.Close()
			// A pooled connection idle for over a second is checked before
			// it is used again (by go-sql-driver always), so the requests
			// below find the database refusing, not a connection that dies
			// under a write (whose outcome would be unknown).
			time.Sleep(1200 * time.Millisecond)
			wantError(t, postTag(t, srv.URL, "after"), 503, "database_unavailable")
			wantError(t, do(t, nil, "GET", srv.URL+"/api/tags", "", ""), 503, "database_unavailable")
			wantError(t, do(t, nil, "PUT", srv.URL+"/api/items/i/tags", "application/json", `{"tags":["a"]}`), 503, "database_unavailable")
			wantError(t, do(t, nil, "GET", srv.URL+"/readyz", "", ""), 503, "database_unavailable")
			if a := do(t, nil, "GET", srv.URL+"/healthz", "", ""); a.Status != 200 {
				t.Fatal("healthz says whether the process is alive, not the database")
			}
		})
		t.Run("timeout", func(t *testing.T) {
			// A database too slow for DBTimeout is a 503 too: hold SQLite's
			// write lock, or a row lock on the servers, past the deadline.
			srv, store := startServer(t, d, tagd.Options{DBTimeout: 300 * time.Millisecond})
			if a := postTag(t, srv.URL, "held"); a.Status != 201 {
				t.Fatalf("%d %s", a.Status, a.Body)
			}
			tx, err := store.DB().BeginTx(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			tbl := store.Tables()[2]
			if _, err := tx.Exec("UPDATE " + tbl + " SET count = count + 0"); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			wantError(t, postTag(t, srv.URL, "held"), 503, "database_unavailable")
			if el := time.Since(start); el > 5*time.Second {
				t.Fatalf("503 took %v", el)
			}
		})
	})
}

// TestReconnect kills every session of tagd's pool on the server, as a
// database restart would: tagd must answer again without a restart of its
// own, and answer 503 (not 500) until then.
func TestReconnect(t *testing.T) {
	testdb.EachOf(t, []string{"postgres", "mysql"}, func(t *testing.T, d *testdb.DB) {
		srv, store := startServer(t, d, tagd.Options{})
		if a := postTag(t, srv.URL, "reconnect"); a.Status != 201 {
			t.Fatalf("%d %s", a.Status, a.Body)
		}
		// Hold every open connection of the pool at once to learn its
		// session id, then kill them all from another pool.
		db := store.DB()
		ctx := context.Background()
		idQuery, kill := "SELECT pg_backend_pid()", "SELECT pg_terminate_backend(%d)"
		if d.Kind == "mysql" {
			idQuery, kill = "SELECT CONNECTION_ID()", "KILL %d"
		}
		var ids []int64
		var conns []*sql.Conn
		for range db.Stats().OpenConnections {
			c, err := db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
			var id int64
			if err := c.QueryRowContext(ctx, idQuery).Scan(&id); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		for _, c := range conns {
			c.Close() // back to the pool, idle, for tagd's next request
		}
		if n := db.Stats().Idle; n != len(ids) {
			t.Fatalf("%d idle connections, want all %d back in the pool", n, len(ids))
		}
		for _, id := range ids {
			d.Exec(t, fmt.Sprintf(kill, id))
		}
		if len(ids) == 0 {
			t.Fatal("tagd's pool has no connection to cut")
		}
		var statuses []int
		acked, inDoubt := 1, 0
		for range 10 {
			a := postTag(t, srv.URL, "reconnect")
			statuses = append(statuses, a.Status)
			if a.Status == 200 {
				acked++
				break
			}
			switch {
			case a.Status == 503:
			case a.Status == 500 && strings.Contains(string(a.Body), "outcome_unknown"):
				inDoubt++ // the session died under the write: it may have counted
			default:
				t.Fatalf("after the cut: %d %s, want 503 or an unknown outcome until it answers again", a.Status, a.Body)
			}
		}
		if statuses[len(statuses)-1] != 200 {
			t.Fatalf("after killing %d sessions, answers were %v; want 503s, then 200", len(ids), statuses)
		}
		var count int
		if err := d.SQL.QueryRow("SELECT count FROM " + store.Tables()[2] + " WHERE tag_key = 'reconnect'").Scan(&count); err != nil {
			t.Fatal(err)
		}
		if count < acked || count > acked+inDoubt {
			t.Fatalf("count %d after %d acknowledged and %d in-doubt submissions", count, acked, inDoubt)
		}
		t.Logf("killed %d sessions; answers %v; count %d", len(ids), statuses, count)
	})
}
