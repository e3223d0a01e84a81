package facts

import (
	"strings"
	"testing"
	"time"
)

// TestSQ8_PartialIndexArbitration: SQLite's ON CONFLICT (name) needs the
// partial index's WHERE, and, like PostgreSQL (PG-3), a non-partial
// unique index on the same column takes part anyway, so an upsert then
// updates a soft-deleted row.
func TestSQ8_PartialIndexArbitration(t *testing.T) {
	t.Parallel()
	db := sqliteDB(t, "")
	s := sqSession(t, db)
	s.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL, deleted_at TEXT, n INTEGER NOT NULL DEFAULT 0)")
	s.exec("CREATE UNIQUE INDEX t_live ON t (name) WHERE deleted_at IS NULL")
	if err := s.try("INSERT INTO t (name) VALUES ('a') ON CONFLICT (name) DO NOTHING"); err == nil || !strings.Contains(err.Error(), "does not match any PRIMARY KEY or UNIQUE constraint") {
		t.Fatalf("ON CONFLICT (name) without the predicate: %v", err)
	}
	up := "INSERT INTO t (name) VALUES ('a') ON CONFLICT (name) WHERE deleted_at IS NULL DO UPDATE SET n = n + 1"
	s.exec(up)
	s.exec(up)
	// The target's WHERE is compared as an expression: parentheses and case
	// do not matter.
	s.exec("INSERT INTO t (name) VALUES ('a') ON CONFLICT (name) WHERE (DELETED_AT is null) DO UPDATE SET n = n + 1")
	want(t, "n after three upserts", s.int("SELECT n FROM t WHERE name = 'a'"), 2)
	s.exec("UPDATE t SET deleted_at = 'gone' WHERE name = 'a'")
	s.exec(up)
	want(t, "rows after a soft delete and an upsert", s.int("SELECT COUNT(*) FROM t WHERE name = 'a'"), 2)
	want(t, "the SQL SQLite keeps", s.str("SELECT sql FROM sqlite_schema WHERE name = 't_live'"), "CREATE UNIQUE INDEX t_live ON t (name) WHERE deleted_at IS NULL")

	s.exec("CREATE TABLE f (id INTEGER PRIMARY KEY, name TEXT NOT NULL, deleted_at TEXT, n INTEGER NOT NULL DEFAULT 0)")
	s.exec("CREATE UNIQUE INDEX f_live ON f (name) WHERE deleted_at IS NULL")
	s.exec("CREATE UNIQUE INDEX f_all ON f (name)")
	s.exec("INSERT INTO f (name, deleted_at) VALUES ('b', 'gone')")
	s.exec("INSERT INTO f (name) VALUES ('b') ON CONFLICT (name) WHERE deleted_at IS NULL DO UPDATE SET n = n + 100")
	want(t, "with a full index too, the upsert updated the soft-deleted row", s.str("SELECT n || '|' || deleted_at FROM f"), "100|gone")
}

// TestSQ9_TimeFormats: modernc.org/sqlite writes a time.Time as text, by
// default t.String(), whose zone abbreviation for a zone with only an
// offset ("+0530") its own reader does not parse: the value comes back as
// a string, which a time.Time cannot scan. The same time in UTC, and any
// time with _time_format=sqlite, comes back.
func TestSQ9_TimeFormats(t *testing.T) {
	t.Parallel()
	offset, err := time.Parse(time.RFC3339, "2024-03-10T12:34:56.123456+05:30")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		params string
		value  time.Time
		reads  bool
	}{
		{"", offset, false},
		{"", offset.UTC(), true},
		{"_time_format=sqlite", offset, true},
	} {
		s := sqSession(t, sqliteDB(t, c.params))
		s.exec("CREATE TABLE t (k DATETIME NOT NULL UNIQUE)")
		s.exec("INSERT INTO t VALUES (?)", c.value)
		var got time.Time
		err := s.c.QueryRowContext(s.ctx, "SELECT k FROM t").Scan(&got)
		t.Logf("%q, %v: stored %q, scan: %v", c.params, c.value, s.str("SELECT k || '' FROM t"), err)
		if (err == nil) != c.reads || err == nil && !got.Equal(c.value) {
			t.Fatalf("%q, %v: got %v, %v; want read back: %v", c.params, c.value, got, err, c.reads)
		}
	}
}

// TestMY17_IODKUWithTheIDGiven: an IODKU that gives the existing row's id
// reserves no AUTO_INCREMENT value (without it every update of an existing
// key takes one, MY-1), and a subquery that reads the id inside the INSERT
// share-locks the row it reads, at REPEATABLE READ and at READ COMMITTED
// alike (a FOR UPDATE NOWAIT of it fails, a LOCK IN SHARE MODE NOWAIT
// does not).
func TestMY17_IODKUWithTheIDGiven(t *testing.T) {
	t.Parallel()
	db := myDB(t)
	tb := table(t, db, "my17", "CREATE TABLE %s (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(32) NOT NULL UNIQUE, n INT NOT NULL DEFAULT 0) ENGINE=InnoDB")
	s := mySession(t, db)
	s.exec("INSERT INTO " + tb + " (name) VALUES ('a'), ('b')")
	s.exec("INSERT INTO " + tb + " (name, n) VALUES ('a', 1) ON DUPLICATE KEY UPDATE n = n + 1")
	withID := "INSERT INTO " + tb + " (id, name, n) VALUES ((SELECT x.id FROM " + tb + " x WHERE x.name = ?), ?, 1) ON DUPLICATE KEY UPDATE n = n + 1"
	s.exec(withID, "a", "a")
	s.exec(withID, "a", "a")
	s.exec(withID, "c", "c")
	want(t, "id of the next new row after one plain and two id-giving updates", s.int("SELECT id FROM "+tb+" WHERE name = 'c'"), 4)

	for _, iso := range []string{"REPEATABLE-READ", "READ-COMMITTED"} {
		s1, s2 := mySession(t, db), mySession(t, db)
		s1.exec("SET SESSION tx_isolation = '" + iso + "'")
		s1.exec("BEGIN")
		// The subquery reads row b while the upsert writes a new key.
		s1.exec("INSERT INTO "+tb+" (id, name, n) VALUES ((SELECT x.id + 100 FROM "+tb+" x WHERE x.name = 'b'), ?, 1) ON DUPLICATE KEY UPDATE n = n + 1", "d-"+iso)
		want(t, iso+": FOR UPDATE NOWAIT of the row the subquery read", myCode(s2.try("SELECT id FROM "+tb+" WHERE name = 'b' FOR UPDATE NOWAIT")), "1205/HY000")
		want(t, iso+": LOCK IN SHARE MODE NOWAIT of it", myCode(s2.try("SELECT id FROM "+tb+" WHERE name = 'b' LOCK IN SHARE MODE NOWAIT")), "")
		s1.exec("ROLLBACK")
	}
}
