package clustertest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getorcreate/getorcreate"
)

const pgreplHow = "bash .ci/cluster/pgrepl up sync (or async)"

// waitReplayed waits until the standby has the table's rows.
func waitReplayed(t *testing.T, standby *sql.DB, table string, rows int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		err := standby.QueryRow("SELECT COUNT(*) FROM " + table).Scan(&n)
		if err == nil && n == rows {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("standby has %d of %d rows after 30 s (%v)", n, rows, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStandbyReplica: a table whose Config.Replica is a streaming hot
// standby. Stampedes on new keys stay exact although the standby misses
// nearly every row just committed (CL-5); bulk calls mix the standby's
// rows and the primary's; and the existing-key throughput with and
// without the standby, in the same run, with the statements that reached
// the primary.
func TestStandbyReplica(t *testing.T) {
	ctx := context.Background()
	primary := open(t, env(t, "GETORCREATE_PGREPL_PRIMARY", pgreplHow))
	standby := open(t, env(t, "GETORCREATE_PGREPL_STANDBY", pgreplHow))
	table := newTable(t, primary, "postgres")
	rec := &retries{}
	tags := openTable(t, primary, getorcreate.Config{Table: table, Replica: standby, Tracer: rec})

	// The standby refuses writes (25006); the library never sends it one.
	if _, err := standby.Exec("INSERT INTO " + table + " (name) VALUES ('x')"); err == nil {
		t.Fatal("the standby accepted a write: it is not a standby")
	}
	const callers, rounds = 32, 10
	hits := atomic.Int64{}
	for r := range rounds {
		key := fmt.Sprintf("new-%d", r)
		outs := make([]call, callers)
		barrier(callers, func(i int) {
			res, err := tags.GetOrCreate(ctx, tag{Name: key})
			if res.FromReplica {
				hits.Add(1)
			}
			outs[i] = call{res.Row.ID, res.Created, 0, err}
		})
		created := 0
		for _, o := range outs {
			if o.err != nil || o.id != outs[0].id {
				t.Fatalf("%s: %+v", key, outs)
			}
			if o.created {
				created++
			}
		}
		if created != 1 {
			t.Fatalf("%s: %d creators", key, created)
		}
		// Straight after the commit: the standby most likely misses it,
		// and the primary says it exists.
		res, err := tags.GetOrCreate(ctx, tag{Name: key})
		if err != nil || res.Created || res.Row.ID != outs[0].id {
			t.Fatalf("%s read back: %+v %v", key, res, err)
		}
	}
	var rows int
	if err := primary.QueryRow("SELECT COUNT(*) FROM " + table).Scan(&rows); err != nil || rows != rounds {
		t.Fatalf("%d rows (%v), want %d", rows, err, rounds)
	}
	report(t, "PostgreSQL 15 streaming standby as Config.Replica (%s) | %d callers x %d new keys | exact: 1 row, 1 id, 1 creator per key; %d of %d calls answered by the standby", env(t, "GETORCREATE_PGREPL_MODE", pgreplHow), callers, rounds, hits.Load(), callers*rounds)

	// Seed existing keys and wait for the standby to have them.
	const keys = 2000
	seed := make([]tag, keys)
	for i := range seed {
		seed[i] = tag{Name: fmt.Sprintf("k%05d", i)}
	}
	for lo := 0; lo < keys; lo += 500 {
		if _, err := tags.GetOrCreateMany(getorcreate.FromPrimary(ctx), seed[lo:lo+500]); err != nil {
			t.Fatal(err)
		}
	}
	waitReplayed(t, standby, table, keys+rounds)

	// Bulk: existing keys from the standby, new ones created on the primary.
	batch := []tag{{Name: "k00001"}, {Name: "bulk-new"}, {Name: "k00002"}, {Name: "k00001"}}
	got, err := tags.GetOrCreateMany(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	if !got[0].FromReplica || !got[2].FromReplica || !got[3].FromReplica || got[1].FromReplica || !got[1].Created || got[0].Created {
		t.Fatalf("bulk: %+v", got)
	}

	// Existing-key throughput, each way for the same time, alternating.
	plain := openTable(t, primary, getorcreate.Config{Table: table})
	measure := func(tb *getorcreate.Table[tag]) (calls int64, errs int64) {
		var n, e atomic.Int64
		stop := time.Now().Add(2 * time.Second)
		var wg sync.WaitGroup
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(stop) {
					res, err := tb.GetOrCreate(ctx, tag{Name: fmt.Sprintf("k%05d", rand.IntN(keys))})
					if err != nil || res.Created {
						e.Add(1)
					}
					n.Add(1)
				}
			}()
		}
		wg.Wait()
		return n.Load(), e.Load()
	}
	var without, with []float64
	before := rec.path(getorcreate.PathReplica)
	beforeAll := rec.calls.Load()
	for range 2 {
		n, e := measure(plain)
		if e != 0 {
			t.Fatalf("%d errors or creations on existing keys without the standby", e)
		}
		without = append(without, float64(n)/2)
		n, e = measure(tags)
		if e != 0 {
			t.Fatalf("%d errors or creations on existing keys with the standby", e)
		}
		with = append(with, float64(n)/2)
	}
	onReplica := rec.path(getorcreate.PathReplica) - before
	total := rec.calls.Load() - beforeAll
	report(t, "existing-key GetOrCreate, 16 workers, %d keys, 2 x 2 s each way, alternating | without the standby %.0f and %.0f calls/s, all on the primary | with the standby %.0f and %.0f calls/s, %d of %d calls (%.2f%%) answered by the standby, none sent to the primary",
		keys, without[0], without[1], with[0], with[1], onReplica, total, 100*float64(onReplica)/float64(total))
	if onReplica != total {
		t.Errorf("%d of %d existing-key calls reached the primary", total-onReplica, total)
	}
}

// failoverRun is one failover under load: callers submit increments, each
// with a request id of its own, through submit, and retry the same id
// until it is acknowledged; kill breaks the primary part way. It returns
// the acknowledged ids, the errors callers saw, and the recovery time.
type failoverResult struct {
	acked      []string
	errs       errorsSeen
	untyped    []error
	recovery   time.Duration // from the kill to the first acknowledgement of a call sent after it
	maxGap     time.Duration // the longest time without any acknowledgement
	killAt     time.Time
	elapsed    time.Duration
	inDoubt    int
	beforeKill int
}

// checkLedger reads the counter and the ledger's ids, and counts the
// acknowledged ids the ledger lacks.
func checkLedger(t *testing.T, db *sql.DB, table string, acked []string) (lost, stored, count int) {
	t.Helper()
	if err := db.QueryRow("SELECT count FROM " + table + " WHERE name = 'hot'").Scan(&count); err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	rs, err := db.Query("SELECT request_id FROM " + table + "_ledger")
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	for rs.Next() {
		var id string
		if err := rs.Scan(&id); err != nil {
			t.Fatal(err)
		}
		have[id] = true
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	for _, id := range acked {
		if !have[id] {
			lost++
		}
	}
	return lost, len(have), count
}

// typed says whether an error is one a client may answer by sending the
// same id again (nil: the library's ErrConnection, which ErrIndeterminate
// matches too).
func failoverRun(t *testing.T, callers int, submit func(ctx context.Context, id string) error, typed func(error) bool, kill func() (dead time.Time)) *failoverResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	res := &failoverResult{}
	var mu sync.Mutex
	var lastAck time.Time
	var killed atomic.Bool
	var firstAfter time.Time
	stop := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()
	lastAck = start
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("c%02d-%06d", c, seq)
				for {
					sent := time.Now()
					err := submit(ctx, id)
					now := time.Now()
					if err == nil {
						mu.Lock()
						res.acked = append(res.acked, id)
						if now.Sub(lastAck) > res.maxGap {
							res.maxGap = now.Sub(lastAck)
						}
						lastAck = now
						if killed.Load() && sent.After(res.killAt) && firstAfter.IsZero() {
							firstAfter = now
						}
						if !killed.Load() {
							res.beforeKill++
						}
						mu.Unlock()
						break
					}
					res.errs.add(err)
					if errors.Is(err, getorcreate.ErrIndeterminate) {
						mu.Lock()
						res.inDoubt++
						mu.Unlock()
					}
					if typed == nil && !errors.Is(err, getorcreate.ErrConnection) || typed != nil && !typed(err) {
						mu.Lock()
						res.untyped = append(res.untyped, err)
						mu.Unlock()
					}
					if ctx.Err() != nil {
						return
					}
					time.Sleep(50 * time.Millisecond) // the client's own pause before sending the same id again
				}
			}
		}()
	}
	time.Sleep(3 * time.Second)
	// killed is set when the kill is under way, killAt once the primary is
	// dead: recovery counts only calls sent after that.
	mu.Lock()
	killed.Store(true)
	res.killAt = time.Now().Add(time.Hour)
	mu.Unlock()
	dead := kill()
	mu.Lock()
	res.killAt = dead
	mu.Unlock()
	// Run until 5 s of acknowledgements after the recovery.
	for {
		time.Sleep(100 * time.Millisecond)
		mu.Lock()
		f := firstAfter
		mu.Unlock()
		if !f.IsZero() && time.Since(f) > 5*time.Second || ctx.Err() != nil {
			break
		}
	}
	close(stop)
	wg.Wait()
	res.elapsed = time.Since(start)
	if !firstAfter.IsZero() {
		res.recovery = firstAfter.Sub(res.killAt)
	}
	return res
}

// TestFailoverOnce: 20 callers send UpdateOrCreateOnce with request ids,
// through the multi-host DSN with target_session_attrs=read-write, while
// the primary is killed (kill -9) and the standby promoted. Every caller
// sends the same id again until it is acknowledged. Synchronous
// replication: no acknowledged request lost, none applied twice, every
// error a caller saw typed. Asynchronous: none applied twice; the lost
// ones are counted for docs/SCALING.md.
func TestFailoverOnce(t *testing.T) {
	mode := env(t, "GETORCREATE_PGREPL_MODE", pgreplHow)
	multi := env(t, "GETORCREATE_PGREPL", pgreplHow)
	env(t, "GETORCREATE_PGREPL_STANDBY", pgreplHow+" (a standby to promote)")
	env(t, "GETORCREATE_CLUSTER_BIN", pgreplHow)
	db := open(t, multi)
	tags, table := ledgerTable(t, db, "postgres", getorcreate.Config{})
	const callers = 20
	var killTook, promoteTook time.Duration
	res := failoverRun(t, callers, func(ctx context.Context, id string) error {
		_, err := tags.UpdateOrCreateOnce(ctx, id, tag{Name: "hot", Count: 1}, getorcreate.Add("count", 1))
		return err
	}, nil, func() time.Time {
		killTook = script(t, "pgrepl", "kill-primary")
		dead := time.Now()
		promoteTook = script(t, "pgrepl", "promote")
		return dead
	})

	// Read the new primary through the multi-host DSN, with a pool of
	// its own (the old one may hold dead connections).
	lost, stored, count := checkLedger(t, open(t, multi), table, res.acked)
	// Applied but never acknowledged: none, since every caller resends
	// until acknowledged.
	extra := stored - (len(res.acked) - lost)
	report(t, "PostgreSQL 15 primary + %s standby, kill -9 of the primary, promote, multi-host DSN | %d callers, UpdateOrCreateOnce with request ids | acknowledged %d (%d before the kill), stored %d, count %d, acknowledged lost %d, applied twice %d | errors to callers (each retried with the same id): %s; untyped %d; in doubt %d | kill %.1fs, promote %.1fs; recovery (primary dead to the first acknowledgement of a call sent after that) %.1fs; longest gap without acknowledgements %.1fs | run %.1fs",
		mode, callers, len(res.acked), res.beforeKill, stored, count, lost, count-stored, res.errs.String(), len(res.untyped), res.inDoubt,
		killTook.Seconds(), promoteTook.Seconds(), res.recovery.Seconds(), res.maxGap.Seconds(), res.elapsed.Seconds())
	if len(res.untyped) > 0 {
		t.Errorf("%d errors did not match ErrConnection, first: %v", len(res.untyped), res.untyped[0])
	}
	// One increment per stored request id: nothing applied twice, nothing
	// applied without its id.
	if count != stored {
		t.Errorf("count %d, but %d request ids are stored: applied twice or without an id", count, stored)
	}
	if extra != 0 {
		t.Errorf("%d request ids stored that no caller saw acknowledged (every caller resends until acknowledged)", extra)
	}
	if res.recovery == 0 {
		t.Errorf("no call sent after the kill was acknowledged")
	}
	if mode == "sync" && lost != 0 {
		t.Errorf("synchronous replication lost %d acknowledged requests", lost)
	}
}
