package getorcreate_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getorcreate/getorcreate"
	"github.com/getorcreate/getorcreate/internal/faultproxy"
	"github.com/getorcreate/getorcreate/internal/testdb"
	"github.com/getorcreate/getorcreate/pgxv5"
)

// proxied is a database reached through a fault proxy: tables opened on
// it, and the proxy that cuts their connections.
type proxied struct {
	db    *testdb.DB
	proxy *faultproxy.Proxy
	open  func(t *testing.T, cfg getorcreate.Config) *getorcreate.Table[Tag]
}

// throughProxy opens a pool on db through a fault proxy; the table calls
// run on it, the test's checks on db.SQL, directly.
func throughProxy(t *testing.T, db *testdb.DB) *proxied {
	t.Helper()
	via, p := db.ThroughProxy(t)
	pr := &proxied{db: db, proxy: p}
	if db.Pool != nil {
		pool := testdb.FreshPgxPool(t, via)
		pr.open = func(t *testing.T, cfg getorcreate.Config) *getorcreate.Table[Tag] {
			tags, err := pgxv5.OpenConfig[Tag](context.Background(), pool, cfg)
			if err != nil {
				t.Fatal(err)
			}
			return tags
		}
		return pr
	}
	pool := testdb.FreshPool(t, via)
	pr.open = func(t *testing.T, cfg getorcreate.Config) *getorcreate.Table[Tag] {
		cfg.Dialect = db.Dialect
		tags, err := getorcreate.OpenConfig[Tag](context.Background(), pool, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return tags
	}
	return pr
}

// faultCase is one path, one fault and what the caller must get.
type faultCase struct {
	name string
	// rule is the cut; match is looked for in the statement, in lower case
	// ("update " is in PostgreSQL's UPDATE and upsert, and in MariaDB's
	// ON DUPLICATE KEY UPDATE).
	match string
	when  faultproxy.When
	// run makes the call on a table whose key "k" may exist (prepare) and
	// checks the result it returned and what is stored.
	prepare bool
	run     func(t *testing.T, tags *getorcreate.Table[Tag], count func() int64, rows func() int)
}

// TestFaults cuts a connection at chosen moments of each path, through a
// proxy in front of the real server: before the statement reaches the
// server, after it ran and before its answer arrives, and at COMMIT. For
// each it checks what the caller gets and what is stored: idempotent calls
// succeed (retried on another connection), a non-idempotent update never
// runs twice and says when its outcome is unknown, and a request id makes
// it exact.
func TestFaults(t *testing.T) {
	ctx := context.Background()
	inc := getorcreate.Add("count", 1)
	wantIndeterminate := func(t *testing.T, err error) {
		t.Helper()
		if !errors.Is(err, getorcreate.ErrIndeterminate) || !errors.Is(err, getorcreate.ErrConnection) || getorcreate.IsRetryable(err) {
			t.Fatalf("got %v, want ErrIndeterminate (which matches ErrConnection and is not retryable)", err)
		}
	}
	cases := []faultCase{
		{name: "get existing/find after send", match: "select ", when: faultproxy.AfterSend, prepare: true,
			run: func(t *testing.T, tags *getorcreate.Table[Tag], count func() int64, rows func() int) {
				res, err := tags.GetOrCreate(ctx, Tag{Name: "k"})
				if err != nil || res.Created || res.Attempts != 2 {
					t.Fatalf("%+v, %v; want the row, found on the second attempt", res, err)
				}
			}},
		{name: "get new/insert before send", match: "insert ", when: faultproxy.BeforeSend,
			run: func(t *testing.T, tags *getorcreate.Table[Tag], count func() int64, rows func() int) {
				res, err := tags.GetOrCreate(ctx, Tag{Name: "k"})
				if err != nil || res.Attempts != 2 || !(res.Created || res.MaybeCreated) || rows() != 1 {
					t.Fatalf("%+v, %v, %d rows; want the row, created by this call", res, err, rows())
				}
			}},
		{name: "get new/insert after send", match: "insert ", when: faultproxy.AfterSend,
			run: func(t *testing.T, tags *getorcreate.Table[Tag], count func() int64, rows func() int) {
				res, err := tags.GetOrCreate(ctx, Tag{Name: "k"})
				// The lost insert committed: the retry finds its row, and
				// says it may be this call's own.
				if err != nil || res.Created || !res.MaybeCreated || rows() != 1 {
					t.Fatalf("%+v, %v, %d rows; want the row, MaybeCreated", res, err, rows())
				}
			}},
		{name: "update add/upsert before send", match: "update ", when: faultproxy.BeforeSend, prepare: true,
			run: func(t *testing.T, tags *getorcreate.Table[Tag], count func() int64, rows func() int) {
				_, err := tags.UpdateOrCreate(ctx, Tag{Name: "k", Count: 1}, inc)
				wantIndeterminate(t, err)
				if c := count(); c != 1 {
					t.Fatalf("count %d: the increment must not have been re-run", c)
				}
			}},
		{name: "update add/upsert after send", match: "update ", when: faultproxy.AfterSend, prepare: true,
			run: func(t *testing.T, tags *getorcreate.Table[Tag], count func() int64, rows func() int) {
				_, err := tags.UpdateOrCreate(ctx, Tag{Name: "k", Count: 1}, inc)
				wantIndeterminate(t, err)
				if c := count(); c != 2 {
					t.Fatalf("count %d: the increment ran once, unacknowledged; want 2, not re-run", c)
				}
			}},
		{name: "update set/upsert after send", match: "update ", when: faultproxy.AfterSend, prepare: true,
			run: func(t *testing.T, tags *getorcreate.Table[Tag], count func() int64, rows func() int) {
				res, err := tags.UpdateOrCreate(ctx, Tag{Name: "k"}, getorcreate.Set("count", 7))
				if err != nil || res.Row.Count != 7 || res.Attempts != 2 || count() != 7 {
					t.Fatalf("%+v, %v, count %d; want Set retried", res, err, count())
				}
			}},
		{name: "update once/upsert after send", match: "update ", when: faultproxy.AfterSend, prepare: true,
			run: func(t *testing.T, tags *getorcreate.Table[Tag], count func() int64, rows func() int) {
				res, err := tags.UpdateOrCreateOnce(ctx, "req", Tag{Name: "k", Count: 1}, inc)
				if err != nil || res.Replayed || res.Row.Count != 2 || count() != 2 {
					t.Fatalf("%+v, %v, count %d; want one increment", res, err, count())
				}
			}},
		{name: "update once/commit after send", match: "commit", when: faultproxy.AfterSend, prepare: true,
			run: func(t *testing.T, tags *getorcreate.Table[Tag], count func() int64, rows func() int) {
				res, err := tags.UpdateOrCreateOnce(ctx, "req", Tag{Name: "k", Count: 1}, inc)
				// The lost COMMIT committed: the retry finds the request
				// in the ledger and replays it.
				if err != nil || !res.Replayed || res.Row.Count != 2 || count() != 2 {
					t.Fatalf("%+v, %v, count %d; want the first outcome replayed, one increment", res, err, count())
				}
			}},
		{name: "update once/commit before send", match: "commit", when: faultproxy.BeforeSend, prepare: true,
			run: func(t *testing.T, tags *getorcreate.Table[Tag], count func() int64, rows func() int) {
				res, err := tags.UpdateOrCreateOnce(ctx, "req", Tag{Name: "k", Count: 1}, inc)
				if err != nil || res.Replayed || res.Row.Count != 2 || count() != 2 {
					t.Fatalf("%+v, %v, count %d; want one increment, applied on the retry", res, err, count())
				}
			}},
		{name: "bulk get/commit after send", match: "commit", when: faultproxy.AfterSend,
			run: func(t *testing.T, tags *getorcreate.Table[Tag], count func() int64, rows func() int) {
				res, err := tags.GetOrCreateMany(ctx, []Tag{{Name: "k"}, {Name: "k2"}, {Name: "k3"}})
				if err != nil || rows() != 3 {
					t.Fatalf("%v, %d rows", err, rows())
				}
				for _, r := range res {
					if r.Created || !r.MaybeCreated {
						t.Fatalf("%+v: the lost COMMIT committed; want MaybeCreated", r)
					}
				}
			}},
		{name: "bulk get/commit before send", match: "commit", when: faultproxy.BeforeSend,
			run: func(t *testing.T, tags *getorcreate.Table[Tag], count func() int64, rows func() int) {
				res, err := tags.GetOrCreateMany(ctx, []Tag{{Name: "k"}, {Name: "k2"}, {Name: "k3"}})
				if err != nil || rows() != 3 {
					t.Fatalf("%v, %d rows", err, rows())
				}
				for _, r := range res {
					if !r.Created && !r.MaybeCreated {
						t.Fatalf("%+v: nobody else created it", r)
					}
				}
			}},
		{name: "bulk add/statement after send", match: "update ", when: faultproxy.AfterSend, prepare: true,
			run: func(t *testing.T, tags *getorcreate.Table[Tag], count func() int64, rows func() int) {
				// Inside the library's own transaction, which never
				// committed: a definite failure, retried.
				res, err := tags.UpdateOrCreateMany(ctx, []Tag{{Name: "k", Count: 1}, {Name: "k2", Count: 1}}, inc)
				if err != nil || res[0].Row.Count != 2 || count() != 2 || rows() != 2 {
					t.Fatalf("%+v, %v, count %d; want one increment", res, err, count())
				}
			}},
		{name: "bulk add/commit after send", match: "commit", when: faultproxy.AfterSend, prepare: true,
			run: func(t *testing.T, tags *getorcreate.Table[Tag], count func() int64, rows func() int) {
				_, err := tags.UpdateOrCreateMany(ctx, []Tag{{Name: "k", Count: 1}, {Name: "k2", Count: 1}}, inc)
				wantIndeterminate(t, err)
				if c := count(); c != 2 {
					t.Fatalf("count %d: the lost COMMIT committed one increment; want 2, not re-run", c)
				}
			}},
		{name: "bulk add/commit before send", match: "commit", when: faultproxy.BeforeSend, prepare: true,
			run: func(t *testing.T, tags *getorcreate.Table[Tag], count func() int64, rows func() int) {
				_, err := tags.UpdateOrCreateMany(ctx, []Tag{{Name: "k", Count: 1}, {Name: "k2", Count: 1}}, inc)
				wantIndeterminate(t, err)
				if c := count(); c != 1 {
					t.Fatalf("count %d: the COMMIT never arrived; want 1", c)
				}
			}},
	}
	testdb.EachOf(t, []string{"postgres", "postgres-pgx", "mysql"}, func(t *testing.T, db *testdb.DB) {
		pr := throughProxy(t, db)
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				table := db.Create(t, testdb.TagsDDL)
				l, err := getorcreate.CreateLedger(ctx, db.SQL, db.Table(t))
				if err != nil {
					t.Fatal(err)
				}
				tags := pr.open(t, getorcreate.Config{Table: table, Key: []string{"name"}, Ledger: l, Order: getorcreate.ReadFirst})
				count := func() int64 { return countOf(t, db, table, "k") }
				rows := func() int { return db.Count(t, table) }
				if c.prepare {
					if _, err := tags.UpdateOrCreate(ctx, Tag{Name: "k", Count: 1}, inc); err != nil {
						t.Fatal(err)
					}
				}
				// Warm the pool's connections, so that the cut meets a
				// statement, not a driver's liveness ping.
				if _, err := tags.GetOrCreate(ctx, Tag{Name: "warm"}); err != nil {
					t.Fatal(err)
				}
				db.Exec(t, "DELETE FROM "+table+" WHERE name = 'warm'")
				before := pr.proxy.Stats()
				pr.proxy.Cut(faultproxy.Rule{Match: []byte(c.match), When: c.when})
				c.run(t, tags, count, rows)
				pr.proxy.Clear()
				after := pr.proxy.Stats()
				if after.CutBefore+after.CutAfter == before.CutBefore+before.CutAfter {
					t.Fatal("the proxy cut nothing: the case tested no fault")
				}
			})
		}
	})
}

// TestSessionKiller: while 8 goroutines create fresh keys and 8 increment
// counters, a session of the pool is terminated by the server every 30-40
// ms for a few seconds. No get-or-create fails, every key has one row and
// at most one caller saw it created, and increments stay within Jepsen's
// bounds (stored between acknowledged and attempted); with request ids
// they equal the requests exactly.
func TestSessionKiller(t *testing.T) {
	duration := 10 * time.Second
	if testing.Short() {
		duration = 3 * time.Second
	}
	testdb.EachOf(t, []string{"postgres", "postgres-pgx", "mysql"}, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		table := db.Create(t, testdb.TagsDDL)
		l, err := getorcreate.CreateLedger(ctx, db.SQL, db.Table(t))
		if err != nil {
			t.Fatal(err)
		}
		own, listQ := db.OwnSessions(t)
		pool := testdb.FreshPool(t, own)
		l, err = getorcreate.OpenLedger(ctx, pool, l.Name())
		if err != nil {
			t.Fatal(err)
		}
		cfg := getorcreate.Config{Table: table, Key: []string{"name"}, Ledger: l, Dialect: db.Dialect}
		var tags *getorcreate.Table[Tag]
		var sessions func() []int64
		if db.Pool != nil {
			pp := testdb.FreshPgxPool(t, own)
			if tags, err = pgxv5.OpenConfig[Tag](ctx, pp, cfg); err != nil {
				t.Fatal(err)
			}
		} else if tags, err = getorcreate.OpenConfig[Tag](ctx, pool, cfg); err != nil {
			t.Fatal(err)
		}
		// The sessions to kill: the table's pool's own, idle or busy.
		killQ := `SELECT pg_terminate_backend(%d)`
		if db.Kind == "mysql" {
			killQ = `KILL %d`
		}
		killer := testdb.FreshPool(t, db.DSN)
		sessions = func() []int64 {
			var ids []int64
			rows, err := killer.Query(listQ)
			if err != nil {
				return nil
			}
			defer rows.Close()
			for rows.Next() {
				var id int64
				if rows.Scan(&id) == nil {
					ids = append(ids, id)
				}
			}
			return ids
		}
		stop := make(chan struct{})
		var kills atomic.Int64
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Duration(30+rand.IntN(11)) * time.Millisecond):
				}
				if ids := sessions(); len(ids) > 0 {
					if _, err := killer.Exec(fmt.Sprintf(killQ, ids[rand.IntN(len(ids))])); err == nil {
						kills.Add(1)
					}
				}
			}
		}()

		type gotKey struct {
			id      int64
			created int
			maybe   int
		}
		var mu sync.Mutex
		keys := map[string]*gotKey{}
		var getErrs, incAcked, incAttempted, incFailed, onceAcked atomic.Int64
		deadline := time.Now().Add(duration)
		var workers sync.WaitGroup
		for w := range 8 {
			workers.Add(2)
			go func() { // get-or-create of fresh keys, two callers each
				defer workers.Done()
				for i := 0; time.Now().Before(deadline); i++ {
					name := fmt.Sprintf("g%d-%d", w, i)
					var inner sync.WaitGroup
					for range 2 {
						inner.Add(1)
						go func() {
							defer inner.Done()
							res, err := tags.GetOrCreate(ctx, Tag{Name: name})
							if err != nil {
								getErrs.Add(1)
								t.Errorf("get-or-create under the killer: %v", err)
								return
							}
							mu.Lock()
							k := keys[name]
							if k == nil {
								k = &gotKey{id: res.Row.ID}
								keys[name] = k
							}
							if k.id != res.Row.ID {
								t.Errorf("key %s: ids %d and %d", name, k.id, res.Row.ID)
							}
							k.created += btoi(res.Created)
							k.maybe += btoi(res.MaybeCreated)
							mu.Unlock()
						}()
					}
					inner.Wait()
				}
			}()
			go func() { // increments: plain Add, and Add with a request id
				defer workers.Done()
				for i := 0; time.Now().Before(deadline); i++ {
					incAttempted.Add(1)
					if _, err := tags.UpdateOrCreate(ctx, Tag{Name: "plain", Count: 1}, getorcreate.Add("count", 1)); err == nil {
						incAcked.Add(1)
					} else if !errors.Is(err, getorcreate.ErrConnection) {
						t.Errorf("increment: %v", err)
					} else {
						incFailed.Add(1)
					}
					if _, err := tags.UpdateOrCreateOnce(ctx, fmt.Sprintf("w%d-%d", w, i), Tag{Name: "once", Count: 1}, getorcreate.Add("count", 1)); err != nil {
						t.Errorf("increment with a request id: %v", err)
					} else {
						onceAcked.Add(1)
					}
				}
			}()
		}
		workers.Wait()
		close(stop)
		wg.Wait()
		if kills.Load() < 20 {
			t.Fatalf("only %d sessions killed: the test tested little", kills.Load())
		}
		for name, k := range keys {
			if k.created > 1 {
				t.Errorf("key %s created %d times", name, k.created)
			}
			if k.created+k.maybe == 0 {
				t.Errorf("key %s: nobody created it, nobody may have", name)
			}
		}
		var dup int
		if err := db.SQL.QueryRow("SELECT COUNT(*) FROM (SELECT name FROM " + table + " GROUP BY name HAVING COUNT(*) > 1) d").Scan(&dup); err != nil || dup != 0 {
			t.Errorf("%d keys with more than one row (%v)", dup, err)
		}
		plain := countOf(t, db, table, "plain")
		if plain < incAcked.Load() || plain > incAttempted.Load() {
			t.Errorf("plain counter %d outside [acknowledged %d, attempted %d]", plain, incAcked.Load(), incAttempted.Load())
		}
		if once := countOf(t, db, table, "once"); once != onceAcked.Load() {
			t.Errorf("counter with request ids %d, want exactly the %d requests", once, onceAcked.Load())
		}
		t.Logf("%d sessions killed; %d keys, no get-or-create error; plain increments: %d acknowledged, %d in doubt or failed, %d stored; with request ids: %d of %d",
			kills.Load(), len(keys), incAcked.Load(), incFailed.Load(), plain, onceAcked.Load(), onceAcked.Load())
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
