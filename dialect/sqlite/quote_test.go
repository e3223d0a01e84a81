package sqlite

import (
	"database/sql"
	"strings"
	"testing"

	msqlite "modernc.org/sqlite"
)

var _ = msqlite.Driver{}

// FuzzQuote creates a table and a column whose names are the fuzzed string,
// quoted by the dialect, and checks that SQLite's own catalog holds exactly
// that name: whatever the string, quoting can neither break out of the
// identifier nor change it.
func FuzzQuote(f *testing.F) {
	for _, s := range []string{"tags", `a"b`, `"; DROP TABLE x; --`, "`", "ü", "a b", `""`, "x'y", "[t]"} {
		f.Add(s)
	}
	db, err := sql.Open("sqlite", "file:fuzz?mode=memory&cache=shared")
	if err != nil {
		f.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	f.Cleanup(func() { db.Close() })
	f.Fuzz(func(t *testing.T, name string) {
		if name == "" || strings.ContainsAny(name, ".\x00") || strings.HasPrefix(strings.ToLower(name), "sqlite_") {
			t.Skip() // dots qualify names; NUL ends C strings; sqlite_ is reserved
		}
		q := quote(name)
		if _, err := db.Exec("CREATE TABLE " + q + " (" + q + " TEXT)"); err != nil {
			t.Fatalf("CREATE TABLE %s: %v", q, err)
		}
		defer db.Exec("DROP TABLE " + q)
		var got string
		if err := db.QueryRow("SELECT name FROM pragma_table_info(?)", name).Scan(&got); err != nil || got != name {
			t.Fatalf("column of %q: got %q, %v", name, got, err)
		}
		var n int
		if err := db.QueryRow("SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table'").Scan(&n); err != nil || n != 1 {
			t.Fatalf("%d tables after creating %q (%v): the name broke out", n, name, err)
		}
	})
}
