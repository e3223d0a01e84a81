package facts

import (
	"database/sql"
	"strings"
	"testing"
	"time"
)

// SQLite extended result codes.
const (
	sqliteBusy           = 5
	sqliteBusySnapshot   = 517
	sqliteConstraintChk  = 275
	sqliteConstraintFK   = 787
	sqliteConstraintNN   = 1299
	sqliteConstraintUniq = 2067
	sqliteConstraintType = 3091
)

// sqTags opens a new SQLite database with the usual key table.
func sqTags(t *testing.T, params string) (*sql.DB, *session) {
	db := sqliteDB(t, params)
	s := sqSession(t, db)
	s.exec("CREATE TABLE tags (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, n INTEGER NOT NULL DEFAULT 0)")
	return db, s
}

// TestSQ1_Upsert: UPSERT on this SQLite: excluded, targetless DO UPDATE,
// several clauses, no effect on NOT NULL / CHECK, the INSERT ... SELECT
// parsing ambiguity.
func TestSQ1_Upsert(t *testing.T) {
	t.Parallel()
	_, s := sqTags(t, "")
	v := s.str("SELECT sqlite_version()")
	t.Logf("sqlite_version() = %s", v)
	up := "INSERT INTO tags (name, n) VALUES ('a', 5) ON CONFLICT (name) DO UPDATE SET n = n + excluded.n"
	s.exec(up)
	s.exec(up)
	want(t, "n after two upserts adding excluded.n", s.int("SELECT n FROM tags WHERE name = 'a'"), 10)
	s.exec("INSERT INTO tags (name) VALUES ('a') ON CONFLICT DO UPDATE SET n = n + 1")
	want(t, "targetless DO UPDATE", s.int("SELECT n FROM tags WHERE name = 'a'"), 11)

	s.exec("CREATE TABLE two (id INTEGER PRIMARY KEY, a TEXT UNIQUE, b TEXT UNIQUE, n INTEGER NOT NULL DEFAULT 0, CHECK (n >= 0))")
	s.exec("INSERT INTO two (a, b) VALUES ('a1', 'b1')")
	multi := "INSERT INTO two (a, b) VALUES (?, ?) ON CONFLICT (a) DO UPDATE SET n = n + 1 ON CONFLICT (b) DO UPDATE SET n = n + 100"
	s.exec(multi, "a1", "zz")
	s.exec(multi, "a9", "b1")
	want(t, "n after an (a) conflict and a (b) conflict", s.int("SELECT n FROM two WHERE a = 'a1'"), 101)

	want(t, "NULL into NOT NULL with ON CONFLICT DO NOTHING",
		sqCode(s.try("INSERT INTO tags (name) VALUES (NULL) ON CONFLICT DO NOTHING")), sqliteConstraintNN)
	want(t, "CHECK violation with ON CONFLICT DO NOTHING",
		sqCode(s.try("INSERT INTO two (a, n) VALUES ('c', -1) ON CONFLICT DO NOTHING")), sqliteConstraintChk)

	s.exec("CREATE TABLE src (name TEXT)")
	s.exec("INSERT INTO src VALUES ('a'), ('b')")
	err := s.try("INSERT INTO tags (name) SELECT name FROM src ON CONFLICT (name) DO NOTHING")
	if err == nil {
		t.Fatal("INSERT ... SELECT ... FROM src ON CONFLICT parsed without WHERE true")
	}
	t.Logf("INSERT ... SELECT ... FROM src ON CONFLICT: %v", err)
	s.exec("INSERT INTO tags (name) SELECT name FROM src WHERE true ON CONFLICT (name) DO NOTHING")
	want(t, "rows after INSERT ... SELECT ... WHERE true ON CONFLICT", s.int("SELECT count(*) FROM tags"), 2)
}

// TestSQ2_ReturningForDoNothingGivesNothing.
func TestSQ2_ReturningForDoNothingGivesNothing(t *testing.T) {
	t.Parallel()
	_, s := sqTags(t, "")
	ins := "INSERT INTO tags (name) VALUES ('a') ON CONFLICT (name) DO NOTHING RETURNING id"
	wantRows(t, "new key", s.mustRows(ins), "1")
	wantRows(t, "existing key, DO NOTHING", s.mustRows(ins))
	wantRows(t, "existing key, DO UPDATE",
		s.mustRows("INSERT INTO tags (name) VALUES ('a') ON CONFLICT (name) DO UPDATE SET n = n + 1 RETURNING id, n"), "1|1")
	r := s.exec("INSERT INTO tags (name) VALUES ('b') RETURNING id")
	n, _ := r.RowsAffected()
	want(t, "RowsAffected of an Exec'd INSERT ... RETURNING (modernc)", n, 1)
}

// TestSQ3_DeferredReadThenWriteIsBusy: a deferred transaction that has read
// cannot start writing while another connection writes, and gets
// SQLITE_BUSY at once despite busy_timeout; BEGIN IMMEDIATE waits instead.
func TestSQ3_DeferredReadThenWriteIsBusy(t *testing.T) {
	t.Parallel()
	t.Run("RollbackJournal", func(t *testing.T) {
		t.Parallel()
		db, c1 := sqTags(t, "")
		c2 := sqSession(t, db)
		want(t, "journal_mode", c1.str("PRAGMA journal_mode"), "delete")
		want(t, "busy_timeout", c1.int("PRAGMA busy_timeout"), 5000)
		c1.exec("BEGIN")
		c1.int("SELECT count(*) FROM tags")
		c2.exec("BEGIN")
		c2.int("SELECT count(*) FROM tags")
		c2.exec("INSERT INTO tags (name) VALUES ('b')")
		start := time.Now()
		err := c1.try("INSERT INTO tags (name) VALUES ('a')")
		took := time.Since(start)
		want(t, "write after read, other connection writing", sqCode(err), sqliteBusy)
		if took > 2*time.Second {
			t.Fatalf("SQLITE_BUSY after %v: the busy handler ran", took)
		}
		t.Logf("SQLITE_BUSY after %v with busy_timeout 5000 ms: %v", took.Round(time.Millisecond), err)
		c1.exec("ROLLBACK")
		c2.exec("COMMIT")
	})
	t.Run("WAL", func(t *testing.T) {
		t.Parallel()
		db, c1 := sqTags(t, "_pragma=journal_mode(wal)")
		c2 := sqSession(t, db)
		want(t, "journal_mode", c1.str("PRAGMA journal_mode"), "wal")
		c1.exec("BEGIN")
		c1.int("SELECT count(*) FROM tags")
		c2.exec("INSERT INTO tags (name) VALUES ('b')")
		start := time.Now()
		err := c1.try("INSERT INTO tags (name) VALUES ('a')")
		want(t, "write after read, snapshot stale", sqCode(err), sqliteBusySnapshot)
		t.Logf("after %v: %v", time.Since(start).Round(time.Millisecond), err)
		c1.exec("ROLLBACK")
	})
	t.Run("TxlockImmediate", func(t *testing.T) {
		t.Parallel()
		db, s := sqTags(t, "_txlock=immediate")
		s.c.Close()
		tx1, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan error, 1)
		go func() {
			tx2, err := db.Begin() // waits for tx1 in busy_timeout
			if err == nil {
				var n int
				if err = tx2.QueryRow("SELECT count(*) FROM tags").Scan(&n); err == nil {
					if _, err = tx2.Exec("INSERT INTO tags (name) VALUES ('b')"); err == nil {
						err = tx2.Commit()
					}
				}
			}
			got <- err
		}()
		var n int
		if err := tx1.QueryRow("SELECT count(*) FROM tags").Scan(&n); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		notYet(t, got) // tx2 cannot begin while tx1 holds the write lock
		if _, err := tx1.Exec("INSERT INTO tags (name) VALUES ('a')"); err != nil {
			t.Fatal(err)
		}
		if err := tx1.Commit(); err != nil {
			t.Fatal(err)
		}
		if err := recv(t, got); err != nil {
			t.Fatalf("second immediate transaction: %v", err)
		}
		var rows int
		db.QueryRow("SELECT count(*) FROM tags").Scan(&rows)
		want(t, "rows", rows, 2)
	})
}

// TestSQ4_WALReaderDoesNotBlockWriter: in WAL a reader keeps its snapshot
// while another connection writes; there is still one writer at a time.
func TestSQ4_WALReaderDoesNotBlockWriter(t *testing.T) {
	t.Parallel()
	db, c1 := sqTags(t, "_pragma=journal_mode(wal)")
	c2 := sqSession(t, db)
	c1.exec("BEGIN")
	want(t, "reader's count", c1.int("SELECT count(*) FROM tags"), 0)
	c2.exec("INSERT INTO tags (name) VALUES ('a')")
	want(t, "reader's count after the other commit", c1.int("SELECT count(*) FROM tags"), 0)
	c1.exec("COMMIT")
	want(t, "count after the reader ends", c1.int("SELECT count(*) FROM tags"), 1)

	c1.exec("BEGIN IMMEDIATE")
	c2.exec("PRAGMA busy_timeout = 100")
	want(t, "second BEGIN IMMEDIATE", sqCode(c2.try("BEGIN IMMEDIATE")), sqliteBusy)
	c1.exec("ROLLBACK")
}

// TestSQ5_InsertOrIgnoreSkipsNotNullAndCheck: OR IGNORE skips a row on
// UNIQUE, NOT NULL and CHECK violations without an error; OR REPLACE deletes
// the colliding rows; ABORT undoes only the statement.
func TestSQ5_InsertOrIgnoreSkipsNotNullAndCheck(t *testing.T) {
	t.Parallel()
	_, s := sqTags(t, "_pragma=foreign_keys(1)")
	s.exec("CREATE TABLE c (id INTEGER PRIMARY KEY, a TEXT NOT NULL DEFAULT 'dflt' UNIQUE, b TEXT UNIQUE, n INTEGER CHECK (n >= 0), p INTEGER REFERENCES tags (id))")
	s.exec("INSERT INTO c (a, b, n) VALUES ('a1', 'b1', 0)")
	for _, c := range []struct{ what, values string }{
		{"UNIQUE", "('a1', 'x', 0, NULL)"},
		{"NOT NULL", "(NULL, 'y', 0, NULL)"},
		{"CHECK", "('a3', 'z', -1, NULL)"},
	} {
		r := s.exec("INSERT OR IGNORE INTO c (a, b, n, p) VALUES " + c.values)
		n, _ := r.RowsAffected()
		want(t, "OR IGNORE, "+c.what+" violation: rows inserted, no error", n, 0)
	}
	want(t, "OR IGNORE, foreign-key violation",
		sqCode(s.try("INSERT OR IGNORE INTO c (a, p) VALUES ('fk', 42)")), sqliteConstraintFK)

	s.exec("INSERT INTO c (a, b, n) VALUES ('a2', 'b2', 0)")
	r := s.exec("INSERT OR REPLACE INTO c (a, b, n) VALUES ('a1', 'b2', 5)")
	n, _ := r.RowsAffected()
	want(t, "OR REPLACE colliding with two rows: RowsAffected", n, 1)
	wantRows(t, "rows after OR REPLACE", s.mustRows("SELECT id, a, b, n FROM c ORDER BY id"), "3|a1|b2|5")
	s.exec("INSERT OR REPLACE INTO c (a, b, n) VALUES (NULL, 'b9', 0)")
	want(t, "OR REPLACE of NULL into NOT NULL DEFAULT 'dflt'", s.str("SELECT a FROM c WHERE b = 'b9'"), "dflt")

	s.exec("INSERT INTO tags (name) VALUES ('a')")
	s.exec("BEGIN")
	s.exec("INSERT INTO tags (name) VALUES ('b')")
	want(t, "duplicate in a transaction", sqCode(s.try("INSERT INTO tags (name) VALUES ('a')")), sqliteConstraintUniq)
	s.exec("INSERT INTO tags (name) VALUES ('c')")
	s.exec("COMMIT")
	want(t, "rows", s.str("SELECT group_concat(name, ',') FROM (SELECT name FROM tags ORDER BY name)"), "a,b,c")
}

// TestSQ6_NocaseFoldsOnlyASCII: NOCASE folds A-Z only and stops comparing
// at a NUL; BINARY compares all bytes; RTRIM ignores trailing spaces.
func TestSQ6_NocaseFoldsOnlyASCII(t *testing.T) {
	t.Parallel()
	_, s := sqTags(t, "")
	s.exec("CREATE TABLE nc (name TEXT COLLATE NOCASE UNIQUE)")
	s.exec("CREATE TABLE bin (name TEXT COLLATE BINARY UNIQUE)")
	s.exec("CREATE TABLE rt (name TEXT COLLATE RTRIM UNIQUE)")
	ins := func(tb, k string) int { return sqCode(s.try("INSERT INTO "+tb+" (name) VALUES (?)", k)) }
	want(t, "NOCASE: abc", ins("nc", "abc"), 0)
	want(t, "NOCASE: ABC after abc", ins("nc", "ABC"), sqliteConstraintUniq)
	want(t, "NOCASE: é", ins("nc", "\u00e9"), 0)
	want(t, "NOCASE: É after é", ins("nc", "\u00c9"), 0)
	want(t, "NOCASE: ab\\0x", ins("nc", "ab\x00x"), 0)
	want(t, "NOCASE: ab\\0y after ab\\0x", ins("nc", "ab\x00y"), sqliteConstraintUniq)
	want(t, "NOCASE: ab\\0xy (longer)", ins("nc", "ab\x00xy"), 0)
	want(t, "stored length of ab\\0x", s.int("SELECT length(CAST(name AS BLOB)) FROM nc WHERE name = ?", "ab\x00x"), 4)
	want(t, "BINARY: ab\\0x", ins("bin", "ab\x00x"), 0)
	want(t, "BINARY: ab\\0y", ins("bin", "ab\x00y"), 0)
	want(t, "RTRIM: a", ins("rt", "a"), 0)
	want(t, "RTRIM: 'a  ' after a", ins("rt", "a  "), sqliteConstraintUniq)
}

// TestSQ7_IntegerAffinityMakes12AndQuoted12OneKey: type affinity decides
// which values are one key; STRICT tables reject mismatches.
func TestSQ7_IntegerAffinityMakes12AndQuoted12OneKey(t *testing.T) {
	t.Parallel()
	_, s := sqTags(t, "")
	s.exec("CREATE TABLE i (k INTEGER UNIQUE)")
	s.exec("CREATE TABLE tx (k TEXT UNIQUE)")
	s.exec("CREATE TABLE b (k BLOB UNIQUE)")
	s.exec("CREATE TABLE u (k UNIQUE)")
	s.exec("CREATE TABLE st (k INTEGER UNIQUE) STRICT")
	s.exec("CREATE TABLE v (k VARCHAR(3) UNIQUE)")
	lit := func(tb, v string) int { return sqCode(s.try("INSERT INTO " + tb + " (k) VALUES (" + v + ")")) }

	want(t, "INTEGER: 12", lit("i", "12"), 0)
	for _, v := range []string{"'12'", "' 12 '", "'12.0'", "'1.2e1'"} {
		want(t, "INTEGER: "+v+" after 12", lit("i", v), sqliteConstraintUniq)
	}
	want(t, "INTEGER: '12abc'", lit("i", "'12abc'"), 0)
	want(t, "INTEGER: typeof '12abc'", s.str("SELECT typeof(k) FROM i WHERE k = '12abc'"), "text")
	want(t, "INTEGER: NULL", lit("i", "NULL"), 0)
	want(t, "INTEGER: NULL again", lit("i", "NULL"), 0)

	want(t, "TEXT: '12'", lit("tx", "'12'"), 0)
	want(t, "TEXT: 12 after '12'", lit("tx", "12"), sqliteConstraintUniq)
	want(t, "TEXT: 12.0 after '12'", lit("tx", "12.0"), 0)
	want(t, "TEXT: typeof 12.0", s.str("SELECT k FROM tx WHERE k = '12.0'"), "12.0")

	for _, tb := range []string{"b", "u"} {
		want(t, tb+": 12", lit(tb, "12"), 0)
		want(t, tb+": '12' after 12", lit(tb, "'12'"), 0)
	}

	want(t, "STRICT INTEGER: 12", lit("st", "12"), 0)
	want(t, "STRICT INTEGER: '12' after 12", lit("st", "'12'"), sqliteConstraintUniq)
	want(t, "STRICT INTEGER: 'abc'", lit("st", "'abc'"), sqliteConstraintType)
	want(t, "STRICT INTEGER: '12abc'", lit("st", "'12abc'"), sqliteConstraintType)

	want(t, "VARCHAR(3): 'abcdef'", lit("v", "'abcdef'"), 0)
	want(t, "VARCHAR(3): stored", s.str("SELECT k FROM v"), "abcdef")

	// Go values through the driver: a Go string "12" and int 12.
	s.exec("CREATE TABLE gi (k INTEGER UNIQUE)")
	if err := s.try("INSERT INTO gi (k) VALUES (?)", "12"); err != nil {
		t.Fatal(err)
	}
	want(t, "INTEGER: Go int 12 after Go string \"12\"", sqCode(s.try("INSERT INTO gi (k) VALUES (?)", 12)), sqliteConstraintUniq)

	// :memory: is one database per connection.
	mem, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mem.Close() })
	m1, m2 := sqSession(t, mem), sqSession(t, mem)
	m1.exec("CREATE TABLE only_here (k)")
	err = m2.try("SELECT * FROM only_here")
	if err == nil || !strings.Contains(err.Error(), "no such table") {
		t.Fatalf(":memory: second connection: %v, want no such table", err)
	}
	t.Logf(":memory: second connection: %v", err)
}

// TestSQ10_AnalyzedEmptyTableKeepsUniqueIndexPlans: ANALYZE of an empty
// table, then growth to 100,000 rows without another ANALYZE, as a
// migration leaves a table: the lookups the library sends (the find, the
// UPDATE, the insert's conflict check) use the unique index at every
// size. A prepared statement keeps the plan it was compiled with until
// the schema or the statistics change, so the plan EXPLAIN QUERY PLAN
// shows here, with the same statistics, is the one a statement prepared
// on the empty table runs.
func TestSQ10_AnalyzedEmptyTableKeepsUniqueIndexPlans(t *testing.T) {
	t.Parallel()
	_, s := sqTags(t, "")
	s.exec("ANALYZE")
	stat, err := s.rows("SELECT tbl || ':' || coalesce(idx, '') || ':' || stat FROM sqlite_stat1")
	if err != nil {
		t.Fatal(err)
	}
	// ANALYZE writes no statistics for an empty table: the planner's
	// defaults apply, and they favour the unique index.
	t.Logf("sqlite_stat1 after ANALYZE of the empty table: %q", stat)
	plans := func(when string) {
		for _, q := range []string{
			"SELECT id, name, n FROM tags WHERE name = ?",
			"UPDATE tags SET n = n + 1 WHERE name = ? RETURNING id, name, n",
		} {
			rows := s.mustRows("EXPLAIN QUERY PLAN "+q, "k")
			plan := strings.Join(rows, "; ")
			t.Logf("%s: %s -> %s", when, q, plan)
			if !strings.Contains(plan, "USING INDEX sqlite_autoindex_tags_1 (name=?)") {
				t.Errorf("%s: %s: plan %q does not search the unique index", when, q, plan)
			}
		}
	}
	plans("empty, analyzed")
	st, err := s.c.PrepareContext(s.ctx, "SELECT id FROM tags WHERE name = ?")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for range 10 {
		var id int64
		if err := st.QueryRowContext(s.ctx, "k").Scan(&id); err != sql.ErrNoRows {
			t.Fatalf("lookup on the empty table: %v", err)
		}
	}
	s.exec("INSERT INTO tags (name) WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000) SELECT 'k' || x FROM c")
	plans("grown to 100,000 rows, not analyzed again")
	var id int64
	if err := st.QueryRowContext(s.ctx, "k99999").Scan(&id); err != nil || id != 99999 {
		t.Fatalf("the statement prepared on the empty table: id %d, %v", id, err)
	}
	want(t, "statistics unchanged by the growth", strings.Join(s.mustRows("SELECT tbl || ':' || coalesce(idx, '') || ':' || stat FROM sqlite_stat1"), ","), strings.Join(stat, ","))
}
