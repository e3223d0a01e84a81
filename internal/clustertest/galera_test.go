package clustertest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getorcreate/getorcreate"
	gomysql "github.com/go-sql-driver/mysql"
)

const galeraHow = "bash .ci/cluster/galera up"

// The Galera tests run in this file's order: the stampedes, a node killed
// under load, then quorum lost and restored.

// galeraNodes returns the three nodes' DSNs, with extra appended to each.
func galeraNodes(t *testing.T, extra string) []string {
	t.Helper()
	dsns := strings.Split(env(t, "GETORCREATE_GALERA", galeraHow), ",")
	if len(dsns) != 3 {
		t.Fatalf("GETORCREATE_GALERA has %d DSNs, want 3", len(dsns))
	}
	if extra != "" {
		for i := range dsns {
			dsns[i] = withParam(dsns[i], extra)
		}
	}
	return dsns
}

// checkDB reads on node 1 after every commit of the cluster has been
// applied there (wsrep_sync_wait=1: a read waits for the node to catch
// up, CL-3).
func checkDB(t *testing.T) *sql.DB {
	return open(t, galeraNodes(t, "wsrep_sync_wait=1")[0])
}

// TestGaleraStampedes: the suite's stampedes with 48 callers, 16 on each
// node, once with the session defaults and once with wsrep_sync_wait=1:
// exact counts, one id and one creator per key, no error reaching a
// caller. The retries show what Galera's certification costs (1213 at
// INSERT, UPDATE and COMMIT, CL-2).
func TestGaleraStampedes(t *testing.T) {
	check := checkDB(t)
	var wsrepOn string
	if err := check.QueryRow("SELECT @@wsrep_on").Scan(&wsrepOn); err != nil || wsrepOn != "1" {
		t.Fatalf("@@wsrep_on = %q (%v): not a Galera node", wsrepOn, err)
	}
	for _, sess := range []string{"", "wsrep_sync_wait=1"} {
		name := sess
		if name == "" {
			name = "defaults"
		}
		t.Run(name, func(t *testing.T) {
			table := newTable(t, check, "mysql")
			rec := &retries{}
			var nodes []node
			for i, d := range galeraNodes(t, sess) {
				db := open(t, d)
				nodes = append(nodes, node{name: fmt.Sprintf("node%d", i+1), tags: openTable(t, db, getorcreate.Config{Table: table, Tracer: rec}), runTx: sqlRunTx(db)})
			}
			const callers, rounds = 48, 3
			res := stampedes(t, "mysql", nodes, check, table, callers, rounds)
			report(t, "MariaDB 10.11 Galera, 3 nodes, session %s | %d callers (16 per node), %d rounds of the stampedes | %d calls in %.1fs, %.0f calls/s | errors to callers: %s | retried inside the library: %s (RunTx retries not counted)",
				name, callers, rounds, res.calls, res.elapsed.Seconds(), float64(res.calls)/res.elapsed.Seconds(), res.errs.String(), rec.String())
		})
	}
}

// mysqlNumber is the MariaDB error number in err's chain, or 0.
func mysqlNumber(err error) uint16 {
	var me *gomysql.MySQLError
	if errors.As(err, &me) {
		return me.Number
	}
	return 0
}

// TestGaleraNodeKill: 24 callers, 8 on each node, send UpdateOrCreateOnce
// with request ids of their own, and 6 more run plain increments in
// RunTx, while node 3's mariadbd is killed (kill -9) and, 4 s later,
// restarted (it rejoins by IST). A caller whose node fails must get
// ErrConnection, never a raw driver error; it sends the same id again on
// the next node, as a client behind a load balancer would. Afterwards:
// every acknowledged id stored once, the counter equal to the ids stored,
// the RunTx counter between its acknowledged and attempted increments,
// and the rejoined node agreeing.
func TestGaleraNodeKill(t *testing.T) {
	env(t, "GETORCREATE_CLUSTER_BIN", galeraHow)
	ctx := context.Background()
	check := checkDB(t)
	_, table := ledgerTable(t, check, "mysql", getorcreate.Config{})
	ledger, err := getorcreate.OpenLedger(ctx, check, table+"_ledger")
	if err != nil {
		t.Fatal(err)
	}
	// The default retry budget (20 retries, backoff up to 500 ms): it
	// absorbs certification conflicts, and a dead node outlasts it.
	policy := getorcreate.DefaultRetry
	var tables []*getorcreate.Table[tag]
	var dbs []*sql.DB
	for _, d := range galeraNodes(t, "timeout=2s") {
		db := open(t, d)
		db.SetConnMaxLifetime(0)
		dbs = append(dbs, db)
		tables = append(tables, openTable(t, db, getorcreate.Config{Table: table, Ledger: ledger, Retry: policy}))
	}

	var mu sync.Mutex
	acked := map[string]int{}
	perNode := make([]errorsSeen, 3)
	var untyped []error
	var txAcked, txDoubt int
	var lastAck [3]time.Time
	var maxGap [3]time.Duration
	stop := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()
	for i := range lastAck {
		lastAck[i] = start
	}
	noteErr := func(n int, err error) {
		perNode[n].add(err)
		if !errors.Is(err, getorcreate.ErrConnection) && !getorcreate.IsRetryable(err) {
			mu.Lock()
			untyped = append(untyped, fmt.Errorf("node%d: %w", n+1, err))
			mu.Unlock()
		}
	}
	for c := range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			home := c % 3
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("c%02d-%06d", c, seq)
				for try := 0; ; try++ {
					n := (home + try) % 3
					_, err := tables[n].UpdateOrCreateOnce(ctx, id, tag{Name: fmt.Sprintf("hot-%d", c%6), Count: 1}, getorcreate.Add("count", 1))
					if err != nil && !errors.Is(err, getorcreate.ErrConnection) && !getorcreate.IsRetryable(err) {
						t.Logf("%s on node%d at %s: %v", id, n+1, time.Now().Format("15:04:05.000"), err)
					}
					if err == nil {
						now := time.Now()
						mu.Lock()
						acked[id]++
						if g := now.Sub(lastAck[n]); g > maxGap[n] {
							maxGap[n] = g
						}
						lastAck[n] = now
						mu.Unlock()
						break
					}
					noteErr(n, err)
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	for c := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := c % 3
			for {
				select {
				case <-stop:
					return
				default:
				}
				err := getorcreate.RunTxPolicy(ctx, dbs[n], nil, policy, func(tx *sql.Tx) error {
					_, err := tables[n].UpdateOrCreateTx(ctx, tx, tag{Name: "tx", Count: 1}, getorcreate.Add("count", 1))
					return err
				})
				mu.Lock()
				switch {
				case err == nil:
					txAcked++
				case errors.Is(err, getorcreate.ErrIndeterminate):
					txDoubt++
				}
				mu.Unlock()
				if err != nil {
					noteErr(n, err)
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	time.Sleep(2 * time.Second)
	script(t, "galera", "kill", "3")
	time.Sleep(4 * time.Second)
	restart := script(t, "galera", "start", "3")
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()
	elapsed := time.Since(start)

	var count, stored, txCount int64
	if err := check.QueryRow("SELECT (SELECT SUM(count) FROM "+table+" WHERE name LIKE 'hot-%'), (SELECT count FROM "+table+" WHERE name = 'tx'), (SELECT COUNT(*) FROM "+table+"_ledger)").Scan(&count, &txCount, &stored); err != nil {
		t.Fatal(err)
	}
	var rejoined int64
	if err := open(t, galeraNodes(t, "wsrep_sync_wait=1")[2]).QueryRow("SELECT SUM(count) FROM " + table + " WHERE name LIKE 'hot-%'").Scan(&rejoined); err != nil {
		t.Fatal(err)
	}
	lost := 0
	if err := func() error {
		rs, err := check.Query("SELECT request_id FROM " + table + "_ledger")
		if err != nil {
			return err
		}
		defer rs.Close()
		have := map[string]bool{}
		for rs.Next() {
			var id string
			if err := rs.Scan(&id); err != nil {
				return err
			}
			have[id] = true
		}
		for id := range acked {
			if !have[id] {
				lost++
			}
		}
		return rs.Err()
	}(); err != nil {
		t.Fatal(err)
	}
	twice := 0
	for _, n := range acked {
		if n > 1 {
			twice++
		}
	}
	var dead3 int
	for k, n := range perNode[2].kinds {
		if k == "connection" || k == "indeterminate" {
			dead3 += n
		}
	}
	report(t, "MariaDB 10.11 Galera, 3 nodes, node 3 killed -9 under load, restarted %.0f s later (%.1f s to rejoin by IST) | 24 callers with request ids (8 per node), 6 RunTx callers | acknowledged %d ids, stored %d, count %d, acknowledged lost %d, applied twice %d | RunTx: %d acknowledged, %d in doubt, count %d | errors on node1: %s; node2: %s; node3: %s; untyped %d | longest pause without acknowledgements on node1 %.1fs, node2 %.1fs | node 3 after rejoining: count %d | run %.1fs",
		4.0, restart.Seconds(), len(acked), stored, count, lost, twice, txAcked, txDoubt, txCount,
		perNode[0].String(), perNode[1].String(), perNode[2].String(), len(untyped), maxGap[0].Seconds(), maxGap[1].Seconds(), rejoined, elapsed.Seconds())
	if len(untyped) > 0 {
		t.Errorf("%d errors were neither ErrConnection nor retryable; first: %v", len(untyped), untyped[0])
	}
	if dead3 == 0 {
		t.Errorf("no caller on node 3 saw ErrConnection while it was down")
	}
	if twice != 0 {
		t.Errorf("%d ids acknowledged twice", twice)
	}
	if lost != 0 || int(stored) != len(acked) || count != stored {
		for k := range 6 {
			var c, l int64
			check.QueryRow("SELECT (SELECT count FROM "+table+" WHERE name = ?), (SELECT COUNT(*) FROM "+table+"_ledger WHERE request_id REGEXP ?)", fmt.Sprintf("hot-%d", k), fmt.Sprintf("^c(%02d|%02d|%02d|%02d)-", k, k+6, k+12, k+18)).Scan(&c, &l)
			t.Logf("hot-%d: count %d, ledger %d", k, c, l)
		}
		t.Errorf("acknowledged %d ids, ledger holds %d, count %d: want all equal", len(acked), stored, count)
	}
	if txCount < int64(txAcked) || txCount > int64(txAcked+txDoubt) {
		t.Errorf("RunTx counter %d outside [acknowledged %d, acknowledged + in doubt %d]", txCount, txAcked, txAcked+txDoubt)
	}
	if rejoined != count {
		t.Errorf("node 3 after rejoining: count %d, node 1: %d", rejoined, count)
	}
}

// TestGaleraNonPrimary: with two of three nodes killed the survivor is no
// longer a Primary component and answers 1047 ("WSREP has not yet
// prepared node for application use") to every statement: a call made
// there gets ErrConnection, definite (the statement ran nothing), not
// ErrIndeterminate. Then the survivor is bootstrapped as Primary, the
// others rejoin, and a write goes through.
func TestGaleraNonPrimary(t *testing.T) {
	env(t, "GETORCREATE_CLUSTER_BIN", galeraHow)
	ctx := context.Background()
	dsns := galeraNodes(t, "timeout=2s")
	db := open(t, dsns[0])
	table := newTable(t, db, "mysql")
	tags := openTable(t, db, getorcreate.Config{Table: table})
	script(t, "galera", "kill", "2")
	script(t, "galera", "kill", "3")
	killed := time.Now()
	t.Cleanup(func() {
		// Leave a whole cluster for what follows, whatever happened.
		script(t, "galera", "pc-bootstrap", "1")
		script(t, "galera", "start", "2")
		script(t, "galera", "start", "3")
	})
	var err error
	var writesBefore int
	for time.Since(killed) < 60*time.Second {
		_, err = tags.GetOrCreate(ctx, tag{Name: fmt.Sprintf("k%d", writesBefore)})
		if err != nil && mysqlNumber(err) == 1047 {
			break
		}
		writesBefore++
		time.Sleep(100 * time.Millisecond)
	}
	if mysqlNumber(err) != 1047 {
		t.Fatalf("no 1047 within 60 s of losing quorum; last error: %v", err)
	}
	// The call that first met 1047 may have had an earlier attempt cut off
	// while the node was losing the Primary component (its write then in
	// doubt, retried, refused): it is ErrConnection, and may be
	// ErrIndeterminate. A call that starts on the non-Primary node is
	// refused at its first statement: definite.
	if !errors.Is(err, getorcreate.ErrConnection) {
		t.Fatalf("first 1047: got %v; want ErrConnection", err)
	}
	first := err
	_, err = tags.GetOrCreate(ctx, tag{Name: "refused"})
	if mysqlNumber(err) != 1047 || !errors.Is(err, getorcreate.ErrConnection) || errors.Is(err, getorcreate.ErrIndeterminate) || !getorcreate.IsRetryable(err) {
		t.Fatalf("a call on the non-Primary node: got %v; want 1047 as ErrConnection (retryable), not ErrIndeterminate", err)
	}
	report(t, "MariaDB 10.11 Galera, 2 of 3 nodes killed | survivor non-Primary after %.1fs (%d calls went through or waited before) | first call to meet 1047: %v (indeterminate: %v) | next call: %v", time.Since(killed).Seconds(), writesBefore, getorcreate.Kind(first), errors.Is(first, getorcreate.ErrIndeterminate), err)
	script(t, "galera", "pc-bootstrap", "1")
	res, err := tags.GetOrCreate(ctx, tag{Name: "after"})
	if err != nil || !res.Created {
		t.Fatalf("after pc-bootstrap: %+v %v", res, err)
	}
}
