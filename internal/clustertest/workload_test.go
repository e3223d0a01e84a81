package clustertest

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/getorcreate/getorcreate"
)

// node is one way callers reach the database: a Galera node, or a path
// (database/sql, pgxv5) through PgBouncer. Caller i uses nodes[i%len].
type node struct {
	name string
	tags *getorcreate.Table[tag]
	// runTx runs fn in a caller's transaction, retried whole (RunTx or
	// pgxv5.RunTx).
	runTx func(ctx context.Context, fn func(q getorcreate.Querier) error) error
}

func sqlRunTx(db *sql.DB) func(ctx context.Context, fn func(q getorcreate.Querier) error) error {
	policy := getorcreate.RetryPolicy{MaxRetries: 200}
	return func(ctx context.Context, fn func(q getorcreate.Querier) error) error {
		return getorcreate.RunTxPolicy(ctx, db, nil, policy, func(tx *sql.Tx) error { return fn(tx) })
	}
}

// call is what one caller saw.
type call struct {
	id      int64
	created bool
	count   int64
	err     error
}

// suiteResult sums up a run of the stampedes.
type suiteResult struct {
	calls   int
	elapsed time.Duration
	errs    errorsSeen
}

// stampedes runs the suite's stampedes with callers goroutines spread over
// the nodes, each released by a barrier: one new key, many keys in
// different orders, a hot counter, bulk calls in opposite key orders, and
// caller's transactions. check reads the table where every commit is
// visible. Every count is checked exactly.
func stampedes(t *testing.T, kind string, nodes []node, check *sql.DB, table string, callers, rounds int) *suiteResult {
	t.Helper()
	ctx := context.Background()
	res := &suiteResult{}
	start := time.Now()
	ph := "?"
	if kind == "postgres" {
		ph = "$1"
	}
	stored := func(key string) (rows int, count int64) {
		t.Helper()
		if err := check.QueryRow("SELECT COUNT(*), COALESCE(SUM(count), 0) FROM "+table+" WHERE name = "+ph, key).Scan(&rows, &count); err != nil {
			t.Fatal(err)
		}
		return rows, count
	}
	var mu sync.Mutex
	run := func(what string, fn func(i int, n node) []call, want func(outs [][]call)) {
		t.Helper()
		outs := make([][]call, callers)
		barrier(callers, func(i int) { outs[i] = fn(i, nodes[i%len(nodes)]) })
		mu.Lock()
		for _, o := range outs {
			for _, c := range o {
				res.calls++
				res.errs.add(c.err)
			}
		}
		mu.Unlock()
		want(outs)
	}
	oneCreator := func(what, key string, cs []call) {
		t.Helper()
		created, id := 0, int64(0)
		for _, c := range cs {
			if c.err != nil {
				continue
			}
			if c.created {
				created++
			}
			if id == 0 {
				id = c.id
			} else if c.id != id {
				t.Errorf("%s %s: ids %d and %d for one key", what, key, id, c.id)
			}
		}
		if created != 1 {
			t.Errorf("%s %s: %d callers were told created, want 1", what, key, created)
		}
	}
	for r := range rounds {
		key := fmt.Sprintf("new-%d", r)
		run("one new key", func(i int, n node) []call {
			res, err := n.tags.GetOrCreate(ctx, tag{Name: key})
			return []call{{res.Row.ID, res.Created, 0, err}}
		}, func(outs [][]call) {
			oneCreator("one new key", key, slices.Concat(outs...))
			if rows, _ := stored(key); rows != 1 {
				t.Errorf("one new key %s: %d rows", key, rows)
			}
		})

		keys := make([]string, 20)
		for k := range keys {
			keys[k] = fmt.Sprintf("many-%d-%02d", r, k)
		}
		run("many keys", func(i int, n node) []call {
			order := slices.Clone(keys)
			rand.Shuffle(len(order), func(a, b int) { order[a], order[b] = order[b], order[a] })
			out := make([]call, len(keys))
			for _, k := range order {
				res, err := n.tags.GetOrCreate(ctx, tag{Name: k})
				out[slices.Index(keys, k)] = call{res.Row.ID, res.Created, 0, err}
			}
			return out
		}, func(outs [][]call) {
			for k, key := range keys {
				var cs []call
				for _, o := range outs {
					cs = append(cs, o[k])
				}
				oneCreator("many keys", key, cs)
				if rows, _ := stored(key); rows != 1 {
					t.Errorf("many keys %s: %d rows", key, rows)
				}
			}
		})

		hot := fmt.Sprintf("hot-%d", r)
		const per = 5
		run("hot counter", func(i int, n node) []call {
			out := make([]call, per)
			for j := range per {
				res, err := n.tags.UpdateOrCreate(ctx, tag{Name: hot, Count: 1}, getorcreate.Add("count", 1))
				out[j] = call{res.Row.ID, res.Created, res.Row.Count, err}
			}
			return out
		}, func(outs [][]call) {
			oneCreator("hot counter", hot, slices.Concat(outs...))
			if rows, count := stored(hot); rows != 1 || count != int64(callers*per) {
				t.Errorf("hot counter %s: %d rows, count %d, want 1 row, count %d", hot, rows, count, callers*per)
			}
		})

		for _, update := range []bool{true, false} {
			bulk := make([]tag, 10)
			for k := range bulk {
				bulk[k] = tag{Name: fmt.Sprintf("bulk-%d-%v-%02d", r, update, k), Count: 1}
			}
			run("bulk, opposite orders", func(i int, n node) []call {
				rows := slices.Clone(bulk)
				if i%2 == 1 {
					slices.Reverse(rows)
				}
				var got []getorcreate.Result[tag]
				var err error
				if update {
					got, err = n.tags.UpdateOrCreateMany(ctx, rows, getorcreate.Add("count", 1))
				} else {
					got, err = n.tags.GetOrCreateMany(ctx, rows)
				}
				out := make([]call, len(bulk))
				if err != nil {
					out[0].err = err
					return out
				}
				for _, g := range got {
					k := slices.IndexFunc(bulk, func(b tag) bool { return b.Name == g.Row.Name })
					out[k] = call{g.Row.ID, g.Created, g.Row.Count, nil}
				}
				return out
			}, func(outs [][]call) {
				for k, b := range bulk {
					var cs []call
					for _, o := range outs {
						cs = append(cs, o[k])
					}
					oneCreator("bulk", b.Name, cs)
					want := int64(1)
					if update {
						want = int64(callers) // created with 1, then +1 by each other caller
					}
					if rows, count := stored(b.Name); rows != 1 || count != want {
						t.Errorf("bulk %s: %d rows, count %d, want 1 row, count %d", b.Name, rows, count, want)
					}
				}
			})
		}

		txKey := fmt.Sprintf("tx-%d", r)
		run("caller's transactions", func(i int, n node) []call {
			var res getorcreate.Result[tag]
			err := n.runTx(ctx, func(q getorcreate.Querier) error {
				var err error
				res, err = n.tags.UpdateOrCreateTx(ctx, q, tag{Name: txKey, Count: 1}, getorcreate.Add("count", 1))
				return err
			})
			return []call{{res.Row.ID, res.Created, res.Row.Count, err}}
		}, func(outs [][]call) {
			oneCreator("caller's transactions", txKey, slices.Concat(outs...))
			if rows, count := stored(txKey); rows != 1 || count != int64(callers) {
				t.Errorf("caller's transactions %s: %d rows, count %d, want 1, %d", txKey, rows, count, callers)
			}
		})
	}
	res.elapsed = time.Since(start)
	if n := res.errs.total(); n > 0 {
		t.Errorf("%d errors reached callers: %s (first: %v)", n, res.errs.String(), res.errs.first)
	}
	return res
}
