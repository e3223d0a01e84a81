package tagd_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getorcreate/getorcreate/cmd/internal/tagd"
	"github.com/getorcreate/getorcreate/internal/testdb"
)

// The tests in this file are the findings of "tagd against hostile
// clients", each turned into a check that passes.

// TestFloodStaysBounded sends requests with made-up 1 KB methods and random
// paths: the metrics keep a fixed set of series, /metrics stays small and
// the heap does not grow with the number of requests.
func TestFloodStaysBounded(t *testing.T) {
	srv, _ := startServer(t, testdb.Open(t, "sqlite"), tagd.Options{})
	hc := client(8)
	send := func(n int) {
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				for i := w; i < n; i += 8 {
					b := make([]byte, 512)
					rand.Read(b)
					method := strings.ToUpper(hex.EncodeToString(b)) // 1 KB, a valid token
					path := "/api/tags"
					if i%2 == 1 {
						path = "/" + hex.EncodeToString(b[:16]) + "/" + hex.EncodeToString(b[16:32])
					}
					req, _ := http.NewRequest(method, srv.URL+path, nil)
					res, err := hc.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					res.Body.Close()
					if res.StatusCode != 405 && res.StatusCode != 404 {
						t.Errorf("%s with a made-up method: %d", path, res.StatusCode)
						return
					}
				}
			})
		}
		wg.Wait()
	}
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	metricsSize := func() int { return len(do(t, nil, "GET", srv.URL+"/metrics", "", "").Body) }
	send(500) // every series the flood can make exists now
	metricsSize()
	size0, heap0 := metricsSize(), heap()
	const flood = 10000
	send(flood)
	size1, heap1 := metricsSize(), heap()
	fams := scrape(t, srv.URL)
	series := len(fams["tagd_http_requests_total"].GetMetric())
	t.Logf("%d requests with 1 KB made-up methods: /metrics %d -> %d bytes, heap %.1f -> %.1f MB, %d request series",
		flood, size0, size1, float64(heap0)/1e6, float64(heap1)/1e6, series)
	if series > 4 {
		t.Errorf("%d series of tagd_http_requests_total, want at most 4 (2 routes x OTHER x 1 status, the GET /metrics ones)", series)
	}
	for _, m := range fams["tagd_http_requests_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if len(l.GetValue()) > 40 {
				t.Errorf("a label value a client chose: %s=%.60s...", l.GetName(), l.GetValue())
			}
		}
	}
	// Only numbers grow (more digits in the counters and memory gauges).
	if size1 > size0+2048 || size1 > 32<<10 {
		t.Errorf("/metrics grew from %d to %d bytes", size0, size1)
	}
	// 10,000 requests each keeping 1 KB would add 10 MB and more.
	if heap1 > heap0+4<<20 {
		t.Errorf("the heap grew by %.1f MB over the flood", float64(heap1-heap0)/1e6)
	}
	if sample(t, fams, "tagd_http_requests_total", map[string]string{"route": "/api/tags", "method": "OTHER", "status": "405"}) < flood/2 {
		t.Error("the made-up methods were not counted as OTHER")
	}
}

// TestOpsEndpoints: /metrics and /readyz need the token when one is set,
// are rate-limited, and /readyz caches its probe and tells no connection
// details; with OpsAddr they move to a listener of their own.
func TestOpsEndpoints(t *testing.T) {
	t.Run("token", func(t *testing.T) {
		srv, _ := startServer(t, testdb.Open(t, "sqlite"), tagd.Options{Token: "s3cret"})
		wantError(t, do(t, nil, "GET", srv.URL+"/metrics", "", ""), 401, "unauthorized")
		wantError(t, do(t, nil, "GET", srv.URL+"/readyz", "", ""), 401, "unauthorized")
		scrape(t, srv.URL, "Authorization", "bearer s3cret") // the scheme in any case
		if a := do(t, nil, "GET", srv.URL+"/readyz", "", "", "Authorization", "BEARER s3cret"); a.Status != 200 {
			t.Fatalf("readyz with the token: %d %s", a.Status, a.Body)
		}
		if a := do(t, nil, "GET", srv.URL+"/healthz", "", ""); a.Status != 200 {
			t.Fatalf("healthz needs no token: %d", a.Status)
		}
	})
	t.Run("rate", func(t *testing.T) {
		srv, _ := startServer(t, testdb.Open(t, "sqlite"), tagd.Options{RateLimit: 0.5, RateBurst: 2})
		do(t, nil, "GET", srv.URL+"/metrics", "", "")
		do(t, nil, "GET", srv.URL+"/readyz", "", "")
		wantError(t, do(t, nil, "GET", srv.URL+"/readyz", "", ""), 429, "rate_limited")
		wantError(t, do(t, nil, "GET", srv.URL+"/metrics", "", ""), 429, "rate_limited")
		req, _ := http.NewRequest(strings.Repeat("X", 1024), srv.URL+"/api/tags", nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 429 {
			t.Fatalf("a made-up method is not rate-limited: %d", res.StatusCode)
		}
	})
	testdb.EachOf(t, []string{"postgres", "mysql", "sqlite"}, func(t *testing.T, d *testdb.DB) {
		srv, store := startServer(t, d, tagd.Options{})
		if a := do(t, nil, "GET", srv.URL+"/readyz", "", ""); a.Status != 200 {
			t.Fatalf("readyz: %d %s", a.Status, a.Body)
		}
		store.DB().Close()
		if a := do(t, nil, "GET", srv.URL+"/readyz", "", ""); a.Status != 200 {
			t.Fatalf("readyz within a second of a good probe pinged again: %d %s", a.Status, a.Body)
		}
		time.Sleep(1100 * time.Millisecond)
		a := do(t, nil, "GET", srv.URL+"/readyz", "", "")
		wantError(t, a, 503, "database_unavailable")
		for _, secret := range []string{"127.0.0.1", "user", "postgres", "root", "3306", "5432", "closed", "sql:"} {
			if strings.Contains(string(a.Body), secret) {
				t.Errorf("readyz tells %q: %s", secret, a.Body)
			}
		}
	})
	t.Run("ops-addr", func(t *testing.T) {
		main, ops := make(chan string, 1), make(chan string, 1)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		pfx := prefix()
		d := testdb.Open(t, "sqlite")
		t.Cleanup(func() { dropTables(d, pfx) })
		go func() {
			done <- tagd.Run(ctx, tagd.Config{DSN: d.DSN, Addr: "127.0.0.1:0", OpsAddr: "127.0.0.1:0", TablePrefix: pfx,
				Ready: func(a net.Addr) { main <- "http://" + a.String() }, OpsReady: func(a net.Addr) { ops <- "http://" + a.String() },
				Options: tagd.Options{Token: "s3cret", Logger: quietLogger()}})
		}()
		var m, o string
		for m == "" || o == "" {
			select {
			case m = <-main:
			case o = <-ops:
			case err := <-done:
				t.Fatalf("Run: %v", err)
			case <-time.After(20 * time.Second):
				t.Fatal("Run did not start listening")
			}
		}
		wantError(t, do(t, nil, "GET", m+"/metrics", "", "", "Authorization", "Bearer s3cret"), 404, "not_found")
		wantError(t, do(t, nil, "GET", m+"/readyz", "", ""), 404, "not_found")
		scrape(t, o) // no token on the ops address
		if a := do(t, nil, "GET", o+"/readyz", "", ""); a.Status != 200 {
			t.Fatalf("ops readyz: %d %s", a.Status, a.Body)
		}
		wantError(t, do(t, nil, "GET", o+"/api/tags", "", ""), 404, "not_found")
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

// TestSecrets: the token comes from a file or the environment, is never
// logged, and the Bearer scheme is case-insensitive.
func TestSecrets(t *testing.T) {
	const tok = "tok-3f9a2c"
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	os.WriteFile(file, []byte(tok+"\n"), 0o600)
	noenv := func(string) string { return "" }
	if got, err := tagd.LoadToken(file, noenv); err != nil || got != tok {
		t.Fatalf("LoadToken(file) = %q, %v", got, err)
	}
	if got, err := tagd.LoadToken("", func(string) string { return tok }); err != nil || got != tok {
		t.Fatalf("LoadToken(env) = %q, %v", got, err)
	}
	os.WriteFile(filepath.Join(dir, "empty"), []byte("\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "spaced"), []byte("a b\n"), 0o600)
	for _, c := range []struct {
		file string
		env  func(string) string
	}{
		{filepath.Join(dir, "empty"), noenv},
		{filepath.Join(dir, "spaced"), noenv},
		{filepath.Join(dir, "missing"), noenv},
		{file, func(string) string { return tok }}, // both: which one?
	} {
		var ce *tagd.ConfigError
		if _, err := tagd.LoadToken(c.file, c.env); !errors.As(err, &ce) {
			t.Errorf("LoadToken(%s): %v, want a *ConfigError", c.file, err)
		}
	}

	var logs bytes.Buffer
	var mu sync.Mutex
	srv, _ := startServer(t, testdb.Open(t, "sqlite"), tagd.Options{Token: tok,
		Logger: slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	for _, h := range []string{"Bearer " + tok, "bearer " + tok, "BEARER  " + tok} {
		if a := postTag(t, srv.URL, "secret-"+hex.EncodeToString([]byte(h[:3])), "Authorization", h); a.Status != 201 {
			t.Fatalf("Authorization %q: %d %s", h, a.Status, a.Body)
		}
	}
	wantError(t, postTag(t, srv.URL, "x", "Authorization", "Basic "+tok), 401, "unauthorized")
	wantError(t, postTag(t, srv.URL, "x", "Authorization", "Bearer wrong-"+tok), 401, "unauthorized")
	mu.Lock()
	defer mu.Unlock()
	if logs.Len() == 0 {
		t.Fatal("nothing was logged")
	}
	if strings.Contains(logs.String(), tok) {
		t.Fatalf("the token is in the log:\n%s", logs.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// TestRateLimitIPv6Prefix: addresses inside one /64 share a bucket.
func TestRateLimitIPv6Prefix(t *testing.T) {
	d := testdb.Open(t, "sqlite")
	for _, c := range []struct {
		prefix     int
		sameBucket bool
	}{{0, true}, {64, true}, {128, false}} {
		srv, _ := startServer(t, d, tagd.Options{RateLimit: 0.01, RateBurst: 1, RateIPv6Prefix: c.prefix})
		h := srv.Config.Handler
		get := func(remote string) int {
			req := httptest.NewRequest("GET", "/api/tags", nil)
			req.RemoteAddr = remote
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			return rec.Code
		}
		if s := get("[2001:db8:1:2::1]:4000"); s != 200 {
			t.Fatalf("first request: %d", s)
		}
		second := get("[2001:db8:1:2:dead:beef:1:2]:4001") // same /64, another address
		if (second == 429) != c.sameBucket {
			t.Errorf("prefix %d: a second address in the /64 got %d", c.prefix, second)
		}
		if s := get("[2001:db8:1:3::1]:4000"); s != 200 {
			t.Errorf("prefix %d: another /64 got %d", c.prefix, s)
		}
	}
}

// TestStrictInput: duplicate and case-variant JSON fields, malformed query
// strings, a slow body, dot segments and bad settings are all refused in
// the API's words, and answers carry only the fields of their endpoint.
func TestStrictInput(t *testing.T) {
	srv, _ := startServer(t, testdb.Open(t, "sqlite"), tagd.Options{BodyTimeout: 300 * time.Millisecond})
	base := srv.URL
	const js = "application/json"
	for _, body := range []string{`{"name":"a","name":"b"}`, `{"Name":"x"}`, `{"NAME":"x"}`, `{"name":"x","Name":"y"}`} {
		a := do(t, nil, "POST", base+"/api/tags", js, body)
		wantError(t, a, 400, "invalid_json")
		if strings.Contains(string(a.Body), "Go value") || strings.Contains(string(a.Body), "struct") {
			t.Errorf("%s: the message speaks Go: %s", body, a.Body)
		}
	}
	wantError(t, do(t, nil, "GET", base+"/api/tags/b", "", ""), 404, "not_found") // nothing was created
	for _, q := range []string{"limit=1;prefix=a", "limit=1&limit=2", "prefix=%zz"} {
		wantError(t, do(t, nil, "GET", base+"/api/tags?"+q, "", ""), 400, "invalid_query")
	}
	postTag(t, base, "go")
	wantError(t, do(t, nil, "GET", base+"/api/tags/go?verbose=1", "", ""), 400, "invalid_query")
	do(t, nil, "PUT", base+"/api/items/i1/tags", js, `{"tags":["go"]}`)
	for _, c := range []struct{ path, absent string }{
		{"/api/tags/go", `"created"`},
		{"/api/items/i1/tags", `"attached"`},
		{"/api/items/i1/tags", `"created"`},
	} {
		if a := do(t, nil, "GET", base+c.path, "", ""); a.Status != 200 || strings.Contains(string(a.Body), c.absent) {
			t.Errorf("GET %s: %d %s; want no %s", c.path, a.Status, a.Body, c.absent)
		}
	}
	// Dot segments get a JSON 404, not the mux's plain-text redirect.
	for _, p := range []string{"/api/../api/tags", "/api/tags/./go", "//api/tags"} {
		req, _ := http.NewRequest("GET", base+"/", nil)
		req.URL.Path = p
		res, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 404 || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
			t.Errorf("GET %s: %d %s, want a JSON 404", p, res.StatusCode, res.Header.Get("Content-Type"))
		}
	}
	// A body slower than BodyTimeout: 408, and the connection is closed.
	res := raw(t, srv, "POST /api/tags HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n{\"na")
	wantError(t, res, 408, "request_timeout")
	if res.Header.Get("Connection") != "close" {
		t.Error("408 without Connection: close")
	}

	// Settings that make no sense stop Run before it opens anything.
	for _, o := range []tagd.Options{{RateLimit: -5}, {MaxBodyBytes: -1}, {DBTimeout: -time.Second}, {BodyTimeout: -1},
		{RateBurst: 3}, {RateIPv6Prefix: 129}, {Token: "has space"}} {
		var ce *tagd.ConfigError
		if err := tagd.Run(context.Background(), tagd.Config{DSN: "sqlite:" + filepath.Join(t.TempDir(), "x.db"), Options: o}); !errors.As(err, &ce) {
			t.Errorf("Run with %+v: %v, want a *ConfigError", o, err)
		}
	}
	var ce *tagd.ConfigError
	if err := (tagd.Config{MaxConns: -1}).Validate(); !errors.As(err, &ce) || !strings.Contains(err.Error(), "MaxConns") {
		t.Errorf("MaxConns -1: %v", err)
	}
}

// TestMalformedRequestIsPlainText pins what TAGD.md documents: a request
// net/http cannot parse is answered by net/http, in plain text, before
// tagd sees it.
func TestMalformedRequestIsPlainText(t *testing.T) {
	srv, _ := startServer(t, testdb.Open(t, "sqlite"), tagd.Options{})
	res := raw(t, srv, "GET /api/tags HTTP/1.1\r\nHost x\r\n\r\n")
	if res.Status != 400 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") || res.Header.Get("Connection") != "close" {
		t.Fatalf("a malformed header: %d %q %s", res.Status, res.Header.Get("Content-Type"), res.Body)
	}
}

// raw writes request as is on a new connection to srv and reads the answer.
func raw(t *testing.T, srv *httptest.Server, request string) answer {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, request)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(res.Body)
	if res.Close {
		res.Header.Set("Connection", "close") // ReadResponse moves it to res.Close
	}
	return answer{res.StatusCode, res.Header, buf.Bytes()}
}
