package getorcreate_test

import (
	"context"
	"errors"
	"testing"

	"github.com/getorcreate/getorcreate"
	"github.com/getorcreate/getorcreate/internal/testdb"
)

// TestFixedLengthKey: a char(3) key is neither cut nor padded into another
// key by the casts of PostgreSQL's fused statements.
func TestFixedLengthKey(t *testing.T) {
	testdb.EachOf(t, testdb.Kinds(true), func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		table := db.Create(t, map[string]string{
			"sqlite":   `CREATE TABLE %s (id INTEGER PRIMARY KEY, code CHAR(3) NOT NULL UNIQUE, cur CHAR(3) NOT NULL)`,
			"postgres": `CREATE TABLE %s (id BIGSERIAL PRIMARY KEY, code CHAR(3) NOT NULL UNIQUE, cur CHAR(3) NOT NULL)`,
			"mysql":    `CREATE TABLE %s (id BIGINT AUTO_INCREMENT PRIMARY KEY, code CHAR(3) NOT NULL UNIQUE, cur CHAR(3) NOT NULL)`,
		})
		type Cur struct {
			ID   int64  `db:"id"`
			Code string `db:"code"`
			Cur  string `db:"cur"`
		}
		tb, err := open[Cur](t, db, table, "code")
		if err != nil {
			t.Fatal(err)
		}
		for _, code := range []string{"USD", "UAH", "USD"} {
			r, err := tb.GetOrCreate(ctx, Cur{Code: code, Cur: "EUR"})
			if err != nil || r.Row.Code != code || r.Row.Cur != "EUR" {
				t.Fatalf("%s: %+v %v", code, r, err)
			}
		}
		res, err := tb.GetOrCreateMany(ctx, []Cur{{Code: "GBP", Cur: "EUR"}, {Code: "USD", Cur: "X"}})
		if err != nil || res[0].Row.Code != "GBP" || !res[0].Created || res[1].Created {
			t.Fatalf("%+v %v", res, err)
		}
		if n := db.Count(t, table); n != 3 {
			t.Fatalf("%d rows, want 3", n)
		}
	})
}

// TestExistingKeyCollidingElsewhere: the proposed row collides on another
// unique index, but the key's row exists: GetOrCreate returns it, and
// UpdateOrCreate updates it, on every database (MariaDB may check the other
// index first; the library then updates the key's row itself).
func TestExistingKeyCollidingElsewhere(t *testing.T) {
	testdb.EachOf(t, testdb.Kinds(true), func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		table := db.Create(t, map[string]string{
			"sqlite":   `CREATE TABLE %s (id INTEGER PRIMARY KEY, slug TEXT NOT NULL UNIQUE, name TEXT NOT NULL UNIQUE, count INTEGER NOT NULL DEFAULT 0)`,
			"postgres": `CREATE TABLE %s (id BIGSERIAL PRIMARY KEY, slug TEXT NOT NULL UNIQUE, name TEXT NOT NULL UNIQUE, count BIGINT NOT NULL DEFAULT 0)`,
			"mysql":    `CREATE TABLE %s (id BIGINT AUTO_INCREMENT PRIMARY KEY, slug VARCHAR(32) NOT NULL, name VARCHAR(32) NOT NULL, count BIGINT NOT NULL DEFAULT 0, UNIQUE KEY a_slug (slug), UNIQUE KEY b_name (name))`,
		})
		type Row struct {
			ID    int64  `db:"id"`
			Slug  string `db:"slug"`
			Name  string `db:"name"`
			Count int64  `db:"count"`
		}
		tb, err := open[Row](t, db, table, "name")
		if err != nil {
			t.Fatal(err)
		}
		goRow, _ := tb.GetOrCreate(ctx, Row{Name: "go", Slug: "go"})
		other, _ := tb.GetOrCreate(ctx, Row{Name: "golang", Slug: "g"})
		r, err := tb.GetOrCreate(ctx, Row{Name: "go", Slug: "g"})
		if err != nil || r.Created || r.Row.ID != goRow.Row.ID {
			t.Fatalf("get: %+v %v", r, err)
		}
		r, err = tb.UpdateOrCreate(ctx, Row{Name: "go", Slug: "g"}, getorcreate.Add("count", 1))
		if err != nil || r.Created || r.Row.ID != goRow.Row.ID || r.Row.Count != 1 {
			t.Fatalf("update: %+v %v", r, err)
		}
		res, err := tb.UpdateOrCreateMany(ctx, []Row{{Name: "go", Slug: "g"}, {Name: "new", Slug: "n"}}, getorcreate.Add("count", 1))
		if err != nil || res[0].Created || res[0].Row.Count != 2 || !res[1].Created {
			t.Fatalf("update many: %+v %v", res, err)
		}
		var count int64
		db.SQL.QueryRow("SELECT count FROM "+table+" WHERE id = "+placeholder(db), other.Row.ID).Scan(&count)
		if count != 0 {
			t.Fatalf("the other index's row was updated: count %d", count)
		}
		// A new key that collides elsewhere is a conflict, with the row untouched.
		_, err = tb.UpdateOrCreate(ctx, Row{Name: "fresh", Slug: "g"}, getorcreate.Add("count", 1))
		if !errors.Is(err, getorcreate.ErrConflict) {
			t.Fatalf("new key colliding elsewhere: %v", err)
		}
	})
}

// TestNilBytesKey: a nil []byte is sent as NULL, so it is a NULL key.
func TestNilBytesKey(t *testing.T) {
	testdb.EachOf(t, testdb.Kinds(false), func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		table := db.Create(t, map[string]string{
			"sqlite":   `CREATE TABLE %s (id INTEGER PRIMARY KEY, k BLOB UNIQUE)`,
			"postgres": `CREATE TABLE %s (id BIGSERIAL PRIMARY KEY, k BYTEA UNIQUE)`,
			"mysql":    `CREATE TABLE %s (id BIGINT AUTO_INCREMENT PRIMARY KEY, k VARBINARY(32) UNIQUE)`,
		})
		type B struct {
			ID int64  `db:"id"`
			K  []byte `db:"k"`
		}
		tb, err := open[B](t, db, table, "k")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tb.GetOrCreate(ctx, B{}); !errors.Is(err, getorcreate.ErrNullKey) {
			t.Fatalf("nil []byte key: %v", err)
		}
		r1, err := tb.GetOrCreate(ctx, B{K: []byte{}})
		if err != nil || !r1.Created {
			t.Fatalf("empty key: %+v %v", r1, err)
		}
		res, err := tb.GetOrCreateMany(ctx, []B{{K: []byte{}}, {K: []byte{0}}})
		if err != nil || res[0].Created || res[0].Row.ID != r1.Row.ID || !res[1].Created {
			t.Fatalf("empty and zero byte keys are two keys: %+v %v", res, err)
		}
	})
}

// TestCollationEqualKeysInBatch: under a case-insensitive nondeterministic
// collation, "Go" and "go" in one batch are one key: created at most once,
// and an upsert batch says so with a typed error.
func TestCollationEqualKeysInBatch(t *testing.T) {
	testdb.EachOf(t, []string{"postgres", "mysql", "sqlite"}, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		table := db.Create(t, map[string]string{
			"sqlite": `CREATE TABLE %s (id INTEGER PRIMARY KEY, name TEXT COLLATE NOCASE NOT NULL UNIQUE, count INTEGER NOT NULL DEFAULT 0)`,
			"postgres": `CREATE COLLATION IF NOT EXISTS goc_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE %s (id BIGSERIAL PRIMARY KEY, name TEXT COLLATE goc_ci NOT NULL UNIQUE, count BIGINT NOT NULL DEFAULT 0)`,
			"mysql": `CREATE TABLE %s (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(32) COLLATE utf8mb4_general_ci NOT NULL UNIQUE, count BIGINT NOT NULL DEFAULT 0)`,
		})
		type Row struct {
			ID    int64  `db:"id"`
			Name  string `db:"name"`
			Count int64  `db:"count"`
		}
		tb, err := open[Row](t, db, table, "name")
		if err != nil {
			t.Fatal(err)
		}
		res, err := tb.GetOrCreateMany(ctx, []Row{{Name: "Go"}, {Name: "go"}, {Name: "GO"}})
		if err != nil {
			t.Fatal(err)
		}
		created := 0
		for _, r := range res {
			if r.Row.ID != res[0].Row.ID {
				t.Fatalf("one key, several rows: %+v", res)
			}
			if r.Created {
				created++
			}
		}
		if created != 1 || db.Count(t, table) != 1 {
			t.Fatalf("created %d times, %d rows", created, db.Count(t, table))
		}
		_, err = tb.UpdateOrCreateMany(ctx, []Row{{Name: "Rust"}, {Name: "rust"}}, getorcreate.Add("count", 1))
		if db.Kind == "postgres" {
			if !errors.Is(err, getorcreate.ErrDuplicateInput) {
				t.Fatalf("want ErrDuplicateInput, got %v", err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
	})
}
