package facts

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestGO1_CancelledContextRollsBackTx: cancelling BeginTx's context rolls
// the transaction back and makes Commit fail.
func TestGO1_CancelledContextRollsBackTx(t *testing.T) {
	t.Parallel()
	check := func(t *testing.T, db *sql.DB, insert string, other *session) {
		ctx, cancel := context.WithCancel(testCtx(t))
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, insert); err != nil {
			t.Fatal(err)
		}
		cancel()
		err = tx.Commit()
		if !errors.Is(err, context.Canceled) && !errors.Is(err, sql.ErrTxDone) {
			t.Fatalf("Commit after cancel: %v, want context.Canceled or sql.ErrTxDone", err)
		}
		t.Logf("Commit after cancel: %v", err)
		// Had the row been committed this would fail with a duplicate; while
		// the rollback is under way it waits for it.
		if err := other.try(insert); err != nil {
			t.Fatalf("inserting the same key afterwards: %v", err)
		}
	}
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		db := pgDB(t)
		tb := pgTags(t, "go1")
		check(t, db, "INSERT INTO "+tb+" (name) VALUES ('k')", pgSession(t, db))
	})
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		db := sqliteDB(t, "")
		s := sqSession(t, db)
		s.exec("CREATE TABLE tags (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)")
		// s waits (busy_timeout) for the write lock the rollback releases.
		check(t, db, "INSERT INTO tags (name) VALUES ('k')", s)
	})
}

// TestGO3_CancelledStatementOutcome: after the client gives up on a
// statement its outcome is the server's. go-sql-driver closes the socket and
// MariaDB finishes the INSERT and commits it; pgx v5.12 sets a deadline on
// the socket and, closing the connection, sends a CancelRequest, so
// PostgreSQL cancels the INSERT.
func TestGO3_CancelledStatementOutcome(t *testing.T) {
	t.Parallel()
	// run starts slow with a 200 ms context and returns how long the server
	// went on running it (found by the sqlText in its process list).
	run := func(t *testing.T, db *sql.DB, slow, active string, watch *session) time.Duration {
		ctx, cancel := context.WithTimeout(testCtx(t), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := db.ExecContext(ctx, slow)
		if err == nil {
			t.Fatal("the slow insert returned before its context ended")
		}
		t.Logf("client error after %v: %v", time.Since(start).Round(time.Millisecond), err)
		deadline := time.Now().Add(waitLimit)
		for watch.int(active) > 0 {
			if time.Now().After(deadline) {
				t.Fatal("the statement never ended on the server")
			}
			time.Sleep(10 * time.Millisecond)
		}
		d := time.Since(start)
		t.Logf("statement gone from the server after %v", d.Round(time.Millisecond))
		return d
	}
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		db := pgDB(t)
		tb := pgTags(t, "go3")
		w := pgSession(t, db)
		d := run(t, db, "INSERT INTO "+tb+" (name) SELECT 'k' FROM pg_sleep(1.5)",
			"SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'INSERT INTO "+tb+"%'", w)
		if d > 1200*time.Millisecond {
			t.Fatalf("the statement ran %v: not cancelled", d)
		}
		want(t, "rows written by the cancelled INSERT", w.int("SELECT count(*) FROM "+tb), 0)
	})
	t.Run("mysql", func(t *testing.T) {
		t.Parallel()
		db := myDB(t)
		tb := myTags(t, "go3")
		w := mySession(t, db)
		d := run(t, db, "INSERT INTO "+tb+" (name) SELECT 'k' FROM (SELECT SLEEP(1) AS s) AS x",
			"SELECT count(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'INSERT INTO "+tb+"%'", w)
		if d < time.Second {
			t.Fatalf("the statement ended after %v: cut short", d)
		}
		want(t, "rows written by the cancelled INSERT", w.int("SELECT count(*) FROM "+tb), 1)
	})
}

// TestCL9_GenericPlanFromEmptyTableKeepsSeqScan: a statement prepared
// while its table is empty switches to a generic plan after five
// executions; that plan is a sequential scan and stays one while the table
// grows. force_custom_plan avoids it; upserts are not affected.
func TestCL9_GenericPlanFromEmptyTableKeepsSeqScan(t *testing.T) {
	t.Parallel()
	db := pgDB(t)
	s := pgSession(t, db)
	tb := table(t, db, "cl9", "CREATE TABLE %s (id serial PRIMARY KEY, name text NOT NULL UNIQUE, n int NOT NULL DEFAULT 0) WITH (autovacuum_enabled = false)")
	s.exec("SET plan_cache_mode = auto")
	s.exec("ANALYZE " + tb)
	s.exec("PREPARE sel(text) AS SELECT id FROM " + tb + " WHERE name = $1")
	s.exec("PREPARE guard(text) AS INSERT INTO " + tb + " (name) SELECT $1 WHERE NOT EXISTS (SELECT 1 FROM " + tb + " WHERE name = $1)")
	s.exec("PREPARE ups(text) AS INSERT INTO " + tb + " (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
	plan := func(q string) string { return strings.Join(s.mustRows("EXPLAIN "+q), "\n") }
	// Five custom plans while the table is empty: sel runs, the two
	// inserts are only planned (EXPLAIN EXECUTE goes through the plan
	// cache like EXECUTE, without writing a row).
	for range 5 {
		s.mustRows("EXECUTE sel('none')")
		plan("EXECUTE guard('none')")
		plan("EXECUTE ups('none')")
	}
	first := plan("EXECUTE sel('x')")
	t.Logf("6th execution, empty table:\n%s", first)
	if !strings.Contains(first, "Seq Scan") || !strings.Contains(first, "$1") {
		t.Fatalf("want a generic sequential-scan plan on the 6th execution:\n%s", first)
	}
	plan("EXECUTE guard('x')")
	plan("EXECUTE ups('x')")

	s.exec("INSERT INTO " + tb + " (name) SELECT 'k' || g FROM generate_series(1, 20000) g")
	grown := plan("EXECUTE sel('k77')")
	t.Logf("after 20,000 rows, cached plan:\n%s", grown)
	if !strings.Contains(grown, "Seq Scan") || !strings.Contains(grown, "Filter: (name = $1)") {
		t.Fatalf("want the cached generic Seq Scan after the table grew:\n%s", grown)
	}
	g := plan("EXECUTE guard('k77')")
	t.Logf("guarded insert, cached plan:\n%s", g)
	if !strings.Contains(g, "Seq Scan") {
		t.Fatalf("want a Seq Scan in the guarded insert's NOT EXISTS:\n%s", g)
	}
	u := plan("EXECUTE ups('k77')")
	t.Logf("ON CONFLICT upsert, cached plan:\n%s", u)
	if strings.Contains(u, "Scan") || !strings.Contains(u, "Conflict Arbiter Indexes") {
		t.Fatalf("want an upsert plan with no scan:\n%s", u)
	}

	s.exec("PREPARE sel2(text) AS SELECT id FROM " + tb + " WHERE name = $1")
	fresh := plan("EXECUTE sel2('k77')")
	t.Logf("the same query prepared now:\n%s", fresh)
	if !strings.Contains(fresh, "Index") {
		t.Fatalf("want an index scan for a fresh plan:\n%s", fresh)
	}

	s.exec("SET plan_cache_mode = force_custom_plan")
	forced := plan("EXECUTE sel('k77')")
	t.Logf("old statement, force_custom_plan:\n%s", forced)
	if !strings.Contains(forced, "Index") || strings.Contains(forced, "Seq Scan") {
		t.Fatalf("want an index scan under force_custom_plan:\n%s", forced)
	}
	s.exec("SET plan_cache_mode = auto")
	back := plan("EXECUTE sel('k77')")
	if !strings.Contains(back, "Seq Scan") {
		t.Fatalf("want the cached generic plan again under auto:\n%s", back)
	}

	// ANALYZE invalidates the cached plan; the next generic plan is built
	// on the grown table.
	s.exec("ANALYZE " + tb)
	after := plan("EXECUTE sel('k77')")
	t.Logf("after ANALYZE:\n%s", after)
	if !strings.Contains(after, "Index") {
		t.Fatalf("want an index scan after ANALYZE:\n%s", after)
	}
}
