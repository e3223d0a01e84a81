package tagd_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/getorcreate/getorcreate/cmd/internal/tagd"
	"github.com/getorcreate/getorcreate/internal/testdb"
)

// TestHistory: submissions and item links land in the tag's current
// minute, and the minutes add up to the count.
func TestHistory(t *testing.T) {
	testdb.Each(t, func(t *testing.T, d *testdb.DB) {
		srv, _ := startServer(t, d, tagd.Options{})
		for range 3 {
			postTag(t, srv.URL, "Charted")
		}
		do(t, nil, "PUT", srv.URL+"/api/items/i1/tags", "application/json", `{"tags":["charted"]}`)
		var h tagd.HistoryAnswer
		a := do(t, nil, "GET", srv.URL+"/api/tags/CHARTED/history?minutes=5", "", "")
		a.json(t, &h)
		if a.Status != 200 || h.Key != "charted" || h.Name != "Charted" || h.Minutes != 5 || len(h.Counts) != 5 {
			t.Fatalf("history: %d %s", a.Status, a.Body)
		}
		var sum int64
		for _, c := range h.Counts {
			sum += c
		}
		// The minute may turn between the submissions; all are in the last two.
		if sum != 4 || h.Counts[0]+h.Counts[1]+h.Counts[2] != 0 {
			t.Fatalf("history %v, want 4 submissions in the last minutes", h.Counts)
		}
		if now := time.Now().UTC(); h.Start.After(now) || now.Sub(h.Start) > 5*time.Minute {
			t.Fatalf("history starts at %v, now is %v", h.Start, now)
		}
		for _, q := range []string{"minutes=0", "minutes=1441", "minutes=x"} {
			wantError(t, do(t, nil, "GET", srv.URL+"/api/tags/charted/history?"+q, "", ""), 400, "invalid_minutes")
		}
		wantError(t, do(t, nil, "GET", srv.URL+"/api/tags/nope/history", "", ""), 404, "not_found")
		wantError(t, do(t, nil, "POST", srv.URL+"/api/tags/charted/history", "application/json", "{}"), 405, "method_not_allowed")
	})
}

// TestMigrateFromVersion1 opens a database that the previous build
// migrated (version 1, with tags counted): this build adds version 2, puts
// each tag's count in the minute of its last update, and keeps working.
func TestMigrateFromVersion1(t *testing.T) {
	testdb.Each(t, func(t *testing.T, d *testdb.DB) {
		pfx := prefix()
		t.Cleanup(func() { dropTables(d, pfx) })
		v1, err := os.ReadFile(filepath.Join("migrations", d.Kind, "001_schema.sql"))
		if err != nil {
			t.Fatal(err)
		}
		for _, stmt := range strings.Split(strings.ReplaceAll(string(v1), "{p}", pfx), ";\n") {
			d.Exec(t, stmt)
		}
		d.Exec(t, "CREATE TABLE "+pfx+"tagd_schema (version INTEGER NOT NULL PRIMARY KEY)")
		d.Exec(t, "INSERT INTO "+pfx+"tagd_schema (version) VALUES (1)")
		at := time.Now().UTC().Add(-30 * time.Minute).Truncate(time.Microsecond)
		ph := "?, ?, ?, ?, ?"
		if d.Kind == "postgres" {
			ph = "$1, $2, $3, $4, $5"
		}
		if _, err := d.SQL.Exec("INSERT INTO "+pfx+"tags (tag_key, name, count, created_at, updated_at) VALUES ("+ph+")", "old", "Old", 7, at, at); err != nil {
			t.Fatal(err)
		}
		store, err := tagd.OpenStore(context.Background(), openDB(t, d, pfx), d.Kind, pfx)
		if err != nil {
			t.Fatal(err)
		}
		var v int
		d.SQL.QueryRow("SELECT MAX(version) FROM " + pfx + "tagd_schema").Scan(&v)
		if v != tagd.SchemaVersion || v < 2 {
			t.Fatalf("schema version %d, want %d", v, tagd.SchemaVersion)
		}
		h, err := store.History(context.Background(), "old", 60, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if h.Counts[29] != 7 && h.Counts[30] != 7 {
			t.Fatalf("the old count is not in the minute of its last update (30 minutes ago): %v", h.Counts)
		}
		tag, _, err := store.Submit(context.Background(), "OLD")
		if err != nil || tag.Count != 8 || tag.Name != "Old" {
			t.Fatalf("submitting after the upgrade: %+v, %v", tag, err)
		}
	})
}
