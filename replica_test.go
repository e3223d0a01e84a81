package getorcreate_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getorcreate/getorcreate"
	"github.com/getorcreate/getorcreate/internal/dsn"
	"github.com/getorcreate/getorcreate/internal/testdb"
)

// staleReplica makes a second SQLite database with the same table, as a
// standby that has not yet replayed the primary's latest commits: "a" with
// an old count, "gone" (deleted on the primary since), and no "b".
func staleReplica(t *testing.T, table string, primary *sql.DB) *sql.DB {
	t.Helper()
	r, _, err := dsn.Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "replica.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if _, err := r.Exec(fmt.Sprintf(testdb.TagsDDL["sqlite"], table)); err != nil {
		t.Fatal(err)
	}
	var aID int64
	if err := primary.QueryRow("SELECT id FROM " + table + " WHERE name = 'a'").Scan(&aID); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Exec("INSERT INTO "+table+" (id, name, count) VALUES (?, 'a', 2), (999, 'gone', 7)", aID); err != nil {
		t.Fatal(err)
	}
	return r
}

func storedCount(t *testing.T, db *sql.DB, table, name string) (n int64) {
	t.Helper()
	if err := db.QueryRow("SELECT count FROM "+table+" WHERE name = ?", name).Scan(&n); err != nil {
		t.Fatalf("count of %q: %v", name, err)
	}
	return n
}

// TestReplicaStale: a table whose Config.Replica lags behind. What the
// replica has comes back from it, marked FromReplica, never Created; what
// it lacks is decided on the primary; writes never reach it; FromPrimary
// reads the primary's columns; a replica that is gone is a miss, not an
// error.
func TestReplicaStale(t *testing.T) {
	ctx := context.Background()
	db := testdb.Open(t, "sqlite")
	table := db.Create(t, testdb.TagsDDL)
	db.Exec(t, "INSERT INTO "+table+" (name, count) VALUES ('a', 5), ('b', 1)")
	replica := staleReplica(t, table, db.SQL)
	rec := &recorder{}
	tags, err := getorcreate.OpenConfig[Tag](ctx, db.SQL, getorcreate.Config{Table: table, Key: []string{"name"}, Replica: replica, Tracer: rec})
	if err != nil {
		t.Fatal(err)
	}

	res, err := tags.GetOrCreate(ctx, Tag{Name: "a"})
	if err != nil || res.Created || !res.FromReplica || res.Row.Count != 2 {
		t.Fatalf("a: %+v %v; want the replica's row (count 2), not created", res, err)
	}
	if d := rec.last(); d.Path != getorcreate.PathReplica || d.Statements != 1 {
		t.Fatalf("a: path %s, %d statements; want replica, 1", d.Path, d.Statements)
	}
	res, err = tags.GetOrCreate(getorcreate.FromPrimary(ctx), Tag{Name: "a"})
	if err != nil || res.Created || res.FromReplica || res.Row.Count != 5 {
		t.Fatalf("a from the primary: %+v %v; want count 5", res, err)
	}
	// Missing on the replica, there on the primary: found, not created.
	res, err = tags.GetOrCreate(ctx, Tag{Name: "b"})
	if err != nil || res.Created || res.FromReplica || res.Row.Count != 1 {
		t.Fatalf("b: %+v %v; want the primary's row, not created", res, err)
	}
	// New: created on the primary only.
	res, err = tags.GetOrCreate(ctx, Tag{Name: "c"})
	if err != nil || !res.Created || res.FromReplica {
		t.Fatalf("c: %+v %v; want created on the primary", res, err)
	}
	// Deleted on the primary, still on the replica: the documented staleness.
	res, err = tags.GetOrCreate(ctx, Tag{Name: "gone"})
	if err != nil || res.Created || !res.FromReplica || res.Row.ID != 999 {
		t.Fatalf("gone: %+v %v; want the replica's (stale) row", res, err)
	}
	// Writes go to the primary whatever the replica holds.
	res, err = tags.UpdateOrCreate(ctx, Tag{Name: "a", Count: 1}, getorcreate.Add("count", 1))
	if err != nil || res.FromReplica || res.Row.Count != 6 {
		t.Fatalf("update a: %+v %v; want 6 from the primary", res, err)
	}
	// Bulk: the replica's rows, then one bulk call on the primary for the rest.
	all, err := tags.GetOrCreateMany(ctx, []Tag{{Name: "a"}, {Name: "b"}, {Name: "d"}, {Name: "a"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		created, replica bool
		count            int64
	}{{false, true, 2}, {false, false, 1}, {true, false, 0}, {false, true, 2}}
	for i, w := range want {
		if r := all[i]; r.Created != w.created || r.FromReplica != w.replica || r.Row.Count != w.count {
			t.Fatalf("bulk input %d: %+v; want %+v", i, r, w)
		}
	}
	all, err = tags.GetOrCreateMany(ctx, []Tag{{Name: "a"}, {Name: "gone"}})
	if err != nil || !all[0].FromReplica || !all[1].FromReplica {
		t.Fatalf("bulk of replica rows only: %+v %v", all, err)
	}
	if d := rec.last(); d.Statements != 1 {
		t.Fatalf("bulk answered by the replica: %d statements, want 1", d.Statements)
	}
	var n int
	if err := replica.QueryRow("SELECT COUNT(*) FROM " + table).Scan(&n); err != nil || n != 2 || storedCount(t, replica, table, "a") != 2 {
		t.Fatalf("the replica was written: %d rows, %v", n, err)
	}
	if got := storedCount(t, db.SQL, table, "a"); got != 6 {
		t.Fatalf("primary count of a %d, want 6", got)
	}
	// A replica that fails is a miss.
	replica.Close()
	res, err = tags.GetOrCreate(ctx, Tag{Name: "a"})
	if err != nil || res.FromReplica || res.Row.Count != 6 {
		t.Fatalf("a with the replica closed: %+v %v; want the primary's row", res, err)
	}
	if _, err := tags.GetOrCreateMany(ctx, []Tag{{Name: "a"}, {Name: "e"}}); err != nil {
		t.Fatal(err)
	}
}

// TestReplicaStampede: the suite's stampede with a replica that is a
// second pool on the same database, on every database: the replica
// answers the callers that come after the winner's commit, the primary
// the others; still one row, one id and one creator per key.
func TestReplicaStampede(t *testing.T) {
	testdb.EachOf(t, []string{"sqlite", "postgres", "mysql"}, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		table := db.Create(t, testdb.TagsDDL)
		replica := testdb.FreshPool(t, db.DSN)
		tags, err := getorcreate.OpenConfig[Tag](ctx, db.SQL, getorcreate.Config{Table: table, Key: []string{"name"}, Replica: replica})
		if err != nil {
			t.Fatal(err)
		}
		var v verdict
		var hits atomic.Int64
		for r := range rounds(t, 10) {
			key := fmt.Sprintf("k-%d", r)
			outs := stampede(32, key, func(key string) outcome {
				res, err := tags.GetOrCreate(ctx, Tag{Name: key})
				if res.FromReplica {
					hits.Add(1)
				}
				return outcome{res.Row.ID, res.Created, err}
			})
			v.add(db, t, table, key, outs)
			res, err := tags.GetOrCreateMany(ctx, []Tag{{Name: key}, {Name: key + "-new"}})
			if err != nil || res[0].Created || !res[0].FromReplica || !res[1].Created || res[1].FromReplica {
				t.Fatalf("bulk after the stampede: %+v %v", res, err)
			}
		}
		if !v.clean() {
			t.Fatalf("GetOrCreate with a replica broke the contract: %+v", v)
		}
		t.Logf("%d of the calls were answered by the replica", hits.Load())
	})
}

// TestOpenOneConnectionPool: the pooler check at Open needs a second
// connection; a pool of one must still open (it is not probed).
func TestOpenOneConnectionPool(t *testing.T) {
	testdb.EachOf(t, []string{"postgres"}, func(t *testing.T, db *testdb.DB) {
		table := db.Create(t, testdb.TagsDDL)
		one := testdb.FreshPool(t, db.DSN)
		one.SetMaxOpenConns(1)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := getorcreate.Open[Tag](ctx, one, table, "name"); err != nil {
			t.Fatal(err)
		}
	})
}
