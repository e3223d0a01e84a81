// Package mysql is the getorcreate dialect for MariaDB 10.5+ and MySQL 8.0+
// through github.com/go-sql-driver/mysql, which it imports. It detects which
// server it talks to: MariaDB has INSERT ... RETURNING, MySQL does not, and
// the statements differ accordingly (only MariaDB is tested here; the MySQL
// paths run in the test suite against MariaDB with RETURNING switched off).
package mysql

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/getorcreate/getorcreate/dialect"
	"github.com/getorcreate/getorcreate/dialect/internal/sqlbuild"
	gomysql "github.com/go-sql-driver/mysql"
)

// Dialect is the MariaDB/MySQL dialect.
var Dialect dialect.Dialect = myDialect{}

// NoReturning is the dialect with INSERT ... RETURNING switched off: the
// statements used for MySQL, which lacks it. Tests run it against MariaDB.
var NoReturning dialect.Dialect = myDialect{noReturning: true}

func init() {
	dialect.Register(Dialect, func(d driver.Driver) bool {
		_, ok := d.(*gomysql.MySQLDriver)
		if !ok {
			_, ok = d.(gomysql.MySQLDriver)
		}
		return ok
	})
}

type myDialect struct{ noReturning bool }

var _ dialect.Dialect = myDialect{}

func (myDialect) Name() string { return "mysql" }

// Quote quotes each dot-separated part of ident with backquotes.
func (myDialect) Quote(ident string) string { return quote(ident) }

func quote(ident string) string { return sqlbuild.QuoteWith(ident, '`') }

// quoteColumn quotes a column or index name, whole.
func quoteColumn(ident string) string { return sqlbuild.QuotePart(ident, '`') }

// Detect asks the server for a system variable, which only MySQL and
// MariaDB spell @@name.
func (myDialect) Detect(ctx context.Context, q dialect.Querier) bool {
	return sqlbuild.Answers(ctx, q, `SELECT @@version`)
}

// isMariaDB reads the server version Inspect recorded.
func isMariaDB(version string) bool { return strings.Contains(strings.ToLower(version), "mariadb") }

// returning reports whether the plans may use INSERT ... RETURNING:
// MariaDB 10.5+ has it, MySQL does not.
func (d myDialect) returning(t *dialect.Table) bool {
	return isMariaDB(t.Schema.Version) && !d.noReturning
}

func splitName(table string) (schema *string, name string) {
	if i := strings.LastIndexByte(table, '.'); i >= 0 {
		s := table[:i]
		return &s, table[i+1:]
	}
	return nil, table
}

func (d myDialect) Inspect(ctx context.Context, q dialect.Querier, table string) (*dialect.Schema, dialect.Features, error) {
	f := dialect.Features{MaxParams: 65535, PrepareOnce: true}
	s := &dialect.Schema{Table: table}
	if err := sqlbuild.QueryEach(ctx, q, `SELECT VERSION()`, nil, func(r dialect.Rows) error { return r.Scan(&s.Version) }); err != nil {
		return nil, f, err
	}
	var maj, min int
	fmt.Sscanf(s.Version, "%d.%d", &maj, &min)
	if isMariaDB(s.Version) {
		if maj < 10 || (maj == 10 && min < 5) {
			return nil, f, fmt.Errorf("MariaDB %s is too old: getorcreate needs 10.5", s.Version)
		}
		f.UpdateNeedsTx = d.noReturning
	} else if maj < 8 {
		return nil, f, fmt.Errorf("MySQL %s is too old: getorcreate needs 8.0", s.Version)
	} else {
		f.UpdateNeedsTx = true
	}
	schema, name := splitName(table)
	err := sqlbuild.QueryEach(ctx, q, `
SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE = 'YES',
       (COLUMN_DEFAULT IS NOT NULL AND COLUMN_DEFAULT <> 'NULL') OR EXTRA LIKE '%auto_increment%' OR EXTRA LIKE '%GENERATED%',
       EXTRA LIKE '%auto_increment%', COALESCE(COLLATION_NAME, '')
FROM information_schema.COLUMNS
WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?
ORDER BY ORDINAL_POSITION`, []any{schema, name}, func(r dialect.Rows) error {
		var c dialect.Column
		if err := r.Scan(&c.Name, &c.Type, &c.Nullable, &c.HasDefault, &c.Identity, &c.Collation); err != nil {
			return err
		}
		describe(&c)
		s.Columns = append(s.Columns, c)
		return nil
	})
	if err != nil {
		return nil, f, err
	}
	if len(s.Columns) == 0 {
		return nil, f, dialect.ErrNoTable
	}
	if f.Refusal, err = strictMode(ctx, q); err != nil {
		return nil, f, err
	}
	isolation := `SELECT @@SESSION.transaction_isolation`
	if isMariaDB(s.Version) {
		isolation = `SELECT @@SESSION.tx_isolation` // transaction_isolation only from 11.1
	}
	if err := sqlbuild.QueryEach(ctx, q, isolation, nil, func(r dialect.Rows) error { return r.Scan(&s.Isolation) }); err != nil {
		return nil, f, err
	}
	if err := probeTime(ctx, q, s); err != nil {
		return nil, f, err
	}
	err = sqlbuild.QueryEach(ctx, q, `
SELECT INDEX_NAME, COLUMN_NAME, SUB_PART IS NOT NULL
FROM information_schema.STATISTICS
WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? AND NON_UNIQUE = 0
ORDER BY INDEX_NAME, SEQ_IN_INDEX`, []any{schema, name}, func(r dialect.Rows) error {
		var idx string
		var col *string
		var prefix bool
		if err := r.Scan(&idx, &col, &prefix); err != nil {
			return err
		}
		if n := len(s.Unique); n == 0 || s.Unique[n-1].Name != idx {
			s.Unique = append(s.Unique, dialect.Index{Name: idx, Primary: idx == "PRIMARY"})
		}
		ix := &s.Unique[len(s.Unique)-1]
		switch {
		case col == nil:
			ix.Expression = true
		case prefix:
			// A prefix index (name(10)) is unique on the prefix only.
			ix.Expression = true
			ix.Columns = append(ix.Columns, *col)
		default:
			ix.Columns = append(ix.Columns, *col)
		}
		return nil
	})
	if err != nil {
		return nil, f, err
	}
	s.Triggers, err = sqlbuild.QueryStrings(ctx, q, `SELECT TRIGGER_NAME FROM information_schema.TRIGGERS
WHERE EVENT_OBJECT_SCHEMA = COALESCE(?, DATABASE()) AND EVENT_OBJECT_TABLE = ? ORDER BY TRIGGER_NAME`, schema, name)
	return s, f, err
}

// describe fills in what a column of COLUMN_TYPE c.Type ("varchar(32)",
// "int(10) unsigned", "datetime(6)") does to a value.
func describe(c *dialect.Column) {
	t := strings.ToLower(c.Type)
	base, args, _ := strings.Cut(t, "(")
	base = strings.TrimSpace(strings.TrimSuffix(base, " unsigned"))
	args, _, _ = strings.Cut(args, ")")
	n, _ := strconv.Atoi(strings.TrimSpace(strings.Split(args, ",")[0]))
	switch base {
	case "varchar", "char":
		c.Kind, c.Length = dialect.KindText, n
		if base == "char" {
			// CHAR(n) is padded on the way in and comes back without
			// any trailing spaces (unless PAD_CHAR_TO_FULL_LENGTH).
			c.Fixed = dialect.TrimsSpaces
		}
	case "tinytext", "text", "mediumtext", "longtext":
		c.Kind = dialect.KindText
	case "varbinary", "binary":
		c.Kind, c.Length = dialect.KindBinary, n
		if base == "binary" {
			c.Fixed = dialect.PadsZeros
		}
	case "tinyblob", "blob", "mediumblob", "longblob":
		c.Kind = dialect.KindBinary
	case "tinyint", "smallint", "mediumint", "int", "integer", "bigint":
		c.Kind, c.Unsigned = dialect.KindInt, strings.Contains(t, "unsigned")
		c.Bits = map[string]int{"tinyint": 8, "smallint": 16, "mediumint": 24, "int": 32, "integer": 32, "bigint": 64}[base]
	case "decimal", "numeric":
		c.Kind = dialect.KindDecimal
	case "float", "double", "real":
		c.Kind, c.Bits = dialect.KindFloat, 64
		if base == "float" && (n == 0 || n <= 24) {
			c.Bits = 32
		}
	case "datetime", "timestamp":
		c.Kind, c.Digits = dialect.KindTime, n
	case "date":
		c.Kind = dialect.KindDate
	}
}

// strictMode refuses a session whose sql_mode is not strict: there an
// over-long value is cut and a string stored into a number converted,
// each with only a warning (MY-14, MY-16), so two keys can become one
// stored key and a call can return another key's row. go-sql-driver sets
// a sql_mode given in the DSN on every connection it opens, which is the
// fix that reaches every connection of the pool.
func strictMode(ctx context.Context, q dialect.Querier) (*dialect.Refusal, error) {
	var session, global string
	if err := sqlbuild.QueryEach(ctx, q, `SELECT @@SESSION.sql_mode, @@GLOBAL.sql_mode`, nil,
		func(r dialect.Rows) error { return r.Scan(&session, &global) }); err != nil {
		return nil, err
	}
	if isStrict(session) {
		return nil, nil
	}
	mode := "STRICT_TRANS_TABLES"
	if session != "" {
		mode += "," + session
	}
	fix := fmt.Sprintf("add sql_mode='%s' to the DSN (go-sql-driver sets it on every connection it opens)", mode)
	if isStrict(global) {
		fix += "; the server's global sql_mode is strict, so something sets this session's: remove that"
	} else {
		fix += ", or make it the server's default: SET GLOBAL sql_mode = CONCAT(@@GLOBAL.sql_mode, ',STRICT_TRANS_TABLES') (connections opened after it)"
	}
	return &dialect.Refusal{
		Problem: fmt.Sprintf("the connection's sql_mode %q is not strict: the server would cut a key that is too long and convert a string key to a number with only a warning, so two keys could become one row and a call could return another key's row", session),
		Fix:     fix,
	}, nil
}

func isStrict(mode string) bool {
	for _, m := range strings.Split(strings.ToUpper(mode), ",") {
		if m == "STRICT_TRANS_TABLES" || m == "STRICT_ALL_TABLES" {
			return true
		}
	}
	return false
}

// probeTime asks how this connection returns DATETIME values: without
// go-sql-driver's parseTime they arrive as text, which a time.Time cannot
// scan; and a TIMESTAMP is converted between UTC and the session's
// time_zone on the server while the driver writes and reads wall clocks
// in its loc, so the two must agree or every TIMESTAMP is stored as
// another instant. FROM_UNIXTIME gives an instant as the session's wall
// clock; read back through the driver it is the same instant only if
// they agree, in winter and in summer.
func probeTime(ctx context.Context, q dialect.Querier, s *dialect.Schema) error {
	const summer = 1720000000
	var winter, july any
	var zone string
	var problem, timestampProblem string
	if err := sqlbuild.QueryEach(ctx, q, `SELECT FROM_UNIXTIME(0), FROM_UNIXTIME(`+strconv.Itoa(summer)+`), @@SESSION.time_zone`, nil,
		func(r dialect.Rows) error { return r.Scan(&winter, &july, &zone) }); err != nil {
		return err
	}
	w, ok1 := winter.(time.Time)
	j, ok2 := july.(time.Time)
	switch {
	case !ok1 || !ok2:
		problem = "the connection returns DATE, DATETIME and TIMESTAMP values as text, which a time.Time field cannot hold: add parseTime=true to the DSN"
	case w.Unix() != 0 || j.Unix() != summer:
		timestampProblem = fmt.Sprintf("the session's time_zone (%s) is not the driver's loc (%s): the server would store each TIMESTAMP as another instant; add loc=UTC&time_zone=%%27%%2B00%%3A00%%27 to the DSN, or use DATETIME", zone, w.Location())
	}
	for i := range s.Columns {
		c := &s.Columns[i]
		if c.Kind != dialect.KindTime && c.Kind != dialect.KindDate {
			continue
		}
		c.TimeProblem = problem
		if problem == "" && strings.HasPrefix(strings.ToLower(c.Type), "timestamp") {
			c.TimeProblem = timestampProblem
		}
	}
	return nil
}

func myErr(err error) *gomysql.MySQLError {
	var e *gomysql.MySQLError
	if errors.As(err, &e) {
		return e
	}
	return nil
}

// class maps MySQL/MariaDB error numbers, and then the SQLSTATE the
// server sends with every error: a trigger's SIGNAL SQLSTATE '40001'
// arrives as error 1644 with state 40001, and is a serialization failure
// like any other.
func class(err error) dialect.Class {
	if errors.Is(err, gomysql.ErrInvalidConn) {
		return dialect.ClassConnection
	}
	e := myErr(err)
	if e == nil {
		return dialect.ClassOther
	}
	switch e.Number {
	case 1040, 1047, 1053, 1180, 1927, 2006, 2013:
		// Too many connections; WSREP has not yet prepared the node (a
		// Galera node outside the primary component); server shutdown in
		// progress; an error during COMMIT (a Galera node that lost the
		// primary component answers it: whether the commit took effect is
		// not known); connection killed; server gone away; lost connection
		// during query.
		return dialect.ClassConnection
	case 1062, 1586: // ER_DUP_ENTRY, ER_DUP_ENTRY_WITH_KEY_NAME
		return dialect.ClassUnique
	case 1213: // ER_LOCK_DEADLOCK
		return dialect.ClassDeadlock
	case 1205: // ER_LOCK_WAIT_TIMEOUT
		return dialect.ClassBusy
	case 1020, 1614: // ER_CHECKREAD (record changed since last read), ER_XA_RBDEADLOCK
		return dialect.ClassSerialization
	case 1406: // ER_DATA_TOO_LONG
		return dialect.ClassTooLong
	case 1366, 1264, 1265, 1292, 1367: // incorrect value, out of range, truncated
		return dialect.ClassInvalidValue
	case 1048: // ER_BAD_NULL_ERROR
		return dialect.ClassNotNull
	}
	switch string(e.SQLState[:]) {
	case "40001":
		return dialect.ClassSerialization
	case "22001":
		return dialect.ClassTooLong
	case "22003", "22007", "22008", "22018", "22P02":
		return dialect.ClassInvalidValue
	}
	return dialect.ClassOther
}

// mayHaveRun reports whether a statement that met a lost connection may
// have run: go-sql-driver's ErrInvalidConn means a read or write of the
// command failed part way; a refused connection (1040) and a Galera node
// that refuses statements (1047) ran nothing.
func mayHaveRun(err error) bool {
	if e := myErr(err); e != nil {
		return e.Number != 1040 && e.Number != 1047
	}
	return true
}

var interpret = sqlbuild.Interpreter(class, constraint, mayHaveRun)

// Interpret classifies a driver error by its error number and SQLSTATE.
func (myDialect) Interpret(err error) error { return interpret(err) }

// isDuplicate reports a duplicate-key error straight from the driver.
func isDuplicate(err error) bool { return class(err) == dialect.ClassUnique }

// constraint names the index in a duplicate-entry error. The server gives
// it only in the message ("... for key 'name'"), so this reads the message;
// the error's class comes from its number.
func constraint(err error) string {
	e := myErr(err)
	if e == nil {
		return ""
	}
	i := strings.LastIndex(e.Message, " for key '")
	if i < 0 {
		return ""
	}
	name := strings.TrimSuffix(e.Message[i+len(" for key '"):], "'")
	if j := strings.LastIndexByte(name, '.'); j >= 0 { // MySQL 8 prefixes the table
		name = name[j+1:]
	}
	return name
}

// LedgerDDL: request ids compare byte for byte (utf8mb4_nopad_bin: no
// case folding, trailing spaces count).
func (myDialect) LedgerDDL(table string) []string {
	return []string{"CREATE TABLE IF NOT EXISTS " + quote(table) + " (request_id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL PRIMARY KEY, fingerprint CHAR(64) NOT NULL, outcome LONGTEXT NOT NULL, created_unix_ms BIGINT NOT NULL, INDEX (created_unix_ms)) ENGINE=InnoDB"}
}

func (myDialect) CreateIndexDDL(table string, cols []string) string {
	return fmt.Sprintf("ALTER TABLE %s ADD UNIQUE INDEX %s (%s)", quote(table), quoteColumn(sqlbuild.IndexName(table, cols)), sqlbuild.QuoteList(quoteColumn, cols))
}

var syntax = sqlbuild.Syntax{
	Placeholder: func(int) string { return "?" },
	Quote:       quoteColumn,
	Existing:    func(b *sqlbuild.Builder, col string) { b.Ident(col) },
	Proposed:    func(b *sqlbuild.Builder, col string) { b.WriteString("VALUES("); b.Ident(col); b.WriteString(")") },
	Greatest:    "GREATEST",
	Least:       "LEAST",
}

// The marker that says which way an upsert went: the VALUES list sets
// LAST_INSERT_ID(1) as the row is built, before any duplicate is found; the
// ON DUPLICATE KEY UPDATE path then sets it to 0 for our own key and to the
// largest signed BIGINT (the largest value LAST_INSERT_ID keeps here, and
// one no AUTO_INCREMENT column reaches in practice) when the
// duplicate was on another unique index (whose row is left as it was).
// RETURNING LAST_INSERT_ID() (or the OK packet's insert id, without
// RETURNING) reads it back. LAST_INSERT_ID(expr) is documented to return
// expr and remember it for the connection.
const (
	markInserted uint64 = 1
	markUpdated  uint64 = 0
	markOther    uint64 = math.MaxInt64
)

type plan struct {
	t                  *dialect.Table
	returning          bool
	find, findLocked   sqlbuild.Stmt
	update             sqlbuild.Stmt
	insert, upsert     sqlbuild.Stmt
	upsertOwnID        sqlbuild.Stmt // see buildUpsertOwnID; "" when it does not apply
	arbiter            string
	otherUniqueIndexes []string
}

// Compile builds:
//
//	find:       SELECT cols FROM t WHERE key = ?
//	findLocked: the same, LOCK IN SHARE MODE: a locking read sees the latest
//	            committed row even in a REPEATABLE READ snapshot (MY-8)
//	insert:     INSERT INTO t (...) VALUES (...) [RETURNING cols]
//	upsert:     INSERT INTO t (...) VALUES (IF(LAST_INSERT_ID(1), ?, NULL), ...)
//	            ON DUPLICATE KEY UPDATE k = IF(LAST_INSERT_ID(IF(mine, 0, other)), k, k),
//	            c = IF(mine, expr, c), ... [RETURNING cols, LAST_INSERT_ID()]
//
// where mine is (k <=> VALUES(k) AND ...): with several unique indexes an
// upsert can hit another index's row (MY-1); the guard leaves that row
// unchanged and the marker reports it.
func (d myDialect) Compile(t *dialect.Table, s *dialect.Shape, _ dialect.Features) (dialect.Plan, error) {
	p, err := d.compile(t, s)
	if err != nil {
		return nil, err
	}
	return sqlbuild.Classify(p, interpret), nil
}

func (d myDialect) compile(t *dialect.Table, s *dialect.Shape) (*plan, error) {
	p := &plan{t: t, returning: d.returning(t), arbiter: t.Arbiter.Name, otherUniqueIndexes: reachable(t, s)}
	all := sqlbuild.Seq(len(t.Columns))
	table := quote(t.Name)

	b := sqlbuild.NewBuilder(&syntax, t)
	b.WriteString("SELECT ")
	b.List("", t.Columns, all)
	b.WriteString(" FROM " + table + " WHERE ")
	b.KeyMatch("", s.NullKeys)
	p.find = b.Stmt()
	p.findLocked = sqlbuild.Stmt{SQL: p.find.SQL + " LOCK IN SHARE MODE", Refs: p.find.Refs}

	b = sqlbuild.NewBuilder(&syntax, t)
	insertValues(b, t, s, 1, false)
	if p.returning {
		b.WriteString(" RETURNING ")
		b.List("", t.Columns, all)
	}
	p.insert = b.Stmt()

	if len(s.Updates) > 0 {
		b = sqlbuild.NewBuilder(&syntax, t)
		insertValues(b, t, s, 1, true)
		b.WriteString(" ON DUPLICATE KEY UPDATE ")
		writeMarkerAndUpdates(b, t, s)
		p.update = buildUpdate(t, s)
		if p.returning {
			b.WriteString(" RETURNING ")
			b.List("", t.Columns, all)
			b.WriteString(", LAST_INSERT_ID()")
		}
		p.upsert = b.Stmt()
		p.upsertOwnID = buildUpsertOwnID(t, s, p.returning)
	}
	return p, nil
}

// buildUpsertOwnID is the upsert with the key's own id given, when the row
// exists, so that an update of an existing key takes no AUTO_INCREMENT
// value: InnoDB reserves one for every IODKU whose id it must generate,
// also when it then finds the duplicate and updates (MY-1), and a busy
// table runs through its ids. With the id given it reserves none:
//
//	INSERT INTO t (id, ...) VALUES (IF(LAST_INSERT_ID(1), (SELECT x.id FROM t x WHERE x.key = ?), NULL), ...)
//	ON DUPLICATE KEY UPDATE ... RETURNING ..., LAST_INSERT_ID()
//
// A new key's subquery is NULL, and the id is generated as before. But
// InnoDB makes a read inside an INSERT a shared locking read (MY-17), and
// at REPEATABLE READ, where that lock covers the gap too, 32 upserts of a
// hot key deadlocked (1213) on 2–22% of calls here; at READ COMMITTED, in
// six runs of 3,200 calls, none did. So the plan uses it only where the
// connection's default isolation is READ COMMITTED (or lower) and only in
// the library's own calls, whose isolation that is; a caller's transaction
// may be at any level. MariaDB only: the MySQL statements (no RETURNING)
// are left as they are, unmeasured.
func buildUpsertOwnID(t *dialect.Table, s *dialect.Shape, returning bool) sqlbuild.Stmt {
	switch t.Schema.Isolation {
	case "READ-COMMITTED", "READ-UNCOMMITTED":
	default:
		return sqlbuild.Stmt{}
	}
	id := -1
	for i, col := range t.Columns {
		if c := t.Schema.Column(col); c != nil && c.Identity {
			id = i
		}
	}
	if !returning || id < 0 || slices.Contains(s.Insert, id) {
		return sqlbuild.Stmt{}
	}
	withID := *s
	withID.Insert = append([]int{id}, s.Insert...)
	table := quote(t.Name)
	b := sqlbuild.NewBuilder(&syntax, t)
	b.WriteString("INSERT INTO " + table + " (")
	b.List("", t.Columns, withID.Insert)
	b.WriteString(") VALUES (IF(LAST_INSERT_ID(1), (SELECT goc_x.")
	b.Ident(t.Columns[id])
	b.WriteString(" FROM " + table + " goc_x WHERE ")
	b.KeyMatch("goc_x.", s.NullKeys)
	b.WriteString("), NULL)")
	for _, pos := range s.Insert {
		b.WriteString(", ")
		b.Value(pos)
	}
	b.WriteString(") ON DUPLICATE KEY UPDATE ")
	// The insert now gives the id, so the primary key is an index the
	// proposed row can collide on: the guards apply (reachable).
	writeMarkerAndUpdates(b, t, &withID)
	b.WriteString(" RETURNING ")
	b.List("", t.Columns, sqlbuild.Seq(len(t.Columns)))
	b.WriteString(", LAST_INSERT_ID()")
	return b.Stmt()
}

func (p *plan) Statements() []dialect.Statement {
	st := []dialect.Statement{
		{Path: dialect.PathGet, Role: "find", SQL: p.find.SQL},
		{Path: dialect.PathGet, Role: "insert", SQL: p.insert.SQL},
		{Path: dialect.PathGet, Role: "locking read after a duplicate key", SQL: p.findLocked.SQL},
	}
	if p.upsert.SQL != "" {
		st = append(st, dialect.Statement{Path: dialect.PathUpdate, Role: "upsert", SQL: p.upsert.SQL})
		if p.upsertOwnID.SQL != "" {
			st = append(st, dialect.Statement{Path: dialect.PathUpdate, Role: "upsert in the library's own calls, giving an existing key's id (READ COMMITTED)", SQL: p.upsertOwnID.SQL})
		}
		if !p.returning {
			st = append(st, dialect.Statement{Path: dialect.PathUpdate, Role: "read back the row (no RETURNING)", SQL: p.findLocked.SQL})
		}
		st = append(st, dialect.Statement{Path: dialect.PathUpdate, Role: "update, after a duplicate on another unique index", SQL: p.update.SQL})
	}
	return st
}

// updateSyntax is for a plain UPDATE, where the proposed row is the call's
// own bound values.
var updateSyntax = func() sqlbuild.Syntax {
	s := syntax
	s.Proposed = func(b *sqlbuild.Builder, col string) { b.Value(b.Pos(col)) }
	return s
}()

// buildUpdate is UPDATE t SET ... WHERE key = ?.
func buildUpdate(t *dialect.Table, s *dialect.Shape) sqlbuild.Stmt {
	b := sqlbuild.NewBuilder(&updateSyntax, t)
	b.WriteString("UPDATE " + quote(t.Name) + " SET ")
	b.Assignments(s.Updates, nil)
	b.WriteString(" WHERE ")
	b.KeyMatch("", s.NullKeys)
	return b.Stmt()
}

// mine writes (k <=> VALUES(k) AND ...): true when the duplicate-key update
// is on the row with our key, not on another unique index's row.
func mine(b *sqlbuild.Builder) {
	t := b.Table
	for i, pos := range t.Key {
		if i > 0 {
			b.WriteString(" AND ")
		}
		b.Ident(t.Columns[pos])
		b.WriteString(" <=> VALUES(")
		b.Ident(t.Columns[pos])
		b.WriteString(")")
	}
}

// writeMarkerAndUpdates writes the ON DUPLICATE KEY UPDATE list: the marker
// assignment (a no-op on the first key column), then the guarded updates.
func writeMarkerAndUpdates(b *sqlbuild.Builder, t *dialect.Table, s *dialect.Shape) {
	k := t.Columns[t.Key[0]]
	b.Ident(k)
	b.WriteString(" = IF(LAST_INSERT_ID(IF(")
	mine(b)
	b.WriteString(", 0, " + strconv.FormatUint(markOther, 10) + ")), ")
	b.Ident(k)
	b.WriteString(", ")
	b.Ident(k)
	b.WriteString("), ")
	var guard func(*sqlbuild.Builder)
	if len(reachable(t, s)) > 0 {
		guard = mine
	}
	b.Assignments(s.Updates, guard)
}

// reachable names the unique indexes other than the key that an insert of
// this shape can collide on: all of them, except those made only of
// AUTO_INCREMENT columns that the insert leaves to the database.
func reachable(t *dialect.Table, s *dialect.Shape) []string {
	inserted := map[string]bool{}
	for _, pos := range s.Insert {
		inserted[t.Columns[pos]] = true
	}
	var names []string
	for _, ix := range t.OtherUnique {
		generated := len(ix.Columns) > 0
		for _, c := range ix.Columns {
			col := t.Schema.Column(c)
			generated = generated && col != nil && col.Identity && !inserted[c]
		}
		if !generated {
			names = append(names, ix.Name)
		}
	}
	return names
}

func (p *plan) Find(ctx context.Context, q dialect.Querier, c *dialect.Call) (bool, error) {
	return p.find.QueryOne(ctx, q, c, c.Dest...)
}

// GetOrCreate: SELECT; on a miss, INSERT (a duplicate-key error leaves the
// transaction usable: only the statement is rolled back, MY-10); on a
// duplicate of our key, a locking read, which sees the winner's committed
// row even inside a REPEATABLE READ snapshot. A plain INSERT is used rather
// than INSERT IGNORE (which also swallows truncation and NULL errors, MY-6)
// or ON DUPLICATE KEY UPDATE (which would write the existing row and fire
// its update triggers).
func (p *plan) GetOrCreate(ctx context.Context, q dialect.Querier, c *dialect.Call) (bool, error) {
	for range dialect.LostRaceTries {
		if found, err := p.find.QueryOne(ctx, q, c, c.Dest...); err != nil || found {
			return false, err
		}
		created, err := p.doInsert(ctx, q, c)
		if err == nil {
			return created, nil
		}
		if !isDuplicate(err) {
			return false, err
		}
		if name := constraint(err); name != "" && name != p.arbiter {
			return false, err // a conflict on another unique index
		}
		found, ferr := p.findLocked.QueryOne(ctx, q, c, c.Dest...)
		if ferr != nil || found {
			c.Raced = found
			return false, ferr
		}
		if len(p.otherUniqueIndexes) > 0 && constraint(err) == "" {
			return false, err // cannot tell whose duplicate it was: report it
		}
	}
	return false, dialect.LostRace()
}

// doInsert inserts and reads the row back: with RETURNING in the same
// statement (MariaDB), else by key (MySQL; our own insert is visible to us).
func (p *plan) doInsert(ctx context.Context, q dialect.Querier, c *dialect.Call) (bool, error) {
	if p.returning {
		found, err := p.insert.QueryOne(ctx, q, c, c.Dest...)
		if err == nil && !found {
			err = errors.New("INSERT ... RETURNING returned no row")
		}
		return found, err
	}
	if _, err := q.Exec(ctx, p.insert.SQL, p.insert.Args(c)...); err != nil {
		return false, err
	}
	found, err := p.findLocked.QueryOne(ctx, q, c, c.Dest...)
	if err == nil && !found {
		err = dialect.LostRace() // deleted between our insert and our read
	}
	return found, err
}

// UpdateOrCreate is one INSERT ... ON DUPLICATE KEY UPDATE ... RETURNING on
// MariaDB. Without RETURNING (MySQL) it needs the library's own transaction
// (or the caller's) to read the row it wrote: the upsert, then a locking
// read of the row, which our upsert already holds locked.
func (p *plan) UpdateOrCreate(ctx context.Context, q dialect.Querier, c *dialect.Call) (bool, error) {
	var mark uint64
	if p.returning {
		upsert := p.upsert
		if p.upsertOwnID.SQL != "" && !c.InTx {
			upsert = p.upsertOwnID
		}
		dest := append(c.Dest[:len(c.Dest):len(c.Dest)], &mark)
		found, err := upsert.QueryOne(ctx, q, c, dest...)
		if err != nil {
			return false, err
		}
		if !found {
			return false, errors.New("upsert returned no row")
		}
	} else {
		res, err := q.Exec(ctx, p.upsert.SQL, p.upsert.Args(c)...)
		if err != nil {
			return false, err
		}
		// Without RETURNING the marker comes back as the OK packet's insert
		// id, where an AUTO_INCREMENT value generated by the insert path
		// may take the place of the 1: any value but 0 and the other-index
		// marker means inserted.
		id, err := res.LastInsertId()
		if err != nil {
			return false, err
		}
		if mark = uint64(id); mark != markOther {
			found, err := p.findLocked.QueryOne(ctx, q, c, c.Dest...)
			if err != nil {
				return false, err
			}
			if !found {
				return false, dialect.LostRace()
			}
			return mark != markUpdated, nil
		}
	}
	switch mark {
	case markInserted:
		return true, nil
	case markUpdated:
		return false, nil
	case markOther:
		return p.updateExisting(ctx, q, c)
	}
	return false, fmt.Errorf("upsert marker %d: cannot tell whether the row was inserted", mark)
}

// updateExisting handles an upsert whose proposed row collided on another
// unique index, which MySQL may check before the key's: the guard left that
// row alone. If our key's row exists, the update is for it, as on the other
// databases (where an upsert finds the key's row first); else the proposed
// row truly conflicts with another one.
func (p *plan) updateExisting(ctx context.Context, q dialect.Querier, c *dialect.Call) (bool, error) {
	if _, err := q.Exec(ctx, p.update.SQL, p.update.Args(c)...); err != nil {
		return false, err
	}
	found, err := p.findLocked.QueryOne(ctx, q, c, c.Dest...)
	if err != nil {
		return false, err
	}
	if !found {
		return false, otherUnique(p.otherUniqueIndexes)
	}
	return false, nil
}

// otherUnique reports an upsert whose row collided on a unique index other
// than the key; the row it collided with was left unchanged. The index is
// named when there is only one candidate.
func otherUnique(indexes []string) *dialect.Error {
	return &dialect.Error{
		Class:      dialect.ClassUnique,
		Constraint: strings.Join(indexes, " or "),
		Err:        errors.New("duplicate on another unique index (" + strings.Join(indexes, ", ") + "); the existing row was left unchanged"),
	}
}
