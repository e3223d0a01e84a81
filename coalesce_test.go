package getorcreate_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/getorcreate/getorcreate"
	"github.com/getorcreate/getorcreate/internal/testdb"
)

// batchCounter is a Tracer that counts calls, statements and coalesced batches.
type batchCounter struct {
	calls, statements, batched, maxBatch atomic.Int64
	alone                                atomic.Int64
}

func (c *batchCounter) TraceCallStart(ctx context.Context, _ getorcreate.TraceCallStartData) context.Context {
	return ctx
}

func (c *batchCounter) TraceCallEnd(_ context.Context, d getorcreate.TraceCallEndData) {
	c.calls.Add(1)
	c.statements.Add(int64(d.Statements))
	if d.Batch > 1 {
		c.batched.Add(1)
	}
	if d.Batch == 1 {
		c.alone.Add(1)
	}
	for {
		m := c.maxBatch.Load()
		if int64(d.Batch) <= m || c.maxBatch.CompareAndSwap(m, int64(d.Batch)) {
			break
		}
	}
}

// openCoalesced opens the tags table with Coalesce set, and a batchCounter.
func openCoalesced(t testing.TB, db *testdb.DB) (*getorcreate.Table[Tag], string, *batchCounter) {
	t.Helper()
	name := db.Create(t, testdb.TagsDDL)
	c := &batchCounter{}
	tags, err := testdb.OpenTable[Tag](db, getorcreate.Config{Table: name, Key: []string{"name"}, Coalesce: true, Tracer: c})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tags.Close() })
	return tags, name, c
}

// TestCoalesceStampede: 64 goroutines released by a barrier onto one new
// key, round after round, on a coalescing table: one row, one id, exactly
// one creator, and every increment counted.
func TestCoalesceStampede(t *testing.T) {
	testdb.EachOf(t, testdb.Kinds(true), func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		tags, table, c := openCoalesced(t, db)
		var v verdict
		for r := range rounds(t, 20) {
			key := fmt.Sprintf("get-%d", r)
			v.add(db, t, table, key, stampede(64, key, func(key string) outcome {
				res, err := tags.GetOrCreate(ctx, Tag{Name: key})
				return outcome{res.Row.ID, res.Created, err}
			}))
		}
		if !v.clean() {
			t.Fatalf("coalesced GetOrCreate broke the contract: %+v (first error: %v)", v, v.firstErr)
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
			t.Fatalf("coalesced UpdateOrCreate broke the contract: %+v (first error: %v)", v, v.firstErr)
		}
		t.Logf("%d calls, %d statements, %d calls in batches of 2 or more (largest %d)", c.calls.Load(), c.statements.Load(), c.batched.Load(), c.maxBatch.Load())
	})
}

// TestCoalesceHotCounter: 32 workers add 1 to one key, many times each.
// The count is exact, one caller created the row, and the counts the
// callers saw are distinct and exactly 1..N: each caller has its own place
// in the sequence of increments, in batches as alone.
func TestCoalesceHotCounter(t *testing.T) {
	testdb.EachOf(t, testdb.Kinds(true), func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		tags, table, c := openCoalesced(t, db)
		const workers = 32
		per := rounds(t, 25)
		seen := make([][]int64, workers)
		var created atomic.Int64
		var wg sync.WaitGroup
		gate := make(chan struct{})
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				for range per {
					res, err := tags.UpdateOrCreate(ctx, Tag{Name: "hot", Count: 1}, getorcreate.Add("count", 1))
					if err != nil {
						t.Error(err)
						return
					}
					if res.Created {
						created.Add(1)
					}
					seen[w] = append(seen[w], res.Row.Count)
				}
			}()
		}
		close(gate)
		wg.Wait()
		n := int64(workers * per)
		var count int64
		if err := db.SQL.QueryRow("SELECT count FROM "+table+" WHERE name = "+placeholder(db), "hot").Scan(&count); err != nil {
			t.Fatal(err)
		}
		if count != n || created.Load() != 1 {
			t.Fatalf("count %d after %d increments, %d creators", count, n, created.Load())
		}
		all := slices.Concat(seen...)
		slices.Sort(all)
		for i, v := range all {
			if v != int64(i+1) {
				t.Fatalf("the counts the callers saw are not exactly 1..%d: position %d holds %d (%v...)", n, i, v, all[:min(len(all), 10)])
			}
		}
		if c.statements.Load() >= n {
			t.Errorf("%d statements for %d calls: no coalescing", c.statements.Load(), n)
		}
		t.Logf("%d calls, %d statements, %d calls in batches (largest %d)", n, c.statements.Load(), c.batched.Load(), c.maxBatch.Load())
	})
}

// TestCoalesceKeys: 32 workers increment 1,000 keys by random deltas; every
// key's count is the sum of its deltas, and every key was created once.
func TestCoalesceKeys(t *testing.T) {
	testdb.EachOf(t, testdb.Kinds(true), func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		tags, table, c := openCoalesced(t, db)
		const workers, keys = 32, 1000
		per := rounds(t, 100)
		want := make([]atomic.Int64, keys)
		creates := make([]atomic.Int64, keys)
		var wg sync.WaitGroup
		gate := make(chan struct{})
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				for range per {
					k := rand.IntN(keys)
					if rand.IntN(2) == 0 {
						k = rand.IntN(10) // hot keys, often in one batch together
					}
					d := int64(1 + rand.IntN(5))
					res, err := tags.UpdateOrCreate(ctx, Tag{Name: fmt.Sprintf("k%04d", k), Count: d}, getorcreate.Add("count", d))
					if err != nil {
						t.Error(err)
						return
					}
					want[k].Add(d)
					if res.Created {
						creates[k].Add(1)
					}
					if res.Row.Name != fmt.Sprintf("k%04d", k) || res.Row.ID == 0 || res.Row.Count < d {
						t.Errorf("key %d: row %+v", k, res.Row)
					}
				}
			}()
		}
		close(gate)
		wg.Wait()
		got := map[string]int64{}
		rows, err := db.SQL.Query("SELECT name, count FROM " + table)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var name string
			var n int64
			if err := rows.Scan(&name, &n); err != nil {
				t.Fatal(err)
			}
			got[name] = n
		}
		rows.Close()
		for k := range keys {
			name := fmt.Sprintf("k%04d", k)
			w := want[k].Load()
			if got[name] != w {
				t.Errorf("%s: count %d, want %d", name, got[name], w)
			}
			if cr := creates[k].Load(); (w > 0) != (cr == 1) || cr > 1 {
				t.Errorf("%s: created %d times", name, cr)
			}
		}
		t.Logf("%d calls, %d statements, %d calls in batches (largest %d)", workers*per, c.statements.Load(), c.batched.Load(), c.maxBatch.Load())
	})
}
