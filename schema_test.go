package getorcreate_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/getorcreate/getorcreate"
	"github.com/getorcreate/getorcreate/internal/testdb"
)

type Pair struct {
	ID int64  `db:"id"`
	A  string `db:"a"`
	B  string `db:"b"`
}

func open[T any](t *testing.T, db *testdb.DB, table string, key ...string) (*getorcreate.Table[T], error) {
	t.Helper()
	return testdb.OpenTable[T](db, getorcreate.Config{Table: table, Key: key})
}

func wantSchemaError(t *testing.T, err, kind error, contains ...string) {
	t.Helper()
	var se *getorcreate.SchemaError
	if !errors.Is(err, kind) || !errors.As(err, &se) {
		t.Fatalf("want a *SchemaError matching %v, got %v", kind, err)
	}
	for _, c := range contains {
		if !strings.Contains(err.Error(), c) {
			t.Fatalf("error %q does not mention %q", err, c)
		}
	}
}

func TestOpenRefusesUnsafeSchemas(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		id := map[string]string{"sqlite": "INTEGER PRIMARY KEY", "postgres": "BIGSERIAL PRIMARY KEY", "mysql": "BIGINT AUTO_INCREMENT PRIMARY KEY"}[db.Kind]
		txt := map[string]string{"sqlite": "TEXT", "postgres": "TEXT", "mysql": "VARCHAR(64)"}[db.Kind]
		mk := func(extra string) string {
			return db.Create(t, map[string]string{"": "CREATE TABLE %s (id " + id + ", a " + txt + " NOT NULL, b " + txt + " NOT NULL DEFAULT ''" + extra + ")"})
		}
		t.Run("no unique index", func(t *testing.T) {
			table := mk("")
			_, err := open[Pair](t, db, table, "a")
			wantSchemaError(t, err, getorcreate.ErrNoUniqueIndex, table, "(a)", "UNIQUE")
			// The fix it prints works.
			var se *getorcreate.SchemaError
			errors.As(err, &se)
			fix := strings.TrimSuffix(se.Fix, ";")
			fix = strings.Replace(fix, " CONCURRENTLY", "", 1)
			db.Exec(t, fix)
			if _, err := open[Pair](t, db, table, "a"); err != nil {
				t.Fatalf("after the printed fix: %v", err)
			}
		})
		t.Run("subset", func(t *testing.T) {
			table := mk(", UNIQUE (a)")
			_, err := open[Pair](t, db, table, "a", "b")
			wantSchemaError(t, err, getorcreate.ErrNoUniqueIndex, "only part of the key")
		})
		t.Run("superset", func(t *testing.T) {
			table := mk(", UNIQUE (a, b)")
			_, err := open[Pair](t, db, table, "a")
			wantSchemaError(t, err, getorcreate.ErrNoUniqueIndex, "more columns than the key")
			if _, err := open[Pair](t, db, table, "b", "a"); err != nil {
				t.Fatalf("the exact key in another order must open: %v", err)
			}
		})
		if db.Kind != "mysql" {
			t.Run("partial", func(t *testing.T) {
				table := mk("")
				db.Exec(t, "CREATE UNIQUE INDEX "+table+"_p ON "+table+" (a) WHERE b <> ''")
				_, err := open[Pair](t, db, table, "a")
				wantSchemaError(t, err, getorcreate.ErrNoUniqueIndex, "partial")
			})
		}
		if db.Kind == "postgres" {
			t.Run("deferrable", func(t *testing.T) {
				table := mk(", UNIQUE (a) DEFERRABLE")
				_, err := open[Pair](t, db, table, "a")
				wantSchemaError(t, err, getorcreate.ErrNoUniqueIndex, "DEFERRABLE")
			})
		}
		t.Run("mapping", func(t *testing.T) {
			table := mk(", UNIQUE (a)")
			type Extra struct {
				A     string `db:"a"`
				Color string `db:"color"`
			}
			_, err := open[Extra](t, db, table, "a")
			wantSchemaError(t, err, getorcreate.ErrMapping, "Color", "color")
			type NoKey struct {
				ID int64  `db:"id"`
				B  string `db:"b"`
			}
			_, err = open[NoKey](t, db, table, "a")
			wantSchemaError(t, err, getorcreate.ErrMapping, "a")
			_, err = open[Pair](t, db, table, "nope")
			wantSchemaError(t, err, getorcreate.ErrMapping, "nope")
			type MissingNotNull struct {
				ID int64  `db:"id"`
				B  string `db:"b"`
			}
			table2 := db.Create(t, map[string]string{"": "CREATE TABLE %s (id " + id + ", a " + txt + " NOT NULL, b " + txt + " NOT NULL UNIQUE)"})
			_, err = open[MissingNotNull](t, db, table2, "b")
			wantSchemaError(t, err, getorcreate.ErrMapping, `"a"`, "NOT NULL")
		})
		t.Run("no table", func(t *testing.T) {
			_, err := open[Pair](t, db, "goc_does_not_exist", "a")
			wantSchemaError(t, err, getorcreate.ErrNoTable)
		})
	})
}

func TestBadValues(t *testing.T) {
	testdb.EachOf(t, testdb.Kinds(true), func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		tags, table := openTags(t, db)
		t.Run("invalid update", func(t *testing.T) {
			_, err := tags.UpdateOrCreate(ctx, Tag{Name: "u"}, getorcreate.Add("nope", 1))
			if !errors.Is(err, getorcreate.ErrInvalidUpdate) {
				t.Fatalf("unknown column: %v", err)
			}
			_, err = tags.UpdateOrCreate(ctx, Tag{Name: "u"}, getorcreate.Set("name", "v"))
			if !errors.Is(err, getorcreate.ErrInvalidUpdate) {
				t.Fatalf("key column: %v", err)
			}
			_, err = tags.UpdateOrCreate(ctx, Tag{Name: "u"}, getorcreate.Expr("count", "? + ?", 1))
			if !errors.Is(err, getorcreate.ErrInvalidUpdate) {
				t.Fatalf("placeholder count: %v", err)
			}
			if n := db.Count(t, table); n != 0 {
				t.Fatalf("an invalid update wrote %d rows", n)
			}
		})
		t.Run("injection-shaped values", func(t *testing.T) {
			for _, v := range []string{`x'); DROP TABLE ` + table + `; --`, `"; DELETE FROM ` + table + ` --`, "`", `\'`, "ünïcødé ✓"} {
				r, err := tags.GetOrCreate(ctx, Tag{Name: v})
				if err != nil || !r.Created || r.Row.Name != v {
					t.Fatalf("value %q: %+v %v", v, r, err)
				}
				r, err = tags.GetOrCreate(ctx, Tag{Name: v})
				if err != nil || r.Created || r.Row.Name != v {
					t.Fatalf("value %q again: %+v %v", v, r, err)
				}
			}
			if n := db.Count(t, table); n != 5 {
				t.Fatalf("%d rows, want 5", n)
			}
		})
		t.Run("cancelled", func(t *testing.T) {
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			_, err := tags.GetOrCreate(cctx, Tag{Name: "never"})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("want context.Canceled, got %v", err)
			}
			_, err = tags.UpdateOrCreate(cctx, Tag{Name: "never"}, getorcreate.Add("count", 1))
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("want context.Canceled, got %v", err)
			}
		})
	})
}

// TestOtherUniqueConflict: a row that collides on another unique column
// gets ErrConflict naming it; the other row is never touched.
func TestOtherUniqueConflict(t *testing.T) {
	testdb.EachOf(t, testdb.Kinds(true), func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		table := db.Create(t, map[string]string{
			"sqlite":   `CREATE TABLE %s (id INTEGER PRIMARY KEY, a TEXT NOT NULL UNIQUE, b TEXT NOT NULL UNIQUE, n INTEGER NOT NULL DEFAULT 0)`,
			"postgres": `CREATE TABLE %s (id BIGSERIAL PRIMARY KEY, a TEXT NOT NULL UNIQUE, b TEXT NOT NULL CONSTRAINT %s_b_other UNIQUE, n BIGINT NOT NULL DEFAULT 0)`,
			"mysql":    `CREATE TABLE %s (id BIGINT AUTO_INCREMENT PRIMARY KEY, a VARCHAR(64) NOT NULL UNIQUE, b VARCHAR(64) NOT NULL, n BIGINT NOT NULL DEFAULT 0, UNIQUE KEY b_other (b))`,
		})
		type Row struct {
			ID int64  `db:"id"`
			A  string `db:"a"`
			B  string `db:"b"`
			N  int64  `db:"n"`
		}
		tb, err := open[Row](t, db, table, "a")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tb.GetOrCreate(ctx, Row{A: "one", B: "shared", N: 1}); err != nil {
			t.Fatal(err)
		}
		for _, call := range []func() error{
			func() error { _, err := tb.GetOrCreate(ctx, Row{A: "two", B: "shared"}); return err },
			func() error {
				_, err := tb.UpdateOrCreate(ctx, Row{A: "two", B: "shared"}, getorcreate.Add("n", 100))
				return err
			},
		} {
			err := call()
			var e *getorcreate.Error
			if !errors.Is(err, getorcreate.ErrConflict) || !errors.As(err, &e) {
				t.Fatalf("want ErrConflict, got %v", err)
			}
			if db.Kind != "sqlite" && !strings.Contains(e.Constraint, "b_other") {
				t.Fatalf("constraint %q does not name b_other", e.Constraint)
			}
			if db.Kind == "sqlite" && !strings.Contains(e.Constraint, ".b") {
				t.Fatalf("constraint %q does not name column b", e.Constraint)
			}
		}
		var n int64
		db.SQL.QueryRow("SELECT n FROM " + table).Scan(&n)
		if n != 1 || db.Count(t, table) != 1 {
			t.Fatalf("the other row was touched: n=%d rows=%d", n, db.Count(t, table))
		}
	})
}

// TestTooLongAndWrongType: the database's own checks come back typed.
func TestTooLongAndWrongType(t *testing.T) {
	testdb.EachOf(t, testdb.Kinds(true), func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		table := db.Create(t, map[string]string{
			"sqlite":   `CREATE TABLE %s (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, n INTEGER NOT NULL DEFAULT 0) STRICT`,
			"postgres": `CREATE TABLE %s (id BIGSERIAL PRIMARY KEY, name VARCHAR(8) NOT NULL UNIQUE, n BIGINT NOT NULL DEFAULT 0)`,
			"mysql":    `CREATE TABLE %s (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(8) NOT NULL UNIQUE, n BIGINT NOT NULL DEFAULT 0)`,
		})
		type Row struct {
			ID   int64  `db:"id"`
			Name string `db:"name"`
			N    any    `db:"n"`
		}
		tb, err := open[Row](t, db, table, "name")
		if err != nil {
			t.Fatal(err)
		}
		if db.Kind != "sqlite" { // SQLite does not enforce lengths
			_, err = tb.GetOrCreate(ctx, Row{Name: "much-too-long-for-eight"})
			if !errors.Is(err, getorcreate.ErrValueTooLong) {
				t.Fatalf("want ErrValueTooLong, got %v", err)
			}
		}
		_, err = tb.GetOrCreate(ctx, Row{Name: "ok", N: "not a number"})
		if !errors.Is(err, getorcreate.ErrInvalidValue) {
			t.Fatalf("want ErrInvalidValue, got %v", err)
		}
		if n := db.Count(t, table); n != 0 {
			t.Fatalf("%d rows half-written", n)
		}
	})
}

// TestInjectionShapedNames: table and column names are quoted for the
// dialect, whatever they hold.
func TestInjectionShapedNames(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		q := func(s string) string {
			if db.Kind == "mysql" {
				return "`" + strings.ReplaceAll(s, "`", "``") + "`"
			}
			return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
		}
		base := db.Table(t)
		table := base + `"; DROP TABLE x; --` + "`"
		col := `na"me` + "`; --"
		idt := map[string]string{"sqlite": "INTEGER PRIMARY KEY", "postgres": "BIGSERIAL PRIMARY KEY", "mysql": "BIGINT AUTO_INCREMENT PRIMARY KEY"}[db.Kind]
		ct := map[string]string{"sqlite": "TEXT", "postgres": "TEXT", "mysql": "VARCHAR(64)"}[db.Kind]
		db.Exec(t, "CREATE TABLE "+q(table)+" (id "+idt+", "+q(col)+" "+ct+" NOT NULL UNIQUE, "+q("count")+" BIGINT NOT NULL DEFAULT 0)")
		t.Cleanup(func() { db.SQL.Exec("DROP TABLE " + q(table)) })
		type Odd struct {
			ID    int64  `db:"id"`
			Name  string "db:\"na\\\"me`; --\""
			Count int64  `db:"count"`
		}
		tb, err := open[Odd](t, db, table, col)
		if err != nil {
			t.Fatal(err)
		}
		r, err := tb.UpdateOrCreate(ctx, Odd{Name: "'); DROP TABLE x; --", Count: 1}, getorcreate.Add("count", 1))
		if err != nil || !r.Created {
			t.Fatalf("%+v %v", r, err)
		}
		r, err = tb.UpdateOrCreate(ctx, Odd{Name: "'); DROP TABLE x; --", Count: 1}, getorcreate.Add("count", 1))
		if err != nil || r.Created || r.Row.Count != 2 {
			t.Fatalf("%+v %v", r, err)
		}
		res, err := tb.GetOrCreateMany(ctx, []Odd{{Name: "a"}, {Name: "'); DROP TABLE x; --"}})
		if err != nil || !res[0].Created || res[1].Created || res[1].Row.ID != r.Row.ID {
			t.Fatalf("%+v %v", res, err)
		}
	})
}

func TestCancelWhileBlocked(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		tags, table := openTags(t, db)
		// Another transaction inserts the key and holds it uncommitted, so
		// our insert must wait for it.
		tx, err := db.SQL.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		if _, err := tx.Exec("INSERT INTO "+table+" (name) VALUES ("+placeholder(db)+")", "held"); err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err = tags.GetOrCreate(cctx, Tag{Name: "held"})
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			t.Fatalf("want a context error, got %v", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("returned after %v, not promptly", d)
		}
		tx.Rollback()
		// A cancelled statement may still complete on the server (MariaDB
		// keeps running it after go-sql-driver drops the connection, GO-3):
		// what is written is a whole row or nothing, never a duplicate, and
		// the next call sees a consistent state.
		time.Sleep(200 * time.Millisecond)
		before := db.Count(t, table)
		if before > 1 {
			t.Fatalf("%d rows for one key", before)
		}
		r, err := tags.GetOrCreate(ctx, Tag{Name: "held"})
		if err != nil || r.Created != (before == 0) || db.Count(t, table) != 1 {
			t.Fatalf("after the cancellation: %+v %v, %d rows before", r, err, before)
		}
		t.Logf("%s: %d row(s) left by the cancelled statement", db.Name, before)
	})
}
