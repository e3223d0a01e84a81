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
// same statements written by hand with database/sql, so that the ns/op and
// allocs/op of the library's own layer (struct mapping, plan lookup,
// argument binding, error classification) show as the difference:
//
//	go test -run '^$' -bench . -benchmem
//
// The hand-written SQL is the SQL the SQLite dialect issues for that path
// (see dialect/sqlite): GetOrCreate is a SELECT, plus an INSERT ... ON
// CONFLICT DO NOTHING RETURNING when the key is new; UpdateOrCreate is an
// UPDATE ... RETURNING, plus that INSERT when it touched nothing.

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
	name  string
	// The statements the SQLite dialect compiles for this table.
	find, insertName, insertNameCount, update string
}

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
	return &benchEnv{
		db: db.SQL, table: t, name: name,
		find:            `SELECT ` + cols + ` FROM ` + q + ` WHERE "name" = ?`,
		insertName:      `INSERT INTO ` + q + ` ("name") VALUES (?) ON CONFLICT ("name") DO NOTHING RETURNING ` + cols,
		insertNameCount: `INSERT INTO ` + q + ` ("name", "count") VALUES (?, ?) ON CONFLICT ("name") DO NOTHING RETURNING ` + cols,
		update:          `UPDATE ` + q + ` SET "count" = ("count" + ?) WHERE "name" = ? RETURNING ` + cols,
	}
}

// scanOne is what a careful hand-written call does: QueryRow and Scan,
// telling a miss from an error.
func scanOne(ctx context.Context, db *sql.DB, q string, r *benchRow, args ...any) (bool, error) {
	err := db.QueryRowContext(ctx, q, args...).Scan(&r.ID, &r.Name, &r.Count)
	if err == sql.ErrNoRows {
		return false, nil
	}
	return err == nil, err
}

func BenchmarkGetOrCreateExisting(b *testing.B) {
	ctx := context.Background()
	b.Run("getorcreate", func(b *testing.B) {
		e := openBench(b)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			res, err := e.table.GetOrCreate(ctx, benchRow{Name: "k" + strconv.Itoa(i%benchKeys)})
			if err != nil || res.Created {
				b.Fatal(err, res)
			}
			i++
		}
	})
	b.Run("plain", func(b *testing.B) {
		e := openBench(b)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			var r benchRow
			found, err := scanOne(ctx, e.db, e.find, &r, "k"+strconv.Itoa(i%benchKeys))
			if err != nil || !found {
				b.Fatal(err, found)
			}
			i++
		}
	})
}

func BenchmarkGetOrCreateNew(b *testing.B) {
	ctx := context.Background()
	b.Run("getorcreate", func(b *testing.B) {
		e := openBench(b)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			res, err := e.table.GetOrCreate(ctx, benchRow{Name: newKey()})
			if err != nil || !res.Created {
				b.Fatal(err, res)
			}
			i++
		}
	})
	b.Run("plain", func(b *testing.B) {
		e := openBench(b)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			var r benchRow
			k := newKey()
			found, err := scanOne(ctx, e.db, e.find, &r, k)
			if err != nil || found {
				b.Fatal(err, found)
			}
			created, err := scanOne(ctx, e.db, e.insertName, &r, k)
			if err != nil || !created {
				b.Fatal(err, created)
			}
			i++
		}
	})
}

func BenchmarkUpdateOrCreateExisting(b *testing.B) {
	ctx := context.Background()
	add := getorcreate.Add("count", 1)
	b.Run("getorcreate", func(b *testing.B) {
		e := openBench(b)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			res, err := e.table.UpdateOrCreate(ctx, benchRow{Name: "k" + strconv.Itoa(i%benchKeys), Count: 1}, add)
			if err != nil || res.Created {
				b.Fatal(err, res)
			}
			i++
		}
	})
	b.Run("plain", func(b *testing.B) {
		e := openBench(b)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			var r benchRow
			found, err := scanOne(ctx, e.db, e.update, &r, 1, "k"+strconv.Itoa(i%benchKeys))
			if err != nil || !found {
				b.Fatal(err, found)
			}
			i++
		}
	})
}

func BenchmarkUpdateOrCreateNew(b *testing.B) {
	ctx := context.Background()
	add := getorcreate.Add("count", 1)
	b.Run("getorcreate", func(b *testing.B) {
		e := openBench(b)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			res, err := e.table.UpdateOrCreate(ctx, benchRow{Name: newKey(), Count: 1}, add)
			if err != nil || !res.Created {
				b.Fatal(err, res)
			}
			i++
		}
	})
	b.Run("plain", func(b *testing.B) {
		e := openBench(b)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			var r benchRow
			k := newKey()
			found, err := scanOne(ctx, e.db, e.update, &r, 1, k)
			if err != nil || found {
				b.Fatal(err, found)
			}
			created, err := scanOne(ctx, e.db, e.insertNameCount, &r, k, 1)
			if err != nil || !created {
				b.Fatal(err, created)
			}
			i++
		}
	})
}
