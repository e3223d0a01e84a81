package clustertest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/getorcreate/getorcreate"
	"github.com/getorcreate/getorcreate/pgxv5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

const pgbouncerHow = "bash .ci/cluster/pgbouncer up"

// withParam adds a query parameter to a URL DSN.
func withParam(s, kv string) string {
	for _, c := range s {
		if c == '?' {
			return s + "&" + kv
		}
	}
	return s + "?" + kv
}

// TestPgBouncerRefusesStatementCache: behind PgBouncer in transaction mode,
// Open refuses pgx's default exec mode (which would leak prepared
// statements into other clients' sessions, CL-8) and says the fix, through
// database/sql and through pgxv5; in session mode it opens.
func TestPgBouncerRefusesStatementCache(t *testing.T) {
	ctx := context.Background()
	txDSN := env(t, "GETORCREATE_PGBOUNCER", pgbouncerHow)
	sessDSN := env(t, "GETORCREATE_PGBOUNCER_SESSION", pgbouncerHow)
	safe := open(t, withParam(txDSN, "default_query_exec_mode=exec"))
	table := newTable(t, safe, "postgres")

	db := open(t, txDSN)
	_, err := getorcreate.Open[tag](ctx, db, table, "name")
	if !errors.Is(err, getorcreate.ErrTransactionPooler) {
		t.Fatalf("database/sql, default exec mode, transaction pooler: got %v, want ErrTransactionPooler", err)
	}
	t.Logf("database/sql: %v", err)
	pool, err := pgxpool.New(ctx, txDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	_, err = pgxv5.Open[tag](ctx, pool, table, "name")
	if !errors.Is(err, getorcreate.ErrTransactionPooler) {
		t.Fatalf("pgxv5, default exec mode, transaction pooler: got %v, want ErrTransactionPooler", err)
	}
	t.Logf("pgxv5: %v", err)

	// Session mode keeps one server session per client: no refusal.
	if _, err := getorcreate.Open[tag](ctx, open(t, sessDSN), table, "name"); err != nil {
		t.Fatalf("session mode: %v", err)
	}
	// Nor in a safe mode behind the transaction pooler.
	for _, mode := range []string{"exec", "cache_describe", "simple_protocol"} {
		if _, err := getorcreate.Open[tag](ctx, open(t, withParam(txDSN, "default_query_exec_mode="+mode)), table, "name"); err != nil {
			t.Fatalf("transaction mode, %s: %v", mode, err)
		}
	}
}

// TestPgBouncerStampedes: the suite's stampedes through PgBouncer in
// transaction mode with default_query_exec_mode=exec, half the callers on
// database/sql and half on pgxv5, then a check that no prepared statement
// is left in any server session.
func TestPgBouncerStampedes(t *testing.T) {
	ctx := context.Background()
	txDSN := withParam(env(t, "GETORCREATE_PGBOUNCER", pgbouncerHow), "default_query_exec_mode=exec")
	db := open(t, txDSN)
	table := newTable(t, db, "postgres")
	rec := &retries{}
	cfg := getorcreate.Config{Table: table, Key: []string{"name"}, Tracer: rec}
	pcfg, err := pgxpool.ParseConfig(txDSN)
	if err != nil {
		t.Fatal(err)
	}
	if pcfg.ConnConfig.DefaultQueryExecMode != pgx.QueryExecModeExec {
		t.Fatalf("exec mode %v, want exec from the DSN", pcfg.ConnConfig.DefaultQueryExecMode)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	ptags, err := pgxv5.OpenConfig[tag](ctx, pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	txPolicy := pgx.TxOptions{}
	nodes := []node{
		{name: "database/sql", tags: openTable(t, db, cfg), runTx: sqlRunTx(db)},
		{name: "pgxv5", tags: ptags, runTx: func(ctx context.Context, fn func(q getorcreate.Querier) error) error {
			return pgxv5.RunTx(ctx, pool, txPolicy, func(tx pgx.Tx) error { return fn(pgxv5.Tx(tx)) })
		}},
	}
	const callers, rounds = 32, 5
	res := stampedes(t, "postgres", nodes, db, table, callers, rounds)
	report(t, "PgBouncer 1.18 transaction mode, exec mode | %d callers (database/sql + pgxv5), %d rounds | %d calls in %.1fs, %.0f calls/s | errors to callers: %s | retries: %s",
		callers, rounds, res.calls, res.elapsed.Seconds(), float64(res.calls)/res.elapsed.Seconds(), res.errs.String(), rec.String())

	// Ledger: UpdateOrCreateOnce behind the pooler.
	ledger, err := getorcreate.CreateLedger(ctx, db, table+"_ledger")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Exec("DROP TABLE IF EXISTS " + table + "_ledger") })
	lcfg := cfg
	lcfg.Ledger = ledger
	ltags := openTable(t, db, lcfg)
	barrier(32, func(i int) {
		for j := range 3 {
			id := fmt.Sprintf("req-%d", j) // the same 3 requests from every caller
			if _, err := ltags.UpdateOrCreateOnce(ctx, id, tag{Name: "once", Count: 1}, getorcreate.Add("count", 1)); err != nil {
				t.Errorf("UpdateOrCreateOnce: %v", err)
			}
		}
	})
	var count int64
	if err := db.QueryRow("SELECT count FROM " + table + " WHERE name = 'once'").Scan(&count); err != nil || count != 3 {
		t.Fatalf("3 requests sent 32 times each: count %d (%v), want 3", count, err)
	}

	leaked := preparedInSessions(t, db)
	if leaked != 0 {
		t.Fatalf("%d prepared statements left in PgBouncer's server sessions", leaked)
	}
	report(t, "PgBouncer 1.18 transaction mode, exec mode | prepared statements left in server sessions after the run | 0 (20 sessions checked)")
}

// preparedInSessions counts the prepared statements in PgBouncer's server
// sessions: 20 transactions held open at once hold 20 sessions (the
// pool's size), and each reads its own pg_prepared_statements.
func preparedInSessions(t *testing.T, db interface {
	BeginTx(context.Context, *sql.TxOptions) (*sql.Tx, error)
}) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var mu sync.Mutex
	total, pids := 0, map[int]bool{}
	var hold sync.WaitGroup
	hold.Add(20)
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				hold.Done()
				t.Error(err)
				return
			}
			defer tx.Rollback()
			var n, pid int
			var names string
			err = tx.QueryRowContext(ctx, "SELECT (SELECT COUNT(*) FROM pg_prepared_statements), (SELECT COALESCE(string_agg(name || ': ' || left(statement, 60), '; '), '') FROM pg_prepared_statements), pg_backend_pid()").Scan(&n, &names, &pid)
			if n > 0 {
				t.Logf("session %d: %s", pid, names)
			}
			hold.Done()
			<-release
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			total += n
			pids[pid] = true
			mu.Unlock()
		}()
	}
	hold.Wait()
	close(release)
	wg.Wait()
	t.Logf("%d server sessions checked", len(pids))
	return total
}
