package getorcreate_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"

	"github.com/getorcreate/getorcreate"
	"github.com/getorcreate/getorcreate/internal/dsn"
	"github.com/getorcreate/getorcreate/internal/testdb"
	"github.com/getorcreate/getorcreate/pgxv5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// planConns bounds the pools of TestPlanCacheNoSeqScans: one connection,
// which runs every statement well past the five executions after which
// PostgreSQL may switch a prepared statement to a generic plan, and then
// again after the growth. (With more, database/sql and pgxpool hand the
// most recently used connection out first, and which connection a call
// gets after the test's own use of the pool is not the test's to say.)
const planConns = 1

// scanStats are a table's counters in pg_stat_user_tables.
type scanStats struct{ seq, seqRead, idx int64 }

func readScans(t *testing.T, db *sql.DB, table string) scanStats {
	t.Helper()
	// One transaction: pg_stat_clear_snapshot() drops the snapshot of the
	// statistics that an earlier read in the session may hold.
	var s scanStats
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec("SELECT pg_stat_clear_snapshot()"); err != nil {
		t.Fatal(err)
	}
	if err := tx.QueryRow("SELECT seq_scan, seq_tup_read, coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relid = $1::regclass", table).Scan(&s.seq, &s.seqRead, &s.idx); err != nil {
		t.Fatal(err)
	}
	return s
}

// planPools are the handles one variant's tables run on: a pool of their
// own (so the statements are prepared on this table's connections), and
// a way to make every one of its sessions report its statistics.
type planPools struct {
	sql   *sql.DB       // nil for postgres-pgx
	pgx   *pgxpool.Pool // postgres-pgx only
	flush func()
}

// openPlanPools opens the variant's own small pool. A backend reports its
// table statistics at the end of a transaction only if it last did so at
// least a second ago (else some 10 s later, when idle): flush has every
// connection of the pool report them now (pg_stat_force_next_flush).
func openPlanPools(t *testing.T, db *testdb.DB) planPools {
	t.Helper()
	ctx := context.Background()
	var p planPools
	switch db.Name {
	case "postgres-pgx":
		cfg, err := pgxpool.ParseConfig(db.DSN)
		if err != nil {
			t.Fatal(err)
		}
		cfg.MaxConns = planConns
		if p.pgx, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.pgx.Close)
		p.flush = func() {
			var held []*pgxpool.Conn
			for range planConns {
				c, err := p.pgx.Acquire(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := c.Exec(ctx, "SELECT pg_stat_force_next_flush()"); err != nil {
					t.Fatal(err)
				}
				held = append(held, c)
			}
			for _, c := range held {
				c.Release()
			}
		}
		return p
	case "postgres":
		p.sql = smallPool(testdb.FreshPool(t, db.DSN))
	default:
		driverName, source := "postgres", db.DSN // lib/pq
		if db.Name == "postgres-wrapped" {
			pd, err := dsn.Parse(db.DSN)
			if err != nil {
				t.Fatal(err)
			}
			driverName, source = testdb.WrapDriver(pd.DriverName), pd.DataSource
		}
		var err error
		if p.sql, err = sql.Open(driverName, source); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.sql.Close() })
		smallPool(p.sql)
	}
	p.flush = func() {
		flushSQL(t, p.sql)
	}
	return p
}

// smallPool bounds db to planConns connections.
func smallPool(db *sql.DB) *sql.DB {
	db.SetMaxOpenConns(planConns)
	db.SetMaxIdleConns(planConns)
	return db
}

// flushSQL runs a statement on every connection of a smallPool at once.
func flushSQL(t *testing.T, db *sql.DB) {
	t.Helper()
	var held []*sql.Conn
	for range planConns {
		c, err := db.Conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.ExecContext(context.Background(), "SELECT pg_stat_force_next_flush()"); err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	for _, c := range held {
		c.Close()
	}
}

func (p planPools) open(t *testing.T, table string, cfg getorcreate.Config) *getorcreate.Table[Tag] {
	t.Helper()
	cfg.Table, cfg.Key = table, []string{"name"}
	var tags *getorcreate.Table[Tag]
	var err error
	if p.pgx != nil {
		tags, err = pgxv5.OpenConfig[Tag](context.Background(), p.pgx, cfg)
	} else {
		tags, err = getorcreate.OpenConfig[Tag](context.Background(), p.sql, cfg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return tags
}

// TestPlanCacheNoSeqScans: the issue measured GetOrCreate of fresh keys at
// 0.38x a plain INSERT on a table that was empty and analyzed when the
// statements were first prepared, with thousands of sequential scans: the
// generic plans PostgreSQL made for pgx's prepared statements on the empty
// table (CL-9). Here, on such a table (autovacuum off, so nothing
// re-plans them), every path runs well past five executions per
// connection while the table is small; the table grows to 100,000 rows,
// by the library (which then lets the server cache plans again) or by an
// INSERT ... SELECT behind its back (it keeps planning each statement);
// and then every path runs again: no sequential scan of the table, on
// every way the library reaches PostgreSQL. A naive prepared SELECT and
// guarded INSERT on the same table, through pgx's default statement
// cache, show that the trap is there: they scan.
func TestPlanCacheNoSeqScans(t *testing.T) {
	if testing.Short() {
		t.Skip("grows tables to 100,000 rows")
	}
	testdb.EachOf(t, []string{"postgres", "postgres-pgx", "postgres-wrapped", "postgres-pq"}, func(t *testing.T, db *testdb.DB) {
		for _, growth := range []string{"by the library", "behind its back"} {
			t.Run(growth, func(t *testing.T) {
				planCacheCase(t, db, growth == "by the library")
			})
		}
	})
}

func planCacheCase(t *testing.T, db *testdb.DB, byLibrary bool) {
	ctx := context.Background()
	// The test's own statements run on one connection, whose statistics
	// (the index builds of CREATE TABLE count as sequential scans) it
	// reports before the window it measures.
	naive, err := testdb.Pool(t, db.DSN).Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer naive.Close()
	exec := func(q string) {
		t.Helper()
		if _, err := naive.ExecContext(ctx, q); err != nil {
			t.Fatalf("%v\n%s", err, q)
		}
	}
	table := db.Table(t)
	exec(fmt.Sprintf(testdb.TagsDDL["postgres"], table))
	exec("ALTER TABLE " + table + " SET (autovacuum_enabled = false)")
	exec("ANALYZE " + table)
	p := openPlanPools(t, db)
	var ledgerDB *sql.DB
	flush := func() {
		p.flush()
		exec("SELECT pg_stat_force_next_flush()")
		if p.pgx != nil {
			flushSQL(t, ledgerDB)
		}
	}
	ledgerDB = p.sql
	if ledgerDB == nil {
		ledgerDB = smallPool(testdb.FreshPool(t, db.DSN))
	}
	ledgerName := db.Table(t)
	ledger, err := getorcreate.CreateLedger(ctx, ledgerDB, ledgerName)
	if err != nil {
		t.Fatal(err)
	}
	exec("ALTER TABLE " + ledgerName + " SET (autovacuum_enabled = false)")
	exec("ANALYZE " + ledgerName)
	var replica getorcreate.Querier = p.sql
	if p.pgx != nil {
		replica = pgxv5.Tx(p.pgx)
	}
	// One table handle per path and order, all on the same table.
	readFirst := p.open(t, table, getorcreate.Config{Order: getorcreate.ReadFirst})
	writeFirst := p.open(t, table, getorcreate.Config{Order: getorcreate.WriteFirst})
	withReplica := p.open(t, table, getorcreate.Config{Replica: replica})
	withLedger := p.open(t, table, getorcreate.Config{Ledger: ledger})

	// The naive statements, on that connection of pgx's database/sql
	// driver in its default mode, prepared while the table is small.
	naiveRun := func() {
		for i := range 8 {
			var id int64
			if err := naive.QueryRowContext(ctx, "SELECT id FROM "+table+" WHERE name = $1", fmt.Sprintf("k%d", i%4)).Scan(&id); err != nil && err != sql.ErrNoRows {
				t.Fatal(err)
			}
			if _, err := naive.ExecContext(ctx, "INSERT INTO "+table+" (name) SELECT $1::text WHERE NOT EXISTS (SELECT FROM "+table+" WHERE name = $1) ON CONFLICT (name) DO NOTHING", fmt.Sprintf("k%d", i%4)); err != nil {
				t.Fatal(err)
			}
		}
	}

	round := 0
	paths := func(n int) {
		round++
		for i := range n {
			old := fmt.Sprintf("k%d", i%4)
			fresh := fmt.Sprintf("r%d-%d", round, i)
			calls := []func() error{
				func() error { _, err := readFirst.GetOrCreate(ctx, Tag{Name: old}); return err },
				func() error { _, err := readFirst.GetOrCreate(ctx, Tag{Name: fresh + "a"}); return err },
				func() error { _, err := writeFirst.GetOrCreate(ctx, Tag{Name: old}); return err },
				func() error { _, err := writeFirst.GetOrCreate(ctx, Tag{Name: fresh + "b"}); return err },
				func() error {
					_, err := readFirst.UpdateOrCreate(ctx, Tag{Name: old}, getorcreate.Add("count", 1))
					return err
				},
				func() error {
					_, err := writeFirst.UpdateOrCreate(ctx, Tag{Name: old}, getorcreate.Add("count", 1))
					return err
				},
				func() error {
					_, err := readFirst.GetOrCreateMany(ctx, []Tag{{Name: old}, {Name: fresh + "c"}})
					return err
				},
				func() error {
					_, err := readFirst.UpdateOrCreateMany(ctx, []Tag{{Name: old}, {Name: fresh + "d"}}, getorcreate.Add("count", 1))
					return err
				},
				func() error { _, err := withReplica.GetOrCreate(ctx, Tag{Name: old}); return err },
				func() error {
					_, err := withReplica.GetOrCreateMany(ctx, []Tag{{Name: old}, {Name: fresh + "e"}})
					return err
				},
				func() error {
					_, err := withLedger.UpdateOrCreateOnce(ctx, fresh+"-req", Tag{Name: old}, getorcreate.Add("count", 1))
					return err
				},
				func() error {
					// A resend: the ledger's lookup finds the request.
					_, err := withLedger.UpdateOrCreateOnce(ctx, fresh+"-req", Tag{Name: old}, getorcreate.Add("count", 1))
					return err
				},
			}
			for j, call := range calls {
				if err := call(); err != nil {
					t.Fatalf("path %d: %v", j, err)
				}
			}
		}
	}
	// While the table is small: every path 12 times.
	paths(12)
	naiveRun()

	if byLibrary {
		// 5,000 new rows through the library: past the 4,096 after which
		// it lets the server cache plans, which it then makes for a
		// table of 5,000 rows.
		batch := make([]Tag, 500)
		for n := range 10 {
			for i := range batch {
				batch[i] = Tag{Name: fmt.Sprintf("grow-%d-%d", n, i)}
			}
			if _, err := writeFirst.GetOrCreateMany(ctx, batch); err != nil {
				t.Fatal(err)
			}
		}
	}
	exec("INSERT INTO " + table + " (name) SELECT 'bulk-' || g FROM generate_series(1, 100000 - (SELECT count(*) FROM " + table + ")) g")
	exec("INSERT INTO " + ledgerName + " (request_id, fingerprint, outcome, created_unix_ms) SELECT 'bulk-' || g, '', '', 0 FROM generate_series(1, 20000) g")

	flush()
	before, ledgerBefore := readScans(t, db.SQL, table), readScans(t, db.SQL, ledgerName)
	paths(12)
	flush()
	after, ledgerAfter := readScans(t, db.SQL, table), readScans(t, db.SQL, ledgerName)
	t.Logf("library, table of 100,000 rows: %d sequential scans (%d rows read), %d index scans; ledger: %d sequential, %d index",
		after.seq-before.seq, after.seqRead-before.seqRead, after.idx-before.idx, ledgerAfter.seq-ledgerBefore.seq, ledgerAfter.idx-ledgerBefore.idx)
	if after.seq != before.seq || ledgerAfter.seq != ledgerBefore.seq {
		t.Errorf("the library's calls scanned the table %d times (%d rows) and the ledger %d times",
			after.seq-before.seq, after.seqRead-before.seqRead, ledgerAfter.seq-ledgerBefore.seq)
	}
	if after.idx == before.idx || ledgerAfter.idx == ledgerBefore.idx {
		t.Fatalf("no index scans counted (%d, ledger %d): the statistics were not reported", after.idx-before.idx, ledgerAfter.idx-ledgerBefore.idx)
	}

	naiveRun()
	flush()
	trapped := readScans(t, db.SQL, table)
	t.Logf("naive prepared statements: %d sequential scans (%d rows read)", trapped.seq-after.seq, trapped.seqRead-after.seqRead)
	if trapped.seq-after.seq < 8 {
		t.Errorf("the naive prepared SELECT and NOT EXISTS scanned the table %d times in 16 executions; the trap this test guards against is not there", trapped.seq-after.seq)
	}
}
