package getorcreate_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/getorcreate/getorcreate"
	"github.com/getorcreate/getorcreate/internal/testdb"
)

// softDDL is the tags table with soft deletes: name is unique among the
// rows whose deleted_at IS NULL.
var softDDL = map[string]string{
	"sqlite": `CREATE TABLE %s (id INTEGER PRIMARY KEY, name TEXT NOT NULL, count INTEGER NOT NULL DEFAULT 0, note TEXT, created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, deleted_at TIMESTAMP);
CREATE UNIQUE INDEX %s_live ON %s (name) WHERE deleted_at IS NULL`,
	"postgres": `CREATE TABLE %s (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL, count BIGINT NOT NULL DEFAULT 0, note TEXT, created_at TIMESTAMPTZ NOT NULL DEFAULT now(), deleted_at TIMESTAMPTZ);
CREATE UNIQUE INDEX %s_live ON %s (name) WHERE deleted_at IS NULL`,
	"mysql": `CREATE TABLE %s (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(64) NOT NULL, count BIGINT NOT NULL DEFAULT 0, note TEXT, created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), deleted_at TIMESTAMP(6) NULL, UNIQUE (name))`,
}

// partialKinds are the databases with partial indexes, through every way
// the library reaches them.
var partialKinds = []string{"sqlite", "sqlite-wrapped", "postgres", "postgres-pgx", "postgres-pq", "postgres-wrapped"}

type SoftTag struct {
	ID        int64      `db:"id"`
	Name      string     `db:"name"`
	Count     int64      `db:"count"`
	DeletedAt *time.Time `db:"deleted_at"`
}

func openSoft[T any](t *testing.T, db *testdb.DB, table, where string) (*getorcreate.Table[T], error) {
	t.Helper()
	return testdb.OpenTable[T](db, getorcreate.Config{Table: table, Key: []string{"name"}, Where: where})
}

// rowsOf counts the live and the soft-deleted rows of a name.
func rowsOf(t *testing.T, db *testdb.DB, table, name string) (live, deleted int) {
	t.Helper()
	ph := placeholder(db)
	if err := db.SQL.QueryRow("SELECT COUNT(*) FROM "+table+" WHERE name = "+ph+" AND deleted_at IS NULL", name).Scan(&live); err != nil {
		t.Fatal(err)
	}
	if err := db.SQL.QueryRow("SELECT COUNT(*) FROM "+table+" WHERE name = "+ph+" AND deleted_at IS NOT NULL", name).Scan(&deleted); err != nil {
		t.Fatal(err)
	}
	return live, deleted
}

func softDelete(t *testing.T, db *testdb.DB, table, name string) {
	t.Helper()
	db.Exec(t, "UPDATE "+table+" SET deleted_at = CURRENT_TIMESTAMP WHERE name = "+placeholder(db)+" AND deleted_at IS NULL", name)
}

// TestPartialIndexOpen: Open finds the partial index by its predicate (as
// the database prints it, spacing, case and outer parentheses aside), and
// says what to set when the predicate is missing or another.
func TestPartialIndexOpen(t *testing.T) {
	testdb.EachOf(t, partialKinds, func(t *testing.T, db *testdb.DB) {
		table := db.Create(t, softDDL)
		for _, w := range []string{"deleted_at IS NULL", "(deleted_at is null)", "  ( DELETED_AT  IS NULL )", `"deleted_at" IS NULL`} {
			if _, err := openSoft[SoftTag](t, db, table, w); err != nil {
				t.Fatalf("Where %q: %v", w, err)
			}
		}
		_, err := openSoft[SoftTag](t, db, table, "")
		wantSchemaError(t, err, getorcreate.ErrNoUniqueIndex, "partial", "deleted_at IS NULL", "Config.Where")
		_, err = openSoft[SoftTag](t, db, table, "deleted_at IS NOT NULL")
		wantSchemaError(t, err, getorcreate.ErrNoUniqueIndex, "another predicate", "deleted_at IS NULL", "WHERE deleted_at IS NOT NULL")
		var se *getorcreate.SchemaError
		errors.As(err, &se)
		if !strings.Contains(se.Fix, "WHERE deleted_at IS NOT NULL") {
			t.Fatalf("fix %q", se.Fix)
		}
		// A full unique index on the same column would arbitrate too (PG-3):
		// an upsert would update a soft-deleted row. Refused, whichever
		// index Open would pick.
		db.Exec(t, "CREATE UNIQUE INDEX "+table+"_all ON "+table+" (name)")
		_, err = openSoft[SoftTag](t, db, table, "deleted_at IS NULL")
		wantSchemaError(t, err, getorcreate.ErrUnsupported, table+"_all", "arbiter", "soft-deleted")
	})
}

// TestPartialIndexRefusedOnMariaDB: no partial indexes, a typed refusal.
func TestPartialIndexRefusedOnMariaDB(t *testing.T) {
	testdb.EachOf(t, []string{"mysql", "mysql-noreturning"}, func(t *testing.T, db *testdb.DB) {
		table := db.Create(t, softDDL)
		_, err := openSoft[SoftTag](t, db, table, "deleted_at IS NULL")
		wantSchemaError(t, err, getorcreate.ErrUnsupported, "no partial indexes")
	})
}

// TestPartialIndex: the soft-delete pattern, which Open refused on main. A
// soft-deleted row is never returned, a live row is created beside it,
// and calls, bulk calls and stampedes keep one live row per name.
func TestPartialIndex(t *testing.T) {
	testdb.EachOf(t, partialKinds, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		table := db.Create(t, softDDL)
		tb, err := openSoft[SoftTag](t, db, table, "deleted_at IS NULL")
		if err != nil {
			t.Fatal(err)
		}
		first, err := tb.GetOrCreate(ctx, SoftTag{Name: "go", Count: 1})
		if err != nil || !first.Created {
			t.Fatalf("%+v %v", first, err)
		}
		softDelete(t, db, table, "go")
		for i, fn := range []func() (getorcreate.Result[SoftTag], error){
			func() (getorcreate.Result[SoftTag], error) { return tb.GetOrCreate(ctx, SoftTag{Name: "go", Count: 2}) },
			func() (getorcreate.Result[SoftTag], error) {
				return tb.UpdateOrCreate(ctx, SoftTag{Name: "go", Count: 2}, getorcreate.Add("count", 10))
			},
			func() (getorcreate.Result[SoftTag], error) {
				return tb.GetOrCreateFunc(ctx, SoftTag{Name: "go"}, func(r *SoftTag) error { r.Count = 2; return nil })
			},
		} {
			r, err := fn()
			if err != nil || r.Row.ID == first.Row.ID || r.Row.DeletedAt != nil || r.Created != (i == 0) {
				t.Fatalf("call %d after the soft delete: %+v %v", i, r, err)
			}
		}
		if live, deleted := rowsOf(t, db, table, "go"); live != 1 || deleted != 1 {
			t.Fatalf("go: %d live, %d deleted rows", live, deleted)
		}
		var count int64
		db.SQL.QueryRow("SELECT count FROM "+table+" WHERE id = "+placeholder(db), first.Row.ID).Scan(&count)
		if count != 1 {
			t.Fatalf("the soft-deleted row was updated: count %d", count)
		}
		softDelete(t, db, table, "go")
		res, err := tb.GetOrCreateMany(ctx, []SoftTag{{Name: "go"}, {Name: "rust"}, {Name: "go"}})
		if err != nil || !res[0].Created || !res[1].Created || res[2].Created || res[2].Row.ID != res[0].Row.ID {
			t.Fatalf("bulk: %+v %v", res, err)
		}
		softDelete(t, db, table, "rust")
		ures, err := tb.UpdateOrCreateMany(ctx, []SoftTag{{Name: "go", Count: 1}, {Name: "rust", Count: 1}}, getorcreate.Add("count", 1))
		if err != nil || ures[0].Created || ures[0].Row.Count != 1 || !ures[1].Created || ures[1].Row.Count != 1 {
			t.Fatalf("bulk update: %+v %v", ures, err)
		}
		for name, want := range map[string][2]int{"go": {1, 2}, "rust": {1, 1}} {
			if live, deleted := rowsOf(t, db, table, name); live != want[0] || deleted != want[1] {
				t.Fatalf("%s: %d live, %d deleted rows", name, live, deleted)
			}
		}
		// Stampedes on a name with soft-deleted rows: one live row, one
		// creator, no lost update.
		for round := range 3 {
			key := fmt.Sprintf("hot-%d", round)
			for range 2 {
				db.Exec(t, "INSERT INTO "+table+" (name, deleted_at) VALUES ("+placeholder(db)+", CURRENT_TIMESTAMP)", key)
			}
			outs := stampede(32, key, func(key string) outcome {
				r, err := tb.UpdateOrCreate(ctx, SoftTag{Name: key, Count: 1}, getorcreate.Add("count", 1))
				return outcome{r.Row.ID, r.Created, err}
			})
			outs = append(outs, stampede(32, key, func(key string) outcome {
				r, err := tb.GetOrCreate(ctx, SoftTag{Name: key})
				return outcome{r.Row.ID, r.Created, err}
			})...)
			wantOneCreator(t, outs)
			db.SQL.QueryRow("SELECT count FROM "+table+" WHERE name = "+placeholder(db)+" AND deleted_at IS NULL", key).Scan(&count)
			if live, deleted := rowsOf(t, db, table, key); live != 1 || deleted != 2 || count != 32 {
				t.Fatalf("%s: %d live, %d deleted, count %d", key, live, deleted, count)
			}
		}
	})
}

// TestPartialIndexRowOutside: a row to create that the partial index would
// not cover (deleted_at set) is refused, since no lookup would ever find
// it and each call would insert another; a live row with its key is still
// returned, or updated, as the row passed is only for creating.
func TestPartialIndexRowOutside(t *testing.T) {
	testdb.EachOf(t, partialKinds, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		table := db.Create(t, softDDL)
		for _, order := range []getorcreate.Order{getorcreate.ReadFirst, getorcreate.WriteFirst} {
			tb, err := testdb.OpenTable[SoftTag](db, getorcreate.Config{Table: table, Key: []string{"name"}, Where: "deleted_at IS NULL", Order: order})
			if err != nil {
				t.Fatal(err)
			}
			gone := time.Now().UTC().Truncate(time.Second)
			name := fmt.Sprintf("new-%d", order)
			for _, call := range []func() error{
				func() error { _, err := tb.GetOrCreate(ctx, SoftTag{Name: name, DeletedAt: &gone}); return err },
				func() error {
					_, err := tb.UpdateOrCreate(ctx, SoftTag{Name: name, DeletedAt: &gone}, getorcreate.Add("count", 1))
					return err
				},
				func() error {
					_, err := tb.GetOrCreateMany(ctx, []SoftTag{{Name: "fine"}, {Name: name, DeletedAt: &gone}})
					var e *getorcreate.Error
					if errors.As(err, &e) && e.Input != 1 {
						t.Errorf("bulk error names input %d, want 1", e.Input)
					}
					return err
				},
				func() error {
					_, err := tb.UpdateOrCreateMany(ctx, []SoftTag{{Name: "fine"}, {Name: name, DeletedAt: &gone}}, getorcreate.Add("count", 1))
					return err
				},
			} {
				start := time.Now()
				if err := call(); !errors.Is(err, getorcreate.ErrNotCovered) || getorcreate.IsRetryable(err) || !strings.Contains(err.Error(), "deleted_at IS NULL") {
					t.Fatalf("order %d: want ErrNotCovered, got %v", order, err)
				}
				if d := time.Since(start); d > time.Second {
					t.Fatalf("refused after %v", d)
				}
			}
			if n := db.Count(t, table); n != 0 {
				t.Fatalf("order %d: %d rows written", order, n)
			}
		}
		tb, _ := openSoft[SoftTag](t, db, table, "deleted_at IS NULL")
		live, err := tb.GetOrCreate(ctx, SoftTag{Name: "go"})
		if err != nil {
			t.Fatal(err)
		}
		gone := time.Now()
		r, err := tb.GetOrCreate(ctx, SoftTag{Name: "go", DeletedAt: &gone})
		if err != nil || r.Created || r.Row.ID != live.Row.ID {
			t.Fatalf("get of an existing key with a row outside: %+v %v", r, err)
		}
		r, err = tb.UpdateOrCreate(ctx, SoftTag{Name: "go", DeletedAt: &gone}, getorcreate.Add("count", 5))
		if err != nil || r.Created || r.Row.ID != live.Row.ID || r.Row.Count != 5 || r.Row.DeletedAt != nil {
			t.Fatalf("update of an existing key with a row outside: %+v %v", r, err)
		}
		res, err := tb.UpdateOrCreateMany(ctx, []SoftTag{{Name: "go", DeletedAt: &gone}, {Name: "zig"}}, getorcreate.Add("count", 1))
		if err != nil || res[0].Created || res[0].Row.Count != 6 || !res[1].Created {
			t.Fatalf("bulk update of an existing key with a row outside: %+v %v", res, err)
		}
		if n := db.Count(t, table); n != 2 {
			t.Fatalf("%d rows", n)
		}
	})
}
