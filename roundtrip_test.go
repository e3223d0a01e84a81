package getorcreate_test

import (
	"context"
	"database/sql"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getorcreate/getorcreate"
	"github.com/getorcreate/getorcreate/dialect"
	"github.com/getorcreate/getorcreate/internal/testdb"
)

// counter is a caller's handle that counts the statements the library sends
// through it, and can run something before the n-th one.
type counter struct {
	c interface {
		ExecContext(context.Context, string, ...any) (sql.Result, error)
		QueryContext(context.Context, string, ...any) (*sql.Rows, error)
	}
	n      atomic.Int32
	before map[int32]func()
	tx     bool
}

// IsTx tells the library whether the handle is a transaction.
func (c *counter) IsTx() bool { return c.tx }

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

// ownCounter is a pool handle for the table's own calls that counts the
// statements sent through it.
type ownCounter struct {
	db     *sql.DB
	n      atomic.Int32
	before map[int32]func()
}

func (o *ownCounter) hook() {
	if f := o.before[o.n.Add(1)]; f != nil {
		f()
	}
}

func (o *ownCounter) Query(ctx context.Context, q string, args ...any) (dialect.Rows, error) {
	o.hook()
	r, err := o.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return r, nil
}

func (o *ownCounter) Exec(ctx context.Context, q string, args ...any) (dialect.Result, error) {
	o.hook()
	return o.db.ExecContext(ctx, q, args...)
}

func (o *ownCounter) Begin(ctx context.Context, iso sql.IsolationLevel) (dialect.Tx, error) {
	return nil, fmt.Errorf("not used by single-row calls")
}

// TestStatementCounts pins the statements each path sends, against what a
// careful engineer would write for that path alone: one SELECT for an
// existing key, one INSERT ... RETURNING for a new one, one upsert. A table
// whose calls mostly find their key looks up first ("reads"); one whose
// calls mostly create inserts first where the database allows it
// ("writes"); either way an existing row is never written.
func TestStatementCounts(t *testing.T) {
	statementCounts(t, testdb.Kinds(false), testdb.TagsDDL, "")
}

// TestStatementCountsPartial: a partial unique index (soft delete) costs
// the same statements per path as a full one.
func TestStatementCountsPartial(t *testing.T) {
	statementCounts(t, []string{"sqlite", "postgres"}, softDDL, "deleted_at IS NULL")
}

func statementCounts(t *testing.T, kinds []string, ddl map[string]string, where string) {
	want := map[string]map[string]int32{
		// A read-mostly PostgreSQL table updates before it upserts, so
		// that an existing key takes no sequence value (PG-14).
		"postgres": {
			"reads/get existing": 1, "reads/get new": 2, "reads/get lost race": 3, "reads/update existing": 1, "reads/update new": 2,
			"writes/get existing": 2, "writes/get new": 1, "writes/get lost race": 2, "writes/update existing": 1, "writes/update new": 1,
			"many mixed": 1, "tx/get new": 1,
		},
		// MariaDB always looks up first: an INSERT of an existing key would
		// fire insert triggers and burn an AUTO_INCREMENT value.
		"mysql": {
			"reads/get existing": 1, "reads/get new": 2, "reads/get lost race": 3, "reads/update existing": 1, "reads/update new": 1,
			"writes/get existing": 1, "writes/get new": 2, "writes/get lost race": 3, "writes/update existing": 1, "writes/update new": 1,
			"many mixed": 2, "tx/get new": 2,
		},
		// SQLite writes first only in its own calls: in a caller's
		// transaction a write needs the one write lock, a read does not.
		"sqlite": {
			"reads/get existing": 1, "reads/get new": 2, "reads/get lost race": 3, "reads/update existing": 1, "reads/update new": 2,
			"writes/get existing": 2, "writes/get new": 1, "writes/get lost race": 2, "writes/update existing": 2, "writes/update new": 1,
			"many mixed": 3, "tx/get new": 2,
		},
	}
	testdb.EachOf(t, kinds, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		table := db.Create(t, ddl)
		d, ok := dialect.ForDriver(db.SQL.Driver())
		if !ok {
			t.Fatalf("no dialect for %T", db.SQL.Driver())
		}
		own := &ownCounter{db: db.SQL}
		tags, err := getorcreate.OpenDriver[Tag](ctx, d, own, own, getorcreate.Config{Table: table, Key: []string{"name"}, Where: where})
		if err != nil {
			t.Fatal(err)
		}
		ph := placeholder(db)
		if where != "" {
			// Every key the paths use has a soft-deleted row already, which
			// no lookup may find and no insert may collide with.
			for _, k := range []string{"lean-find", "reads-new", "writes-new", "reads-new2", "writes-new2", "reads-raced", "writes-raced", "tx-new", "m1", "m2"} {
				db.Exec(t, "INSERT INTO "+table+" (name, deleted_at) VALUES ("+ph+", CURRENT_TIMESTAMP)", k)
			}
		}
		got := map[string]int32{}
		run := func(path string, before map[int32]func(), fn func() error) {
			own.n.Store(0)
			own.before = before
			if err := fn(); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			got[path] = own.n.Load()
			own.before = nil
		}
		get := func(name string) func() error {
			return func() error {
				_, err := tags.GetOrCreate(ctx, Tag{Name: name})
				return err
			}
		}
		upd := func(name string) func() error {
			return func() error {
				_, err := tags.UpdateOrCreate(ctx, Tag{Name: name, Count: 1}, getorcreate.Add("count", 1))
				return err
			}
		}
		// lean teaches the table that its calls mostly find (or create).
		n := 0
		lean := func(find bool) {
			for range 80 {
				n++
				name := "lean-find"
				if !find {
					name = fmt.Sprintf("lean-create-%d", n)
				}
				if _, err := tags.GetOrCreate(ctx, Tag{Name: name}); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, mode := range []string{"reads", "writes"} {
			lean(mode == "reads")
			run(mode+"/get existing", nil, get("lean-find"))
			lean(mode == "reads")
			run(mode+"/get new", nil, get(mode+"-new"))
			lean(mode == "reads")
			run(mode+"/update existing", nil, upd("lean-find"))
			lean(mode == "reads")
			run(mode+"/update new", nil, upd(mode+"-new2"))
			// A lost race: another connection commits the key after our
			// lookup (MariaDB, SQLite) or while our insert waits for it
			// (PostgreSQL's ON CONFLICT waits for the other transaction).
			lean(mode == "reads")
			key := mode + "-raced"
			if db.Kind == "postgres" {
				other, err := db.SQL.BeginTx(ctx, nil)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := other.Exec("INSERT INTO "+table+" (name) VALUES ("+ph+")", key); err != nil {
					t.Fatal(err)
				}
				go func() { time.Sleep(200 * time.Millisecond); other.Commit() }()
				run(mode+"/get lost race", nil, get(key))
			} else {
				// The competitor commits just after our lookup, before our
				// insert. SQLite writing first has no such gap (its guarded
				// insert is one statement under the write lock), so there
				// the competitor commits first and is found.
				at := int32(2)
				if db.Kind == "sqlite" && mode == "writes" {
					at = 1
				}
				run(mode+"/get lost race", map[int32]func(){at: func() {
					if _, err := db.SQL.Exec("INSERT INTO "+table+" (name) VALUES ("+ph+")", key); err != nil {
						t.Fatal(err)
					}
				}}, get(key))
			}
		}
		// Inside a caller's transaction, in a write-mostly table.
		tx, err := db.SQL.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		c := &counter{c: tx, tx: true}
		if _, err := tags.GetOrCreateTx(ctx, c, Tag{Name: "tx-new"}); err != nil {
			t.Fatal(err)
		}
		got["tx/get new"] = c.n.Swap(0)
		// A batch inside a transaction (on SQLite, outside one, it goes row
		// by row: another connection could commit between its statements).
		if _, err := tags.GetOrCreateManyTx(ctx, c, []Tag{{Name: "lean-find"}, {Name: "m1"}, {Name: "m2"}}); err != nil {
			t.Fatal(err)
		}
		got["many mixed"] = c.n.Load()
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		for path, n := range want[db.Kind] {
			if got[path] != n {
				t.Errorf("%s: %d statements, want %d", path, got[path], n)
			}
		}
		t.Logf("%s statements per path: %v", db.Name, fmt.Sprint(got))
	})
}
