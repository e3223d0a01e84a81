package getorcreate_test

import (
	"context"
	"database/sql"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getorcreate/getorcreate"
	"github.com/getorcreate/getorcreate/internal/testdb"
)

// counter is a caller's handle that counts the statements the library sends
// through it, and can run something before the n-th one.
type counter struct {
	c      *sql.Conn
	n      atomic.Int32
	before map[int32]func()
}

func (c *counter) hook(n int32) {
	if f := c.before[n]; f != nil {
		f()
	}
}

func (c *counter) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	c.hook(c.n.Add(1))
	return c.c.ExecContext(ctx, q, args...)
}

func (c *counter) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	c.hook(c.n.Add(1))
	return c.c.QueryContext(ctx, q, args...)
}

// TestStatementCounts pins the statements each path sends, against what a
// careful engineer would write for that path alone: one SELECT for an
// existing key, one INSERT ... RETURNING for a new one, one upsert.
func TestStatementCounts(t *testing.T) {
	want := map[string]map[string]int32{
		//                      PostgreSQL: one fused statement per path.
		"postgres": {"get existing": 1, "get new": 1, "get lost race": 2, "update existing": 1, "update new": 1, "many mixed": 1},
		// MariaDB: SELECT, then INSERT ... RETURNING; a lost race adds a locking read.
		"mysql": {"get existing": 1, "get new": 2, "get lost race": 3, "update existing": 1, "update new": 1, "many mixed": 2},
		// SQLite: SELECT or UPDATE first, then INSERT; its upsert cannot say what it did.
		"sqlite": {"get existing": 1, "get new": 2, "get lost race": 3, "update existing": 1, "update new": 2, "many mixed": 3},
	}
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		tags, table := openTags(t, db)
		if _, err := tags.GetOrCreate(ctx, Tag{Name: "old"}); err != nil {
			t.Fatal(err)
		}
		conn, err := db.SQL.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ph := placeholder(db)
		got := map[string]int32{}
		run := func(path string, before map[int32]func(), fn func(q getorcreate.Querier) error) {
			c := &counter{c: conn, before: before}
			if err := fn(c); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			got[path] = c.n.Load()
		}
		get := func(name string) func(q getorcreate.Querier) error {
			return func(q getorcreate.Querier) error {
				_, err := tags.GetOrCreateTx(ctx, q, Tag{Name: name})
				return err
			}
		}
		upd := func(name string) func(q getorcreate.Querier) error {
			return func(q getorcreate.Querier) error {
				_, err := tags.UpdateOrCreateTx(ctx, q, Tag{Name: name, Count: 1}, getorcreate.Add("count", 1))
				return err
			}
		}
		run("get existing", nil, get("old"))
		run("get new", nil, get("new"))
		run("update existing", nil, upd("old"))
		run("update new", nil, upd("new2"))
		run("many mixed", nil, func(q getorcreate.Querier) error {
			_, err := tags.GetOrCreateManyTx(ctx, q, []Tag{{Name: "old"}, {Name: "m1"}, {Name: "m2"}})
			return err
		})
		// A lost race: another connection commits the key after our lookup
		// (MariaDB, SQLite) or while our insert waits for it (PostgreSQL).
		if db.Kind == "postgres" {
			other, err := db.SQL.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := other.Exec("INSERT INTO "+table+" (name) VALUES ("+ph+")", "raced"); err != nil {
				t.Fatal(err)
			}
			go func() { time.Sleep(200 * time.Millisecond); other.Commit() }()
			run("get lost race", nil, get("raced"))
		} else {
			run("get lost race", map[int32]func(){2: func() {
				if _, err := db.SQL.Exec("INSERT INTO "+table+" (name) VALUES ("+ph+")", "raced"); err != nil {
					t.Fatal(err)
				}
			}}, get("raced"))
		}
		for path, n := range want[db.Kind] {
			if got[path] != n {
				t.Errorf("%s: %d statements, want %d", path, got[path], n)
			}
		}
		t.Logf("%s statements per path: %v", db.Name, fmt.Sprint(got))
	})
}
