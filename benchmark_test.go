package getorcreate_test

import (
	"context"
	"database/sql"
	"strconv"
	"testing"

	"github.com/getorcreate/getorcreate"
	"github.com/getorcreate/getorcreate/internal/testdb"
)

// The micro-benchmarks run each single-row call path on SQLite beside the
// same statement written by hand with database/sql, so that the ns/op and
// allocs/op of the library's own layer (struct mapping, plan lookup,
// argument binding, error classification) show as the difference:
//
//	go test -run '^$' -bench . -benchmem
//
// Each path is measured in its steady state: a table whose calls mostly
// find their key reads first, one whose calls mostly create writes first
// (see docs/HOW-IT-WORKS.md), so the new-key benchmarks first create a few
// keys untimed to let the table settle. The SQL by hand is the one
// statement the SQLite dialect sends on that path, twice: "plain" through
// db.QueryRowContext, as most code is written, and "prepared" through a
// *sql.Stmt prepared once, as the library does for its own calls.
//
//	GetOrCreate, existing key:    SELECT ... WHERE name = ?
//	GetOrCreate, new key:         INSERT ... SELECT ... WHERE NOT EXISTS (...) ON CONFLICT DO NOTHING RETURNING ...
//	UpdateOrCreate, existing key: UPDATE ... SET count = (count + ?) WHERE name = ? RETURNING ...
//	UpdateOrCreate, new key:      the guarded INSERT, with count

// benchRow is the row of the micro-benchmarks' table.
type benchRow struct {
	ID    int64  `db:"id"`
	Name  string `db:"name"`
	Count int64  `db:"count"`
}

const benchKeys = 1000

// newKey returns a key that no benchmark has used: b.Run runs a body more
// than once, so a counter local to the body would repeat keys.
var newKeySeq int

func newKey() string {
	newKeySeq++
	return "n" + strconv.Itoa(newKeySeq)
}

type benchEnv struct {
	db    *sql.DB
	table *getorcreate.Table[benchRow]
	// The statements the SQLite dialect compiles for this table.
	find, guardedName, guardedNameCount, update string
}

// openBench gives each sub-benchmark a fresh table of benchKeys rows, so
// that no benchmark runs on a table another one grew.
func openBench(b *testing.B) *benchEnv {
	b.Helper()
	db := testdb.Open(b, "sqlite")
	name := db.Create(b, map[string]string{"": `CREATE TABLE %s (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, count INTEGER NOT NULL DEFAULT 0)`})
	ctx := context.Background()
	tx, err := db.SQL.BeginTx(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	for i := range benchKeys {
		if _, err := tx.Exec("INSERT INTO "+name+" (name) VALUES (?)", "k"+strconv.Itoa(i)); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	t, err := getorcreate.Open[benchRow](ctx, db.SQL, name, "name")
	if err != nil {
		b.Fatal(err)
	}
	q := `"` + name + `"`
	cols := `"id", "name", "count"`
	guard := ` WHERE NOT EXISTS (SELECT 1 FROM ` + q + ` WHERE "name" = ?) ON CONFLICT ("name") DO NOTHING RETURNING ` + cols
	return &benchEnv{
		db: db.SQL, table: t,
		find:             `SELECT ` + cols + ` FROM ` + q + ` WHERE "name" = ?`,
		guardedName:      `INSERT INTO ` + q + ` ("name") SELECT ?` + guard,
		guardedNameCount: `INSERT INTO ` + q + ` ("name", "count") SELECT ?, ?` + guard,
		update:           `UPDATE ` + q + ` SET "count" = ("count" + ?) WHERE "name" = ? RETURNING ` + cols,
	}
}

// stmt returns the statement of that name.
func (e *benchEnv) stmt(name string) string {
	return map[string]string{"find": e.find, "guardedName": e.guardedName, "guardedNameCount": e.guardedNameCount, "update": e.update}[name]
}

// byHand runs one statement per call the way a careful hand-written call
// does (QueryRow and Scan), unprepared and prepared, checking that it
// found or created a row.
func byHand(b *testing.B, query string, args func() []any) {
	ctx := context.Background()
	b.Run("plain", func(b *testing.B) {
		e := openBench(b)
		q := e.stmt(query)
		b.ReportAllocs()
		for b.Loop() {
			var r benchRow
			if err := e.db.QueryRowContext(ctx, q, args()...).Scan(&r.ID, &r.Name, &r.Count); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("prepared", func(b *testing.B) {
		e := openBench(b)
		st, err := e.db.PrepareContext(ctx, e.stmt(query))
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		b.ReportAllocs()
		for b.Loop() {
			var r benchRow
			if err := st.QueryRowContext(ctx, args()...).Scan(&r.ID, &r.Name, &r.Count); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// settle makes the table write first, as it does when its calls mostly
// create.
func settle(b *testing.B, e *benchEnv, update bool) {
	ctx := context.Background()
	for range 64 {
		var err error
		if update {
			_, err = e.table.UpdateOrCreate(ctx, benchRow{Name: newKey(), Count: 1}, getorcreate.Add("count", 1))
		} else {
			_, err = e.table.GetOrCreate(ctx, benchRow{Name: newKey()})
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGetOrCreateExisting(b *testing.B) {
	ctx := context.Background()
	i := 0
	existing := func() string { i++; return "k" + strconv.Itoa(i%benchKeys) }
	b.Run("getorcreate", func(b *testing.B) {
		e := openBench(b)
		b.ReportAllocs()
		for b.Loop() {
			res, err := e.table.GetOrCreate(ctx, benchRow{Name: existing()})
			if err != nil || res.Created {
				b.Fatal(err, res)
			}
		}
	})
	byHand(b, "find", func() []any { return []any{existing()} })
}

func BenchmarkGetOrCreateNew(b *testing.B) {
	ctx := context.Background()
	b.Run("getorcreate", func(b *testing.B) {
		e := openBench(b)
		settle(b, e, false)
		b.ReportAllocs()
		for b.Loop() {
			res, err := e.table.GetOrCreate(ctx, benchRow{Name: newKey()})
			if err != nil || !res.Created {
				b.Fatal(err, res)
			}
		}
	})
	byHand(b, "guardedName", func() []any { k := newKey(); return []any{k, k} })
}

func BenchmarkUpdateOrCreateExisting(b *testing.B) {
	ctx := context.Background()
	add := getorcreate.Add("count", 1)
	i := 0
	existing := func() string { i++; return "k" + strconv.Itoa(i%benchKeys) }
	b.Run("getorcreate", func(b *testing.B) {
		e := openBench(b)
		b.ReportAllocs()
		for b.Loop() {
			res, err := e.table.UpdateOrCreate(ctx, benchRow{Name: existing(), Count: 1}, add)
			if err != nil || res.Created {
				b.Fatal(err, res)
			}
		}
	})
	byHand(b, "update", func() []any { return []any{1, existing()} })
}

func BenchmarkUpdateOrCreateNew(b *testing.B) {
	ctx := context.Background()
	add := getorcreate.Add("count", 1)
	b.Run("getorcreate", func(b *testing.B) {
		e := openBench(b)
		settle(b, e, true)
		b.ReportAllocs()
		for b.Loop() {
			res, err := e.table.UpdateOrCreate(ctx, benchRow{Name: newKey(), Count: 1}, add)
			if err != nil || !res.Created {
				b.Fatal(err, res)
			}
		}
	})
	byHand(b, "guardedNameCount", func() []any { k := newKey(); return []any{k, 1, k} })
}
