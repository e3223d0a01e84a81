package getorcreate_test

import (
	"context"
	"errors"
	"testing"

	"github.com/getorcreate/getorcreate"
	"github.com/getorcreate/getorcreate/internal/testdb"
)

type Coded struct {
	ID   int64   `db:"id"`
	Code *string `db:"code"`
	Name string  `db:"name"`
}

// TestNullKey: a NULL key is refused where the index lets NULLs repeat (every
// database's default), since no call could ever find that row again.
func TestNullKey(t *testing.T) {
	testdb.EachOf(t, testdb.Kinds(true), func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		table := db.Create(t, map[string]string{
			"sqlite":   `CREATE TABLE %s (id INTEGER PRIMARY KEY, code TEXT UNIQUE, name TEXT NOT NULL DEFAULT '')`,
			"postgres": `CREATE TABLE %s (id BIGSERIAL PRIMARY KEY, code TEXT UNIQUE, name TEXT NOT NULL DEFAULT '')`,
			"mysql":    `CREATE TABLE %s (id BIGINT AUTO_INCREMENT PRIMARY KEY, code VARCHAR(32) UNIQUE, name VARCHAR(32) NOT NULL DEFAULT '')`,
		})
		tb, err := open[Coded](t, db, table, "code")
		if err != nil {
			t.Fatal(err)
		}
		for _, call := range []func() error{
			func() error { _, err := tb.GetOrCreate(ctx, Coded{Name: "x"}); return err },
			func() error {
				_, err := tb.UpdateOrCreate(ctx, Coded{Name: "x"}, getorcreate.SetProposed("name"))
				return err
			},
			func() error {
				_, err := tb.GetOrCreateMany(ctx, []Coded{{Code: ptr("a")}, {Name: "x"}})
				var e *getorcreate.Error
				if errors.As(err, &e) && e.Input != 1 {
					t.Errorf("bulk error names input %d, want 1", e.Input)
				}
				return err
			},
		} {
			if err := call(); !errors.Is(err, getorcreate.ErrNullKey) {
				t.Fatalf("want ErrNullKey, got %v", err)
			}
		}
		if n := db.Count(t, table); n != 0 {
			t.Fatalf("%d rows written", n)
		}
		r, err := tb.GetOrCreate(ctx, Coded{Code: ptr("a")})
		if err != nil || !r.Created || *r.Row.Code != "a" {
			t.Fatalf("non-NULL key: %+v %v", r, err)
		}
	})
}

// TestNullsNotDistinct: with PostgreSQL 15's NULLS NOT DISTINCT, NULL is one
// key like any other.
func TestNullsNotDistinct(t *testing.T) {
	testdb.EachOf(t, []string{"postgres"}, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		table := db.Create(t, map[string]string{"": `CREATE TABLE %s (id BIGSERIAL PRIMARY KEY, code TEXT, name TEXT NOT NULL DEFAULT '', UNIQUE NULLS NOT DISTINCT (code))`})
		tb, err := open[Coded](t, db, table, "code")
		if err != nil {
			t.Fatal(err)
		}
		r1, err := tb.GetOrCreate(ctx, Coded{Name: "first"})
		if err != nil || !r1.Created || r1.Row.Code != nil {
			t.Fatalf("%+v %v", r1, err)
		}
		r2, err := tb.GetOrCreate(ctx, Coded{Name: "second"})
		if err != nil || r2.Created || r2.Row.ID != r1.Row.ID || r2.Row.Name != "first" {
			t.Fatalf("%+v %v", r2, err)
		}
		r3, err := tb.UpdateOrCreate(ctx, Coded{Name: "third"}, getorcreate.SetProposed("name"))
		if err != nil || r3.Created || r3.Row.ID != r1.Row.ID || r3.Row.Name != "third" {
			t.Fatalf("%+v %v", r3, err)
		}
		res, err := tb.GetOrCreateMany(ctx, []Coded{{Code: ptr("x")}, {Name: "n"}})
		if err != nil || res[1].Row.ID != r1.Row.ID || res[1].Created || !res[0].Created {
			t.Fatalf("%+v %v", res, err)
		}
		if n := db.Count(t, table); n != 2 {
			t.Fatalf("%d rows, want 2", n)
		}
	})
}
