package getorcreate_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/getorcreate/getorcreate"
	"github.com/getorcreate/getorcreate/internal/testdb"
)

// outcome is what one caller saw.
type outcome struct {
	id      int64
	created bool
	err     error
}

// stampede releases n goroutines at once onto key with op, and returns what
// each saw. The barrier is a closed channel: every goroutine is parked on it
// before it opens.
func stampede(n int, key string, op func(key string) outcome) []outcome {
	out := make([]outcome, n)
	var ready, done sync.WaitGroup
	gate := make(chan struct{})
	ready.Add(n)
	done.Add(n)
	for i := range n {
		go func() {
			defer done.Done()
			ready.Done()
			<-gate
			out[i] = op(key)
		}()
	}
	ready.Wait()
	close(gate)
	done.Wait()
	return out
}

// verdict checks the contract for one key: every caller got the same id, no
// caller an error, exactly one caller created=true, and one row in the table.
type verdict struct {
	errors, createdFlagErrors, idMismatches, extraRows int
	firstErr                                           error
}

func (v *verdict) add(db *testdb.DB, t *testing.T, table, key string, outs []outcome) {
	t.Helper()
	created := 0
	var id int64
	for _, o := range outs {
		if o.err != nil {
			v.errors++
			if v.firstErr == nil {
				v.firstErr = o.err
			}
			continue
		}
		if o.created {
			created++
		}
		if id == 0 {
			id = o.id
		} else if o.id != id {
			v.idMismatches++
		}
	}
	if created != 1 {
		v.createdFlagErrors++
	}
	var rows int
	if err := db.SQL.QueryRow("SELECT COUNT(*) FROM "+table+" WHERE name = "+placeholder(db), key).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	v.extraRows += max(0, rows-1)
}

func (v verdict) clean() bool {
	return v.errors == 0 && v.createdFlagErrors == 0 && v.idMismatches == 0 && v.extraRows == 0
}

func placeholder(db *testdb.DB) string {
	if db.Kind == "postgres" {
		return "$1"
	}
	return "?"
}

func rounds(t *testing.T, full int) int {
	if testing.Short() {
		return max(2, full/5)
	}
	return full
}

// stampedeRounds runs the stampede's rounds on tags: 64 goroutines behind
// a barrier on one new key per round, through GetOrCreate and then
// UpdateOrCreate with Add, checking one row, one id, one creator and every
// increment counted.
func stampedeRounds(t *testing.T, db *testdb.DB, tags *getorcreate.Table[Tag], table string) {
	t.Helper()
	ctx := context.Background()
	var v verdict
	for r := range rounds(t, 20) {
		key := fmt.Sprintf("get-%d", r)
		v.add(db, t, table, key, stampede(64, key, func(key string) outcome {
			res, err := tags.GetOrCreate(ctx, Tag{Name: key})
			return outcome{res.Row.ID, res.Created, err}
		}))
	}
	if !v.clean() {
		t.Fatalf("GetOrCreate broke the contract: %+v (first error: %v)", v, v.firstErr)
	}
	for r := range rounds(t, 20) {
		key := fmt.Sprintf("upd-%d", r)
		v.add(db, t, table, key, stampede(64, key, func(key string) outcome {
			res, err := tags.UpdateOrCreate(ctx, Tag{Name: key, Count: 1}, getorcreate.Add("count", 1))
			return outcome{res.Row.ID, res.Created, err}
		}))
		var count int64
		if err := db.SQL.QueryRow("SELECT count FROM "+table+" WHERE name = "+placeholder(db), key).Scan(&count); err != nil {
			t.Fatal(err)
		}
		if count != 64 {
			t.Fatalf("round %d: count %d after 64 increments: lost updates", r, count)
		}
	}
	if !v.clean() {
		t.Fatalf("UpdateOrCreate broke the contract: %+v (first error: %v)", v, v.firstErr)
	}
}

// TestStampede: 64 goroutines released by a barrier onto the same new key,
// round after round, through GetOrCreate and through UpdateOrCreate.
func TestStampede(t *testing.T) {
	testdb.EachOf(t, testdb.Kinds(true), func(t *testing.T, db *testdb.DB) {
		tags, table := openTags(t, db)
		stampedeRounds(t, db, tags, table)
	})
}

// TestStampedeNaive runs the same stampede with check-then-insert, written
// as people write it, and shows it failing where the library holds: a
// duplicate-key error reaches a caller (the unique index saves the data), or
// without the index, duplicate rows.
func TestStampedeNaive(t *testing.T) {
	testdb.EachOf(t, testdb.Kinds(false), func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		_, table := openTags(t, db)
		ph := placeholder(db)
		naive := func(key string) outcome {
			var id int64
			err := db.SQL.QueryRowContext(ctx, "SELECT id FROM "+table+" WHERE name = "+ph, key).Scan(&id)
			if err == nil {
				return outcome{id: id}
			}
			if err != sql.ErrNoRows {
				return outcome{err: err}
			}
			if _, err := db.SQL.ExecContext(ctx, "INSERT INTO "+table+" (name) VALUES ("+ph+")", key); err != nil {
				return outcome{err: err}
			}
			err = db.SQL.QueryRowContext(ctx, "SELECT id FROM "+table+" WHERE name = "+ph, key).Scan(&id)
			return outcome{id: id, created: true, err: err}
		}
		var v verdict
		stampede(64, "warm-up", func(string) outcome { return outcome{err: db.SQL.PingContext(ctx)} })
		// Race until the naive way fails; it usually does in the first round
		// on a server, within a few on SQLite (whose writes are quick and
		// serialised, so the window is narrow).
		r := 0
		for ; r < 300 && v.clean(); r++ {
			key := fmt.Sprintf("naive-%d", r)
			v.add(db, t, table, key, stampede(64, key, naive))
		}
		if v.clean() {
			t.Fatalf("check-then-insert held the contract in every round; the stampede is not racing: %+v", v)
		}
		t.Logf("check-then-insert on %s failed within %d rounds: %d errors reached callers (first: %v), %d keys with a wrong created flag",
			db.Name, r, v.errors, v.firstErr, v.createdFlagErrors)
	})
}

// TestKeys: 32 workers over 1,000 keys, each in its own random order.
func TestKeys(t *testing.T) {
	testdb.EachOf(t, testdb.Kinds(true), func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		tags, table := openTags(t, db)
		nkeys := 1000
		if testing.Short() {
			nkeys = 200
		}
		const workers = 32
		ids := make([][]int64, workers)
		var created atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		gate := make(chan struct{})
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ids[w] = make([]int64, nkeys)
				<-gate
				for _, k := range rand.Perm(nkeys) {
					res, err := tags.GetOrCreate(ctx, Tag{Name: fmt.Sprintf("key-%04d", k)})
					if err != nil {
						errs <- err
						return
					}
					ids[w][k] = res.Row.ID
					if res.Created {
						created.Add(1)
					}
				}
			}()
		}
		close(gate)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if n := db.Count(t, table); n != nkeys || created.Load() != int64(nkeys) {
			t.Fatalf("%d rows and %d created flags for %d keys", n, created.Load(), nkeys)
		}
		for k := range nkeys {
			for w := 1; w < workers; w++ {
				if ids[w][k] != ids[0][k] {
					t.Fatalf("key %d: worker %d saw id %d, worker 0 saw %d", k, w, ids[w][k], ids[0][k])
				}
			}
		}
	})
}

// TestHotCounter: 32 workers x 100 increments of one key; the final count is
// exact and exactly one increment created the row.
func TestHotCounter(t *testing.T) {
	testdb.EachOf(t, testdb.Kinds(true), func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		tags, table := openTags(t, db)
		const workers = 32
		per := 100
		if testing.Short() {
			per = 20
		}
		var created atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		gate := make(chan struct{})
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				for range per {
					res, err := tags.UpdateOrCreate(ctx, Tag{Name: "hot", Count: 1}, getorcreate.Add("count", 1))
					if err != nil {
						errs <- err
						return
					}
					if res.Created {
						created.Add(1)
					}
				}
			}()
		}
		close(gate)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		var count int64
		if err := db.SQL.QueryRow("SELECT count FROM " + table).Scan(&count); err != nil {
			t.Fatal(err)
		}
		if count != int64(workers*per) || created.Load() != 1 || db.Count(t, table) != 1 {
			t.Fatalf("count %d (want %d), created %d times, %d rows", count, workers*per, created.Load(), db.Count(t, table))
		}
	})
}
