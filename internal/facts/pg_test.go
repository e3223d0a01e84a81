package facts

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
)

// pgTags creates the usual key table on PostgreSQL.
func pgTags(t *testing.T, prefix string) string {
	return table(t, pgDB(t), prefix,
		"CREATE TABLE %s (id serial PRIMARY KEY, name text NOT NULL UNIQUE, n int NOT NULL DEFAULT 0)")
}

// TestPG1_UpsertIsAtomicUnderConcurrency: concurrent ON CONFLICT DO UPDATE
// increments of one new key all land, with no error and one row.
func TestPG1_UpsertIsAtomicUnderConcurrency(t *testing.T) {
	t.Parallel()
	db := pgDB(t)
	tb := pgTags(t, "pg1")
	ctx := testCtx(t)
	const workers, each = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for range workers {
		wg.Go(func() {
			for range each {
				_, err := db.ExecContext(ctx, "INSERT INTO "+tb+" (name, n) VALUES ('k', 1) ON CONFLICT (name) DO UPDATE SET n = "+tb+".n + 1")
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("upsert failed: %v", err)
	}
	s := pgSession(t, db)
	want(t, "rows|n after 100 concurrent upserts", s.str("SELECT count(*) || '|' || sum(n) FROM "+tb), "1|100")
}

// TestPG2_DoNothingReturningGivesNoRowForExistingKey: RETURNING reports only
// rows inserted or updated; a DO UPDATE ... WHERE that rejects the row
// returns nothing but still locks it.
func TestPG2_DoNothingReturningGivesNoRowForExistingKey(t *testing.T) {
	t.Parallel()
	db := pgDB(t)
	tb := pgTags(t, "pg2")
	s1, s2 := pgSession(t, db), pgSession(t, db)
	wantRows(t, "new key, DO NOTHING RETURNING",
		s1.mustRows("INSERT INTO "+tb+" (name) VALUES ('a') ON CONFLICT (name) DO NOTHING RETURNING id"), "1")
	wantRows(t, "existing key, DO NOTHING RETURNING",
		s1.mustRows("INSERT INTO "+tb+" (name) VALUES ('a') ON CONFLICT (name) DO NOTHING RETURNING id"))
	wantRows(t, "existing key, DO UPDATE RETURNING",
		s1.mustRows("INSERT INTO "+tb+" (name) VALUES ('a') ON CONFLICT (name) DO UPDATE SET n = "+tb+".n + 1 RETURNING id, n"), "1|1")

	s1.exec("BEGIN")
	wantRows(t, "existing key, DO UPDATE ... WHERE false RETURNING",
		s1.mustRows("INSERT INTO "+tb+" (name) VALUES ('a') ON CONFLICT (name) DO UPDATE SET n = 99 WHERE "+tb+".n > 100 RETURNING id"))
	err := s2.try("SELECT id FROM " + tb + " WHERE name = 'a' FOR UPDATE NOWAIT")
	want(t, "other session's FOR UPDATE NOWAIT on the row the rejected DO UPDATE touched", pgCode(err), "55P03")
	s1.exec("ROLLBACK")
	if err := s2.try("SELECT id FROM " + tb + " WHERE name = 'a' FOR UPDATE NOWAIT"); err != nil {
		t.Fatalf("after the rollback the row is free: %v", err)
	}
}

// TestPG3_ArbiterInference: which unique indexes ON CONFLICT infers, and the
// errors when it cannot.
func TestPG3_ArbiterInference(t *testing.T) {
	t.Parallel()
	db := pgDB(t)
	s := pgSession(t, db)

	t.Run("NoIndexIs42P10", func(t *testing.T) {
		tb := table(t, db, "pg3none", "CREATE TABLE %s (id serial PRIMARY KEY, name text)")
		want(t, "ON CONFLICT (name) without a unique index on name",
			pgCode(s.try("INSERT INTO "+tb+" (name) VALUES ('a') ON CONFLICT (name) DO NOTHING")), "42P10")
		// Without a target DO NOTHING is fine: the primary key is the arbiter.
		s.exec("INSERT INTO " + tb + " (name) VALUES ('a') ON CONFLICT DO NOTHING")
		s.exec("INSERT INTO " + tb + " (name) VALUES ('a') ON CONFLICT DO NOTHING")
		want(t, "rows after two targetless DO NOTHING inserts of one name", s.int("SELECT count(*) FROM "+tb), 2)
	})

	t.Run("ColumnOrderDoesNotMatter", func(t *testing.T) {
		tb := table(t, db, "pg3ord", "CREATE TABLE %s (a int, b int, n int DEFAULT 0, UNIQUE (a, b))")
		s.exec("INSERT INTO " + tb + " (a, b) VALUES (1, 2) ON CONFLICT (b, a) DO UPDATE SET n = " + tb + ".n + 1")
		s.exec("INSERT INTO " + tb + " (a, b) VALUES (1, 2) ON CONFLICT (b, a) DO UPDATE SET n = " + tb + ".n + 1")
		want(t, "n after two upserts with target (b, a) on UNIQUE (a, b)", s.int("SELECT n FROM "+tb), 1)
		want(t, "target (a) on UNIQUE (a, b)",
			pgCode(s.try("INSERT INTO "+tb+" (a, b) VALUES (1, 2) ON CONFLICT (a) DO NOTHING")), "42P10")
	})

	t.Run("PartialIndexNeedsItsPredicate", func(t *testing.T) {
		tb := table(t, db, "pg3part", "CREATE TABLE %s (id serial PRIMARY KEY, name text NOT NULL, deleted_at timestamptz, n int NOT NULL DEFAULT 0)")
		s.exec("CREATE UNIQUE INDEX ON " + tb + " (name) WHERE deleted_at IS NULL")
		want(t, "ON CONFLICT (name) on a partial unique index, no predicate",
			pgCode(s.try("INSERT INTO "+tb+" (name) VALUES ('a') ON CONFLICT (name) DO NOTHING")), "42P10")
		up := "INSERT INTO " + tb + " (name) VALUES ('a') ON CONFLICT (name) WHERE deleted_at IS NULL DO UPDATE SET n = " + tb + ".n + 1 RETURNING id, n"
		wantRows(t, "with the index predicate, new key", s.mustRows(up), "1|0")
		wantRows(t, "with the index predicate, existing key", s.mustRows(up), "1|1")
		wantRows(t, "DO NOTHING with the index predicate, existing key",
			s.mustRows("INSERT INTO "+tb+" (name) VALUES ('a') ON CONFLICT (name) WHERE deleted_at IS NULL DO NOTHING RETURNING id"))
		// A predicate that implies the index's is accepted too.
		wantRows(t, "with a stronger predicate (deleted_at IS NULL AND n >= 0)",
			s.mustRows("INSERT INTO "+tb+" (name) VALUES ('a') ON CONFLICT (name) WHERE deleted_at IS NULL AND n >= 0 DO UPDATE SET n = "+tb+".n + 1 RETURNING id, n"), "1|2")
		want(t, "with a predicate that does not imply the index's (deleted_at IS NOT NULL)",
			pgCode(s.try("INSERT INTO "+tb+" (name) VALUES ('a') ON CONFLICT (name) WHERE deleted_at IS NOT NULL DO NOTHING")), "42P10")
		// A soft-deleted row is outside the index: the same name inserts anew.
		s.exec("UPDATE " + tb + " SET deleted_at = now() WHERE name = 'a'")
		// (ids are not compared here: every upsert above took a sequence value, PG-14)
		wantRows(t, "after soft delete, upsert of the same name: n of the new row",
			s.mustRows("INSERT INTO "+tb+" (name) VALUES ('a') ON CONFLICT (name) WHERE deleted_at IS NULL DO UPDATE SET n = "+tb+".n + 1 RETURNING n"), "0")
		want(t, "rows named a", s.int("SELECT count(*) FROM "+tb+" WHERE name = 'a'"), 2)
		// Targetless DO NOTHING uses the partial index as well.
		wantRows(t, "targetless DO NOTHING, live key",
			s.mustRows("INSERT INTO "+tb+" (name) VALUES ('a') ON CONFLICT DO NOTHING RETURNING id"))
	})

	t.Run("NonPartialIndexIsInferredWithAPredicate", func(t *testing.T) {
		// What really happens: the predicate only has to be implied for
		// partial indexes; a plain unique index on the same columns is
		// inferred whatever the WHERE says.
		tb := table(t, db, "pg3full", "CREATE TABLE %s (id serial PRIMARY KEY, name text NOT NULL UNIQUE, deleted_at timestamptz, n int NOT NULL DEFAULT 0)")
		up := "INSERT INTO " + tb + " (name) VALUES ('a') ON CONFLICT (name) WHERE deleted_at IS NULL DO UPDATE SET n = " + tb + ".n + 1 RETURNING id, n"
		wantRows(t, "predicate on a non-partial index, new key", s.mustRows(up), "1|0")
		wantRows(t, "predicate on a non-partial index, existing key", s.mustRows(up), "1|1")
		wantRows(t, "unrelated predicate (n > 1000) on a non-partial index",
			s.mustRows("INSERT INTO "+tb+" (name) VALUES ('a') ON CONFLICT (name) WHERE n > 1000 DO UPDATE SET n = "+tb+".n + 1 RETURNING id, n"), "1|2")
		// Even a soft-deleted row conflicts: the full index covers it.
		s.exec("UPDATE " + tb + " SET deleted_at = now() WHERE name = 'a'")
		wantRows(t, "after soft delete, upsert with WHERE deleted_at IS NULL hits the deleted row", s.mustRows(up), "1|3")
	})

	t.Run("PartialAndFullIndexBothArbiters", func(t *testing.T) {
		tb := table(t, db, "pg3both", "CREATE TABLE %s (id serial PRIMARY KEY, name text NOT NULL, deleted_at timestamptz, n int NOT NULL DEFAULT 0)")
		s.exec("CREATE UNIQUE INDEX " + tb + "_p ON " + tb + " (name) WHERE deleted_at IS NULL")
		s.exec("CREATE UNIQUE INDEX " + tb + "_f ON " + tb + " (name)")
		plan := strings.Join(s.mustRows("EXPLAIN INSERT INTO "+tb+" (name) VALUES ('a') ON CONFLICT (name) WHERE deleted_at IS NULL DO NOTHING"), "\n")
		if !strings.Contains(plan, tb+"_p") || !strings.Contains(plan, tb+"_f") {
			t.Fatalf("want both indexes as arbiters:\n%s", plan)
		}
		t.Logf("plan:\n%s", plan)
	})

	t.Run("ExpressionIndexNeedsTheExpression", func(t *testing.T) {
		tb := table(t, db, "pg3expr", "CREATE TABLE %s (id serial PRIMARY KEY, name text NOT NULL)")
		s.exec("CREATE UNIQUE INDEX ON " + tb + " (lower(name))")
		want(t, "ON CONFLICT (name) on a unique index on lower(name)",
			pgCode(s.try("INSERT INTO "+tb+" (name) VALUES ('A') ON CONFLICT (name) DO NOTHING")), "42P10")
		wantRows(t, "ON CONFLICT ((lower(name))), new",
			s.mustRows("INSERT INTO "+tb+" (name) VALUES ('A') ON CONFLICT ((lower(name))) DO NOTHING RETURNING id"), "1")
		wantRows(t, "ON CONFLICT ((lower(name))), other case",
			s.mustRows("INSERT INTO "+tb+" (name) VALUES ('a') ON CONFLICT ((lower(name))) DO NOTHING RETURNING id"))
	})

	t.Run("DeferrableIs55000", func(t *testing.T) {
		tb := table(t, db, "pg3def", "CREATE TABLE %s (id serial PRIMARY KEY, name text, CONSTRAINT %[1]s_u UNIQUE (name) DEFERRABLE)")
		want(t, "ON CONFLICT (name) on a DEFERRABLE unique constraint, empty table",
			pgCode(s.try("INSERT INTO "+tb+" (name) VALUES ('a') ON CONFLICT (name) DO NOTHING")), "55000")
		// Observed: targetless DO NOTHING fails too, even with no conflict,
		// because every unique index becomes an arbiter.
		want(t, "targetless DO NOTHING on a table with a DEFERRABLE unique constraint, empty table",
			pgCode(s.try("INSERT INTO "+tb+" (name) VALUES ('a') ON CONFLICT DO NOTHING")), "55000")
		want(t, "rows", s.int("SELECT count(*) FROM "+tb), 0)
		dd := table(t, db, "pg3defd", "CREATE TABLE %s (id serial PRIMARY KEY, name text, CONSTRAINT %[1]s_u UNIQUE (name) DEFERRABLE INITIALLY DEFERRED)")
		want(t, "ON CONFLICT (name) on a DEFERRABLE INITIALLY DEFERRED unique constraint",
			pgCode(s.try("INSERT INTO "+dd+" (name) VALUES ('a') ON CONFLICT (name) DO NOTHING")), "55000")
	})

	t.Run("DoUpdateNeedsTarget", func(t *testing.T) {
		tb := pgTags(t, "pg3tgt")
		want(t, "ON CONFLICT DO UPDATE without a target",
			pgCode(s.try("INSERT INTO "+tb+" (name) VALUES ('a') ON CONFLICT DO UPDATE SET n = 1")), "42601")
	})

	t.Run("ExclusionConstraint", func(t *testing.T) {
		tb := table(t, db, "pg3excl", "CREATE TABLE %s (id serial PRIMARY KEY, r int4range, CONSTRAINT %[1]s_x EXCLUDE USING gist (r WITH &&))")
		s.exec("INSERT INTO " + tb + " (r) VALUES ('[1,5)')")
		wantRows(t, "overlapping range, DO NOTHING on the exclusion constraint",
			s.mustRows("INSERT INTO "+tb+" (r) VALUES ('[2,3)') ON CONFLICT ON CONSTRAINT "+tb+"_x DO NOTHING RETURNING id"))
		want(t, "DO UPDATE on the exclusion constraint",
			pgCode(s.try("INSERT INTO "+tb+" (r) VALUES ('[2,3)') ON CONFLICT ON CONSTRAINT "+tb+"_x DO UPDATE SET r = EXCLUDED.r")), "42809")
	})
}

// TestPG4_SameKeyTwiceIs21000: DO UPDATE may not touch one row twice in a
// statement; DO NOTHING silently keeps the first.
func TestPG4_SameKeyTwiceIs21000(t *testing.T) {
	t.Parallel()
	db := pgDB(t)
	tb := pgTags(t, "pg4")
	s := pgSession(t, db)
	want(t, "DO UPDATE with one new key twice",
		pgCode(s.try("INSERT INTO "+tb+" (name) VALUES ('a'), ('a') ON CONFLICT (name) DO UPDATE SET n = "+tb+".n + 1")), "21000")
	want(t, "rows after the failed statement", s.int("SELECT count(*) FROM "+tb), 0)
	wantRows(t, "DO NOTHING with one new key twice",
		s.mustRows("INSERT INTO "+tb+" (name, n) VALUES ('a', 1), ('a', 2) ON CONFLICT (name) DO NOTHING RETURNING n"), "1")
	want(t, "DO UPDATE with one existing key twice",
		pgCode(s.try("INSERT INTO "+tb+" (name) VALUES ('a'), ('a') ON CONFLICT (name) DO UPDATE SET n = "+tb+".n + 1")), "21000")
}

// TestPG5_ReadCommittedUpsertActsOnInvisibleRow: in READ COMMITTED, an
// upsert that waited for a concurrent insert updates (or skips) the row its
// snapshot cannot see; MERGE does not, and fails with 23505.
func TestPG5_ReadCommittedUpsertActsOnInvisibleRow(t *testing.T) {
	t.Parallel()
	db := pgDB(t)
	tb := pgTags(t, "pg5")
	s1, s2 := pgSession(t, db), pgSession(t, db)

	s1.exec("BEGIN")
	s1.exec("INSERT INTO " + tb + " (name, n) VALUES ('u', 1)")
	s2.exec("BEGIN ISOLATION LEVEL READ COMMITTED")
	res := s2.asyncRows("INSERT INTO " + tb + " (name) VALUES ('u') ON CONFLICT (name) DO UPDATE SET n = " + tb + ".n + 10 RETURNING n")
	s1.waitBlocked(s2)
	notYet(t, res)
	s1.exec("COMMIT")
	r := recv(t, res)
	if r.err != nil {
		t.Fatal(r.err)
	}
	wantRows(t, "blocked DO UPDATE after the other commit", r.rows, "11")
	s2.exec("COMMIT")

	s1.exec("BEGIN")
	s1.exec("INSERT INTO " + tb + " (name) VALUES ('n')")
	res = s2.asyncRows("INSERT INTO " + tb + " (name) VALUES ('n') ON CONFLICT (name) DO NOTHING RETURNING id")
	s1.waitBlocked(s2)
	s1.exec("COMMIT")
	r = recv(t, res)
	if r.err != nil {
		t.Fatal(r.err)
	}
	wantRows(t, "blocked DO NOTHING after the other commit", r.rows)
	want(t, "separate SELECT after it", s2.int("SELECT count(*) FROM "+tb+" WHERE name = 'n'"), 1)

	// MERGE is no upsert: it waits on the unique index and then fails.
	s1.exec("BEGIN")
	s1.exec("INSERT INTO " + tb + " (name) VALUES ('m')")
	merge := s2.async("MERGE INTO " + tb + " t USING (VALUES ('m')) v(name) ON t.name = v.name" +
		" WHEN MATCHED THEN UPDATE SET n = t.n + 1 WHEN NOT MATCHED THEN INSERT (name) VALUES (v.name)")
	s1.waitBlocked(s2)
	s1.exec("COMMIT")
	want(t, "MERGE racing a concurrent insert of its key", pgCode(recv(t, merge)), "23505")
}

// TestPG6_RepeatableReadConflictIs40001: under REPEATABLE READ and
// SERIALIZABLE, ON CONFLICT against a row the snapshot cannot see raises
// 40001; taken after the commit, the snapshot sees the row and the
// statement succeeds silently.
func TestPG6_RepeatableReadConflictIs40001(t *testing.T) {
	t.Parallel()
	db := pgDB(t)
	tb := pgTags(t, "pg6")
	s1, s2 := pgSession(t, db), pgSession(t, db)
	doNothing := func(key string) string {
		return "INSERT INTO " + tb + " (name) VALUES ('" + key + "') ON CONFLICT (name) DO NOTHING"
	}

	for _, level := range []string{"REPEATABLE READ", "SERIALIZABLE"} {
		// Blocked: s2 waits for s1's uncommitted insert, then fails.
		key := strings.ReplaceAll(strings.ToLower(level), " ", "")
		s2.exec("BEGIN ISOLATION LEVEL " + level)
		s2.exec("SELECT 1") // takes the snapshot
		s1.exec("BEGIN")
		s1.exec("INSERT INTO " + tb + " (name) VALUES ('" + key + "')")
		res := s2.async(doNothing(key))
		s1.waitBlocked(s2)
		s1.exec("COMMIT")
		want(t, level+": DO NOTHING blocked on a concurrent insert, after its commit", pgCode(recv(t, res)), "40001")
		s2.exec("ROLLBACK")
	}

	// Not blocked: the row was committed after s2's snapshot.
	s2.exec("BEGIN ISOLATION LEVEL REPEATABLE READ")
	s2.exec("SELECT 1")
	s1.exec("INSERT INTO " + tb + " (name) VALUES ('late')")
	want(t, "RR: DO NOTHING on a key committed after the snapshot", pgCode(s2.try(doNothing("late"))), "40001")
	s2.exec("ROLLBACK")

	s2.exec("BEGIN ISOLATION LEVEL REPEATABLE READ")
	s2.exec("SELECT 1")
	s1.exec("INSERT INTO " + tb + " (name) VALUES ('late2')")
	want(t, "RR: DO UPDATE on a key committed after the snapshot",
		pgCode(s2.try("INSERT INTO "+tb+" (name) VALUES ('late2') ON CONFLICT (name) DO UPDATE SET n = 1")), "40001")
	s2.exec("ROLLBACK")

	// The snapshot is taken by the first statement, not by BEGIN.
	s2.exec("BEGIN ISOLATION LEVEL REPEATABLE READ")
	s1.exec("INSERT INTO " + tb + " (name) VALUES ('early')")
	wantRows(t, "RR: BEGIN before the other commit, first statement after it",
		s2.mustRows(doNothing("early")+" RETURNING id"))
	want(t, "the same transaction's SELECT", s2.int("SELECT count(*) FROM "+tb+" WHERE name = 'early'"), 1)
	s2.exec("COMMIT")

	// A conflict with the transaction's own insert is no error.
	s2.exec("BEGIN ISOLATION LEVEL REPEATABLE READ")
	s2.exec("SELECT 1")
	s2.exec("INSERT INTO " + tb + " (name) VALUES ('own')")
	if err := s2.try(doNothing("own")); err != nil {
		t.Fatalf("conflict with the transaction's own row: %v", err)
	}
	wantRows(t, "RR: one new key twice in one DO NOTHING statement",
		s2.mustRows("INSERT INTO "+tb+" (name) VALUES ('twice'), ('twice') ON CONFLICT (name) DO NOTHING RETURNING name"), "twice")
	s2.exec("COMMIT")
}

// TestPG7_SerializableConflictRowCountsAsRead replays the permutations of
// PostgreSQL master's insert-conflict-serializable.spec.
func TestPG7_SerializableConflictRowCountsAsRead(t *testing.T) {
	t.Parallel()
	db := pgDB(t)
	for i, first := range []string{"DO NOTHING", "DO NOTHING", "DO UPDATE WHERE"} {
		t.Run(fmt.Sprintf("permutation%d", i+1), func(t *testing.T) {
			a := table(t, db, "pg7a", "CREATE TABLE %s (key int PRIMARY KEY, val int)")
			b := table(t, db, "pg7b", "CREATE TABLE %s (key int PRIMARY KEY, val int)")
			s1, s2 := pgSession(t, db), pgSession(t, db)
			s1.exec("INSERT INTO " + a + " VALUES (1, 0)")
			s1.exec("BEGIN ISOLATION LEVEL SERIALIZABLE")
			s2.exec("BEGIN ISOLATION LEVEL SERIALIZABLE")
			if first == "DO NOTHING" {
				s1.exec("INSERT INTO " + a + " VALUES (1, 99) ON CONFLICT (key) DO NOTHING")
			} else {
				s1.exec("INSERT INTO " + a + " VALUES (1, 99) ON CONFLICT (key) DO UPDATE SET val = 99 WHERE " + a + ".val > 100")
			}
			want(t, "s2 count", s2.int("SELECT count(*) FROM "+b), 0)
			var write <-chan error
			switch i {
			case 0:
				write = s2.async("DELETE FROM " + a + " WHERE key = 1")
			default:
				write = s2.async("UPDATE " + a + " SET val = 1 WHERE key = 1")
			}
			if i == 2 {
				// The rejected DO UPDATE locked the row: s2 waits.
				s1.waitBlocked(s2)
			} else if err := recv(t, write); err != nil {
				t.Fatalf("s2 write: %v", err)
			}
			s1.exec("INSERT INTO " + b + " VALUES (1, 10)")
			if err := s1.try("COMMIT"); err != nil {
				t.Fatalf("s1 commit: %v", err)
			}
			if i == 2 {
				want(t, "s2's UPDATE, after s1 commits", pgCode(recv(t, write)), "40001")
				s2.exec("ROLLBACK")
				return
			}
			want(t, "s2's COMMIT", pgCode(s2.try("COMMIT")), "40001")
		})
	}
}

// TestPG9_ErrorAbortsTransaction25P02: after an error every statement fails
// until the transaction ends; a savepoint confines the error.
func TestPG9_ErrorAbortsTransaction25P02(t *testing.T) {
	t.Parallel()
	db := pgDB(t)
	tb := pgTags(t, "pg9")
	s := pgSession(t, db)
	s.exec("INSERT INTO " + tb + " (name) VALUES ('a')")

	s.exec("BEGIN")
	s.exec("INSERT INTO " + tb + " (name) VALUES ('b')")
	want(t, "duplicate insert in a transaction", pgCode(s.try("INSERT INTO "+tb+" (name) VALUES ('a')")), "23505")
	want(t, "next statement", pgCode(s.try("SELECT 1")), "25P02")
	// The server answers COMMIT of a failed transaction with ROLLBACK, not
	// an error: a plain Exec("COMMIT") reports success.
	want(t, "error of Exec(COMMIT) of the aborted transaction", pgCode(s.try("COMMIT")), "")
	want(t, "rows named b after it", s.int("SELECT count(*) FROM "+tb+" WHERE name = 'b'"), 0)
	// pgx's Tx.Commit reads the ROLLBACK tag and says so.
	tx, err := db.BeginTx(s.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("INSERT INTO " + tb + " (name) VALUES ('a')"); pgCode(err) != "23505" {
		t.Fatalf("duplicate insert in a sql.Tx: %v", err)
	}
	err = tx.Commit()
	if !errors.Is(err, pgx.ErrTxCommitRollback) {
		t.Fatalf("sql.Tx.Commit of the aborted transaction: %v, want pgx.ErrTxCommitRollback", err)
	}
	t.Logf("sql.Tx.Commit of the aborted transaction: %v", err)

	s.exec("BEGIN")
	s.exec("INSERT INTO " + tb + " (name) VALUES ('b')")
	s.exec("SAVEPOINT sp")
	want(t, "duplicate insert after a savepoint", pgCode(s.try("INSERT INTO "+tb+" (name) VALUES ('a')")), "23505")
	s.exec("ROLLBACK TO SAVEPOINT sp")
	s.exec("INSERT INTO " + tb + " (name) VALUES ('c')")
	s.exec("INSERT INTO " + tb + " (name) VALUES ('a') ON CONFLICT (name) DO NOTHING")
	s.exec("COMMIT")
	want(t, "rows after the savepoint transaction", s.str("SELECT string_agg(name, ',' ORDER BY name) FROM "+tb), "a,b,c")
}

// TestPG10_XmaxZeroTellsInsertFromUpdate: the undocumented xmax = 0 test
// works on this server; RETURNING old/new (PostgreSQL 18) does not exist.
func TestPG10_XmaxZeroTellsInsertFromUpdate(t *testing.T) {
	t.Parallel()
	db := pgDB(t)
	tb := pgTags(t, "pg10")
	s := pgSession(t, db)
	up := "INSERT INTO " + tb + " (name) VALUES ('a') ON CONFLICT (name) DO UPDATE SET n = " + tb + ".n + 1 RETURNING (xmax = 0) AS inserted"
	wantRows(t, "new key", s.mustRows(up), "true")
	wantRows(t, "existing key", s.mustRows(up), "false")
	want(t, "RETURNING old.*, new.* on PostgreSQL 15",
		pgCode(s.try("INSERT INTO "+tb+" (name) VALUES ('a') ON CONFLICT (name) DO UPDATE SET n = 1 RETURNING old.n, new.n")), "42P01")
}

// TestPG11_OneStatementCannotSeeConcurrentRow: a CTE that inserts with DO
// NOTHING and selects the key in the same statement returns nothing when
// the row came from a concurrent transaction; a separate SELECT finds it.
// A dummy DO UPDATE writes a new row version.
func TestPG11_OneStatementCannotSeeConcurrentRow(t *testing.T) {
	t.Parallel()
	db := pgDB(t)
	tb := pgTags(t, "pg11")
	s1, s2 := pgSession(t, db), pgSession(t, db)
	s1.exec("BEGIN")
	s1.exec("INSERT INTO " + tb + " (name) VALUES ('k')")
	res := s2.asyncRows("WITH ins AS (INSERT INTO " + tb + " (name) VALUES ('k') ON CONFLICT (name) DO NOTHING RETURNING id)" +
		" SELECT id FROM ins UNION ALL SELECT id FROM " + tb + " WHERE name = 'k'")
	s1.waitBlocked(s2)
	s1.exec("COMMIT")
	r := recv(t, res)
	if r.err != nil {
		t.Fatal(r.err)
	}
	wantRows(t, "insert-or-select in one statement, key committed concurrently", r.rows)
	wantRows(t, "separate SELECT", s2.mustRows("SELECT id FROM "+tb+" WHERE name = 'k'"), "1")

	before := s2.str("SELECT ctid::text FROM " + tb + " WHERE name = 'k'")
	s2.exec("INSERT INTO " + tb + " (name) VALUES ('k') ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name")
	after := s2.str("SELECT ctid::text FROM " + tb + " WHERE name = 'k'")
	if before == after {
		t.Fatalf("dummy DO UPDATE kept ctid %s: no new row version", before)
	}
	t.Logf("dummy DO UPDATE moved the row from ctid %s to %s", before, after)
}

// TestPG13_NullsDistinctByDefault: NULL keys never conflict unless the
// index is NULLS NOT DISTINCT (PostgreSQL 15).
func TestPG13_NullsDistinctByDefault(t *testing.T) {
	t.Parallel()
	db := pgDB(t)
	s := pgSession(t, db)
	tb := table(t, db, "pg13", "CREATE TABLE %s (id serial PRIMARY KEY, name text UNIQUE)")
	for range 3 {
		s.exec("INSERT INTO " + tb + " (name) VALUES (NULL) ON CONFLICT (name) DO NOTHING")
	}
	want(t, "rows after three DO NOTHING inserts of NULL", s.int("SELECT count(*) FROM "+tb), 3)

	nd := table(t, db, "pg13nd", "CREATE TABLE %s (id serial PRIMARY KEY, name text UNIQUE NULLS NOT DISTINCT)")
	s.exec("INSERT INTO " + nd + " (name) VALUES (NULL)")
	want(t, "NULLS NOT DISTINCT: second NULL", pgCode(s.try("INSERT INTO "+nd+" (name) VALUES (NULL)")), "23505")
	wantRows(t, "NULLS NOT DISTINCT: DO NOTHING with NULL",
		s.mustRows("INSERT INTO "+nd+" (name) VALUES (NULL) ON CONFLICT (name) DO NOTHING RETURNING id"))
	wantRows(t, "NULLS NOT DISTINCT: DO UPDATE with NULL",
		s.mustRows("INSERT INTO "+nd+" (name) VALUES (NULL) ON CONFLICT (name) DO UPDATE SET name = NULL RETURNING id"), "1")
}

// TestPG14_SequenceAdvancesOnConflict: nextval and BEFORE INSERT triggers run
// before the conflict is found.
func TestPG14_SequenceAdvancesOnConflict(t *testing.T) {
	t.Parallel()
	db := pgDB(t)
	s := pgSession(t, db)
	tb := pgTags(t, "pg14")
	s.exec("INSERT INTO " + tb + " (name) VALUES ('a')")
	s.exec("INSERT INTO " + tb + " (name) VALUES ('a') ON CONFLICT (name) DO NOTHING")
	want(t, "id of the next new key after one DO NOTHING on an existing key",
		s.int("INSERT INTO "+tb+" (name) VALUES ('b') RETURNING id"), 3)
	s.exec("INSERT INTO " + tb + " (name) VALUES ('a') ON CONFLICT (name) DO UPDATE SET n = 1")
	want(t, "id of the next new key after one DO UPDATE on an existing key",
		s.int("INSERT INTO "+tb+" (name) VALUES ('c') RETURNING id"), 5)

	// An exhausted sequence fails even the upsert of an existing key.
	ex := table(t, db, "pg14max", "CREATE TABLE %s (id int GENERATED BY DEFAULT AS IDENTITY (MINVALUE 1 MAXVALUE 2) PRIMARY KEY, name text NOT NULL UNIQUE)")
	s.exec("INSERT INTO " + ex + " (name) VALUES ('a'), ('b')")
	want(t, "DO NOTHING on an existing key, sequence exhausted",
		pgCode(s.try("INSERT INTO "+ex+" (name) VALUES ('a') ON CONFLICT (name) DO NOTHING")), "2200H")

	// BEFORE INSERT triggers fire on the conflict path too.
	fn := tableName(t, "pg14fn")
	logt := table(t, db, "pg14log", "CREATE TABLE %s (name text)")
	s.exec("CREATE FUNCTION " + fn + "() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO " + logt + " VALUES (NEW.name); RETURN NEW; END $$")
	t.Cleanup(func() { db.Exec("DROP FUNCTION IF EXISTS " + fn + "() CASCADE") })
	tr := pgTags(t, "pg14trg")
	s.exec("CREATE TRIGGER t BEFORE INSERT ON " + tr + " FOR EACH ROW EXECUTE FUNCTION " + fn + "()")
	s.exec("INSERT INTO " + tr + " (name) VALUES ('a')")
	s.exec("INSERT INTO " + tr + " (name) VALUES ('a') ON CONFLICT (name) DO NOTHING")
	want(t, "BEFORE INSERT trigger runs for one insert and one DO NOTHING conflict", s.int("SELECT count(*) FROM "+logt), 2)
}

// TestPG15_OppositeOrderBatchesDeadlock: multi-row upserts lock rows in input
// order; opposite orders deadlock (40P01), one order does not. DO NOTHING
// waits for uncommitted inserts and deadlocks the same way.
func TestPG15_OppositeOrderBatchesDeadlock(t *testing.T) {
	t.Parallel()
	db := pgDB(t)
	up := func(tb string, keys ...string) string {
		return "INSERT INTO " + tb + " (name) VALUES ('" + strings.Join(keys, "'), ('") + "') ON CONFLICT (name) DO UPDATE SET n = " + tb + ".n + 1"
	}
	t.Run("OppositeOrder", func(t *testing.T) {
		t.Parallel()
		tb := pgTags(t, "pg15opp")
		s1, s2 := pgSession(t, db), pgSession(t, db)
		s1.exec("INSERT INTO " + tb + " (name) VALUES ('a'), ('b')")
		s1.exec("BEGIN")
		s2.exec("BEGIN")
		s1.exec(up(tb, "a"))
		r2 := s2.async(up(tb, "b", "a")) // locks b, waits for a
		s1.waitBlocked(s2)
		r1 := s1.async(up(tb, "b")) // waits for b: a cycle
		e1, e2 := recv(t, r1), recv(t, r2)
		codes := pgCode(e1) + "," + pgCode(e2)
		if codes != "40P01," && codes != ",40P01" {
			t.Fatalf("want one 40P01, got %q", codes)
		}
		t.Logf("s1, s2: %q", codes)
	})
	t.Run("SameOrder", func(t *testing.T) {
		t.Parallel()
		tb := pgTags(t, "pg15same")
		s1, s2 := pgSession(t, db), pgSession(t, db)
		s1.exec("INSERT INTO " + tb + " (name) VALUES ('a'), ('b')")
		s1.exec("BEGIN")
		s2.exec("BEGIN")
		s1.exec(up(tb, "a"))
		r2 := s2.async(up(tb, "a", "b")) // waits for a, holds nothing
		s1.waitBlocked(s2)
		s1.exec(up(tb, "b"))
		s1.exec("COMMIT")
		if err := recv(t, r2); err != nil {
			t.Fatalf("sorted batch: %v", err)
		}
		s2.exec("COMMIT")
		want(t, "n of a,b", s1.str("SELECT string_agg(n::text, ',' ORDER BY name) FROM "+tb), "2,2")
	})
	t.Run("DoNothing", func(t *testing.T) {
		t.Parallel()
		tb := pgTags(t, "pg15dn")
		s1, s2 := pgSession(t, db), pgSession(t, db)
		s1.exec("BEGIN")
		s2.exec("BEGIN")
		s1.exec("INSERT INTO " + tb + " (name) VALUES ('x')")
		s2.exec("INSERT INTO " + tb + " (name) VALUES ('y')")
		r1 := s1.async("INSERT INTO " + tb + " (name) VALUES ('y') ON CONFLICT (name) DO NOTHING")
		s2.waitBlocked(s1)
		r2 := s2.async("INSERT INTO " + tb + " (name) VALUES ('x') ON CONFLICT (name) DO NOTHING")
		codes := pgCode(recv(t, r1)) + "," + pgCode(recv(t, r2))
		if codes != "40P01," && codes != ",40P01" {
			t.Fatalf("want one 40P01, got %q", codes)
		}
		t.Logf("s1, s2: %q", codes)
	})
}

// TestPG17_DeterministicCollationNFCAndNFDAreTwoKeys: byte-different
// strings are different keys in the default collation; a nondeterministic
// ICU collation makes canonically equivalent strings one key.
func TestPG17_DeterministicCollationNFCAndNFDAreTwoKeys(t *testing.T) {
	t.Parallel()
	db := pgDB(t)
	s := pgSession(t, db)
	const nfc, nfd = "\u00e9", "e\u0301"
	t.Logf("database collation: %s", s.str("SELECT datcollate FROM pg_database WHERE datname = current_database()"))
	tb := pgTags(t, "pg17")
	for _, k := range []string{nfc, nfd, "E\u0301", "e"} {
		if err := s.try("INSERT INTO "+tb+" (name) VALUES ($1)", k); err != nil {
			t.Fatalf("insert %q: %v", k, err)
		}
	}
	want(t, "keys among é (NFC), é (NFD), É (NFD), e", s.int("SELECT count(*) FROM "+tb), 4)
	want(t, "normalize(NFD, NFC) equals NFC", s.str("SELECT normalize($1::text, NFC) = $2::text", nfd, nfc), "true")

	if s.int("SELECT count(*) FROM pg_collation WHERE collprovider = 'i'") == 0 {
		t.Log("no ICU collations on this server: nondeterministic part not checked")
		return
	}
	coll := tableName(t, "pg17coll")
	s.exec("CREATE COLLATION " + coll + " (provider = icu, locale = 'und', deterministic = false)")
	t.Cleanup(func() { db.Exec("DROP COLLATION IF EXISTS " + coll + " CASCADE") })
	nd := table(t, db, "pg17nd", "CREATE TABLE %s (id serial PRIMARY KEY, name text COLLATE "+coll+" NOT NULL UNIQUE)")
	s.exec("INSERT INTO "+nd+" (name) VALUES ($1)", nfc)
	want(t, "nondeterministic ICU collation: NFD after NFC", pgCode(s.try("INSERT INTO "+nd+" (name) VALUES ($1)", nfd)), "23505")
	if err := s.try("INSERT INTO " + nd + " (name) VALUES ('E\u0301')"); err != nil {
		t.Fatalf("nondeterministic ICU collation at default strength keeps case apart: %v", err)
	}
}

// TestPG18_DoSelectNotInThisVersion: ON CONFLICT DO SELECT is PostgreSQL 19
// development work; this server rejects the syntax.
func TestPG18_DoSelectNotInThisVersion(t *testing.T) {
	t.Parallel()
	db := pgDB(t)
	tb := pgTags(t, "pg18")
	s := pgSession(t, db)
	want(t, "ON CONFLICT DO SELECT", pgCode(s.try("INSERT INTO "+tb+" (name) VALUES ('a') ON CONFLICT (name) DO SELECT RETURNING id")), "42601")
}

// TestPG19_ErrorCodes: the SQLSTATEs of the errors the library classifies.
func TestPG19_ErrorCodes(t *testing.T) {
	t.Parallel()
	db := pgDB(t)
	s := pgSession(t, db)
	tb := table(t, db, "pg19", "CREATE TABLE %s (id serial PRIMARY KEY, name varchar(3) UNIQUE, t text UNIQUE, n int)")
	s.exec("INSERT INTO " + tb + " (name) VALUES ('a')")
	want(t, "unique violation", pgCode(s.try("INSERT INTO "+tb+" (name) VALUES ('a')")), "23505")
	want(t, "value too long for varchar(3)", pgCode(s.try("INSERT INTO "+tb+" (name) VALUES ($1)", "abcd")), "22001")
	want(t, "'abc' into an int column", pgCode(s.try("INSERT INTO "+tb+" (n) VALUES ('abc')")), "22P02")
	want(t, "NUL byte in a text parameter", pgCode(s.try("INSERT INTO "+tb+" (t) VALUES ($1)", "a\x00b")), "22021")
	want(t, "invalid UTF-8 in a text parameter", pgCode(s.try("INSERT INTO "+tb+" (t) VALUES ($1)", "a\xffb")), "22021")

	var raw [6000]byte
	rand.Read(raw[:])
	huge := base64.StdEncoding.EncodeToString(raw[:]) // 8000 incompressible characters
	err := s.try("INSERT INTO "+tb+" (t) VALUES ($1)", huge)
	want(t, "8000-byte key in a btree unique index", pgCode(err), "54000")
	t.Logf("message: %v", err)

	s.exec("SET statement_timeout = '50ms'")
	want(t, "statement_timeout", pgCode(s.try("SELECT pg_sleep(2)")), "57014")
	s.exec("SET statement_timeout = 0")

	s2 := pgSession(t, db)
	s.exec("BEGIN")
	s.exec("SELECT id FROM " + tb + " WHERE name = 'a' FOR UPDATE")
	want(t, "FOR UPDATE NOWAIT on a locked row", pgCode(s2.try("SELECT id FROM "+tb+" WHERE name = 'a' FOR UPDATE NOWAIT")), "55P03")
	s2.exec("SET lock_timeout = '50ms'")
	want(t, "lock_timeout", pgCode(s2.try("UPDATE "+tb+" SET n = 1 WHERE name = 'a'")), "55P03")
	s.exec("ROLLBACK")
}
