// Package sqlite is the getorcreate dialect for SQLite 3.35+ through
// modernc.org/sqlite (pure Go). Importing it registers both.
//
// SQLite has one writer at a time, so there is no lost update to prevent
// across connections, only a lost race between a lookup and an insert, which
// INSERT ... ON CONFLICT DO NOTHING RETURNING closes. Open the database with
// a busy timeout (and WAL for concurrent readers): the library retries
// SQLITE_BUSY in its own calls, but each retry costs latency.
package sqlite

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/getorcreate/getorcreate/dialect"
	"github.com/getorcreate/getorcreate/dialect/internal/sqlbuild"
	"github.com/getorcreate/getorcreate/internal/sqlexpr"
	msqlite "modernc.org/sqlite"
)

// Dialect is the SQLite dialect.
var Dialect dialect.Dialect = sqliteDialect{}

func init() {
	dialect.Register(Dialect, func(d driver.Driver) bool {
		_, ok := d.(*msqlite.Driver)
		return ok
	})
}

type sqliteDialect struct{}

var _ dialect.Dialect = sqliteDialect{}

func (sqliteDialect) Name() string { return "sqlite" }

// Quote quotes each dot-separated part of ident with double quotes.
func (sqliteDialect) Quote(ident string) string { return quote(ident) }

func quote(ident string) string { return sqlbuild.QuoteWith(ident, '"') }

// quoteColumn quotes a column or index name, whole.
func quoteColumn(ident string) string { return sqlbuild.QuotePart(ident, '"') }

// Detect asks for the SQLite library's version, a function only SQLite has.
func (sqliteDialect) Detect(ctx context.Context, q dialect.Querier) bool {
	return sqlbuild.Answers(ctx, q, `SELECT sqlite_version()`)
}

func splitName(table string) (schema, name string) {
	if i := strings.LastIndexByte(table, '.'); i >= 0 {
		return table[:i], table[i+1:]
	}
	return "main", table
}

func (d sqliteDialect) Inspect(ctx context.Context, q dialect.Querier, table string) (*dialect.Schema, dialect.Features, error) {
	f := dialect.Features{MaxParams: 32766, PrepareOnce: true, PartialIndexes: true, BulkRowArgs: true}
	s := &dialect.Schema{Table: table}
	schema, name := splitName(table)
	if err := sqlbuild.QueryEach(ctx, q, `SELECT sqlite_version()`, nil, func(r dialect.Rows) error { return r.Scan(&s.Version) }); err != nil {
		return nil, f, err
	}
	var maj, min int
	fmt.Sscanf(s.Version, "%d.%d", &maj, &min)
	if maj < 3 || (maj == 3 && min < 35) {
		return nil, f, fmt.Errorf("SQLite %s is too old: getorcreate needs 3.35 (RETURNING)", s.Version)
	}
	var pkCols []string
	var pkType string
	err := sqlbuild.QueryEach(ctx, q, `SELECT name, type, "notnull", coalesce(dflt_value, ''), dflt_value IS NOT NULL, pk, hidden FROM pragma_table_xinfo(?, ?) ORDER BY cid`,
		[]any{name, schema}, func(r dialect.Rows) error {
			var c dialect.Column
			var notnull, hasDef bool
			var pk, hidden int
			if err := r.Scan(&c.Name, &c.Type, &notnull, &c.Default, &hasDef, &pk, &hidden); err != nil {
				return err
			}
			c.Nullable, c.HasDefault = !notnull, hasDef || hidden >= 2
			if hidden >= 2 {
				c.Default = "" // a generated column's expression is no default
			}
			describe(&c)
			if pk > 0 {
				pkCols = append(pkCols, c.Name)
				pkType = c.Type
			}
			s.Columns = append(s.Columns, c)
			return nil
		})
	if err != nil {
		return nil, f, err
	}
	if len(s.Columns) == 0 {
		return nil, f, dialect.ErrNoTable
	}
	type idx struct {
		name, origin string
		partial      bool
	}
	var idxs []idx
	err = sqlbuild.QueryEach(ctx, q, `SELECT name, origin, partial FROM pragma_index_list(?, ?) WHERE "unique" = 1`,
		[]any{name, schema}, func(r dialect.Rows) error {
			var i idx
			if err := r.Scan(&i.name, &i.origin, &i.partial); err != nil {
				return err
			}
			idxs = append(idxs, i)
			return nil
		})
	if err != nil {
		return nil, f, err
	}
	hasPKIndex := false
	for _, i := range idxs {
		ix := dialect.Index{Name: i.name, Primary: i.origin == "pk", Partial: i.partial}
		if ix.Partial {
			// SQLite keeps the CREATE INDEX statement as written; the
			// predicate is what follows the WHERE after its column list.
			var create string
			if err := sqlbuild.QueryEach(ctx, q, `SELECT sql FROM `+quote(schema)+`.sqlite_schema WHERE type = 'index' AND name = ?`,
				[]any{i.name}, func(r dialect.Rows) error { return r.Scan(&create) }); err != nil {
				return nil, f, err
			}
			ix.Predicate, _ = sqlexpr.IndexWhere(create)
		}
		hasPKIndex = hasPKIndex || ix.Primary
		err := sqlbuild.QueryEach(ctx, q, `SELECT name, coll FROM pragma_index_xinfo(?, ?) WHERE key = 1 ORDER BY seqno`,
			[]any{i.name, schema}, func(r dialect.Rows) error {
				var col, coll *string
				if err := r.Scan(&col, &coll); err != nil {
					return err
				}
				if col == nil {
					ix.Expression = true
					return nil
				}
				ix.Columns = append(ix.Columns, *col)
				if c := s.Column(*col); c != nil && coll != nil && c.Collation == "" {
					c.Collation = *coll
				}
				return nil
			})
		if err != nil {
			return nil, f, err
		}
		s.Unique = append(s.Unique, ix)
	}
	if len(pkCols) > 0 && !hasPKIndex {
		// An INTEGER PRIMARY KEY is the rowid: unique, with no index of its own.
		s.Unique = append(s.Unique, dialect.Index{Name: "PRIMARY KEY", Columns: pkCols, Primary: true})
		if len(pkCols) == 1 && strings.EqualFold(pkType, "INTEGER") {
			c := s.Column(pkCols[0])
			c.Identity, c.HasDefault = true, true
		}
	}
	s.Triggers, err = sqlbuild.QueryStrings(ctx, q, `SELECT name FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = ?`, name)
	if err != nil {
		return nil, f, err
	}
	return s, f, probeTime(ctx, q, s)
}

// describe fills in what a column does to a value, from its declared type
// by SQLite's affinity rules (https://sqlite.org/datatype3.html#affinity):
// an INTEGER or NUMERIC column converts a string that looks like a number,
// a TEXT column a number to text (SQ-7). SQLite enforces no lengths.
// modernc.org/sqlite reads a text value back as a time.Time only from a
// column declared DATE, DATETIME or TIMESTAMP.
func describe(c *dialect.Column) {
	t := strings.ToUpper(c.Type)
	switch {
	case t == "DATE" || t == "DATETIME" || t == "TIMESTAMP":
		c.Kind = dialect.KindTime
	case strings.Contains(t, "INT"):
		c.Kind, c.Bits = dialect.KindInt, 64
	case strings.Contains(t, "CHAR") || strings.Contains(t, "CLOB") || strings.Contains(t, "TEXT"):
		c.Kind = dialect.KindText
	case t == "" || t == "ANY" || strings.Contains(t, "BLOB"):
		// BLOB affinity stores every value as given: 12 and '12' are two
		// keys, and a Go value always binds as the same type.
	case strings.Contains(t, "REAL") || strings.Contains(t, "FLOA") || strings.Contains(t, "DOUB"):
		c.Kind, c.Bits = dialect.KindFloat, 64
	default:
		c.Kind = dialect.KindDecimal // NUMERIC affinity
	}
}

// timeFormats are the layouts modernc.org/sqlite parses a DATE, DATETIME
// or TIMESTAMP value with (its parseTimeFormats, then t.String()'s).
var timeFormats = []string{
	"2006-01-02 15:04:05.999999999-07:00",
	"2006-01-02T15:04:05.999999999-07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04",
	"2006-01-02T15:04",
	"2006-01-02",
	"2006-01-02 15:04:05.999999999 -0700 MST",
}

// probeTime asks the connection how it writes a time.Time (the DSN's
// _time_format and _loc decide: by default t.String(), whose zone a
// numeric abbreviation such as "+0200" makes unreadable): SELECT of a
// bound time returns the text it would store, with no write. The library
// binds times in UTC, which every format reads back; the probe catches a
// format or _loc it cannot, and learns how many fractional digits of a
// second survive.
func probeTime(ctx context.Context, q dialect.Querier, s *dialect.Schema) error {
	probe := time.Date(2000, 1, 2, 3, 4, 5, 123456789, time.UTC)
	var v any
	if err := sqlbuild.QueryEach(ctx, q, `SELECT ?`, []any{probe}, func(r dialect.Rows) error { return r.Scan(&v) }); err != nil {
		return err
	}
	var got time.Time
	ok := false
	switch v := v.(type) {
	case time.Time:
		got, ok = v, true
	case string:
		for _, f := range timeFormats {
			if t, err := time.Parse(f, strings.TrimSuffix(strings.TrimSpace(strings.Split(v, " m=")[0]), "Z")); err == nil {
				got, ok = t, true
				break
			}
		}
	}
	problem := ""
	digits := 0
	switch {
	case !ok:
		problem = fmt.Sprintf("the connection writes a time as %q, which modernc.org/sqlite cannot read back: set _time_format=sqlite in the DSN (and no _loc whose zone has no name)", v)
	case !got.Truncate(time.Second).Equal(probe.Truncate(time.Second)):
		problem = fmt.Sprintf("the connection writes %v as %q, another instant: set _time_format=sqlite in the DSN", probe, v)
	default:
		for n := got.Nanosecond(); n%1_000_000_000 != 0 && digits < 9; n = (n * 10) % 1_000_000_000 {
			digits++
		}
	}
	for i := range s.Columns {
		if c := &s.Columns[i]; c.Kind == dialect.KindTime {
			c.TimeProblem, c.Digits = problem, digits
		}
	}
	return nil
}

// SQLite result codes (https://sqlite.org/rescode.html).
const (
	codeBusy             = 5
	codeLocked           = 6
	codeIOErr            = 10
	codeCantOpen         = 14
	codeTooBig           = 18
	codeMismatch         = 20
	codeBusySnapshot     = 517
	codeConstraintNotNul = 1299
	codeConstraintPK     = 1555
	codeConstraintUnique = 2067
	codeConstraintType   = 3091
)

func code(err error) (int, bool) {
	var e interface{ Code() int }
	if errors.As(err, &e) {
		return e.Code(), true
	}
	return 0, false
}

func class(err error) dialect.Class {
	c, ok := code(err)
	if !ok {
		return dialect.ClassOther
	}
	switch {
	case c == codeBusySnapshot:
		return dialect.ClassSerialization
	case c&0xff == codeIOErr || c&0xff == codeCantOpen:
		return dialect.ClassConnection
	case c&0xff == codeBusy || c&0xff == codeLocked:
		return dialect.ClassBusy
	case c == codeConstraintUnique || c == codeConstraintPK:
		return dialect.ClassUnique
	case c == codeConstraintNotNul:
		return dialect.ClassNotNull
	case c == codeTooBig:
		return dialect.ClassTooLong
	case c == codeMismatch || c == codeConstraintType:
		return dialect.ClassInvalidValue
	}
	return dialect.ClassOther
}

// mayHaveRun: a file that could not be opened ran nothing; an I/O error
// may have come after part of a write.
func mayHaveRun(err error) bool {
	c, _ := code(err)
	return c&0xff != codeCantOpen
}

var interpret = sqlbuild.Interpreter(class, constraint, mayHaveRun)

// Interpret classifies a driver error by its extended result code.
func (sqliteDialect) Interpret(err error) error { return interpret(err) }

// constraint names the columns of the violated index, as SQLite reports
// them ("tags.slug"); SQLite gives no index name.
func constraint(err error) string {
	if _, ok := code(err); !ok {
		return ""
	}
	_, after, ok := strings.Cut(err.Error(), "constraint failed: ")
	if !ok {
		return ""
	}
	after, _, _ = strings.Cut(after, " (")
	return after
}

func (sqliteDialect) LedgerDDL(table string) []string {
	t := quote(table)
	return []string{
		"CREATE TABLE IF NOT EXISTS " + t + " (request_id TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, outcome TEXT NOT NULL, created_unix_ms INTEGER NOT NULL)",
		"CREATE INDEX IF NOT EXISTS " + quoteColumn(sqlbuild.IndexName(table, []string{"created"})) + " ON " + t + " (created_unix_ms)",
	}
}

func (sqliteDialect) CreateIndexDDL(table string, cols []string) string {
	return fmt.Sprintf("CREATE UNIQUE INDEX %s ON %s (%s)", quoteColumn(sqlbuild.IndexName(table, cols)), quote(table), sqlbuild.QuoteList(quoteColumn, cols))
}

var syntax = sqlbuild.Syntax{
	Placeholder: func(int) string { return "?" },
	Quote:       quoteColumn,
	Existing:    func(b *sqlbuild.Builder, col string) { b.Ident(col) },
	// The proposed row is the call's own value: the update is a plain UPDATE.
	Proposed: func(b *sqlbuild.Builder, col string) { b.Value(b.Pos(col)) },
	Greatest: "max",
	Least:    "min",
}

type plan struct {
	find, insert, guarded, update sqlbuild.Stmt
	// covered, for a partial arbiter: its predicate on the proposed row.
	covered sqlbuild.Stmt
	where   string
}

// Compile builds:
//
//	find:   SELECT cols FROM t WHERE key = ?
//	insert: INSERT INTO t (...) VALUES (...) ON CONFLICT (key) DO NOTHING RETURNING cols
//	update: UPDATE t SET ... WHERE key = ? RETURNING cols
//
// An upsert (ON CONFLICT DO UPDATE) would save a statement on the create
// path, but SQLite cannot say whether it inserted or updated, so
// UpdateOrCreate tries the UPDATE first (one statement for an existing key)
// and inserts only when it touched nothing.
//
// With a partial arbiter (Table.Where) every lookup and the UPDATE add the
// predicate, ON CONFLICT (key) WHERE predicate names the index, and the
// inserts select from the proposed row where the predicate holds on it:
// INSERT INTO t (...) SELECT "c", ... FROM (SELECT ? AS "c", ...) p WHERE (predicate) ...
func (sqliteDialect) Compile(t *dialect.Table, s *dialect.Shape, _ dialect.Features) (dialect.Plan, error) {
	return sqlbuild.Classify(compile(t, s), interpret), nil
}

// proposed writes "(SELECT ? AS c, ...) p": the proposed row, with the
// columns a partial arbiter's predicate reads.
func proposed(b *sqlbuild.Builder, s *dialect.Shape) {
	b.WriteString("(SELECT ")
	b.ProposedRow(s, b.Value, func(_, expr string) { b.WriteString("(" + expr + ")") })
	b.WriteString(") p")
}

// insertValues writes the rows an insert takes: VALUES (...), or for a
// partial arbiter the proposed row where the predicate holds, and then,
// when guard is set, the condition that the key has no row yet. Every
// form ends in a WHERE, which keeps ON CONFLICT from being read as a
// join constraint (SQ-1).
func insertValues(b *sqlbuild.Builder, s *dialect.Shape, guard bool) {
	t := b.Table
	switch {
	case t.Where != "":
		b.WriteString(" SELECT ")
		b.List("", t.Columns, s.Insert)
		b.WriteString(" FROM ")
		proposed(b, s)
		b.WriteString(" WHERE (" + t.Where + ")")
		if guard {
			b.WriteString(" AND")
		}
	case guard:
		b.WriteString(" SELECT ")
		b.Values(s.Insert)
		b.WriteString(" WHERE")
	default:
		b.WriteString(" VALUES (")
		b.Values(s.Insert)
		b.WriteString(")")
	}
	if guard {
		b.WriteString(" NOT EXISTS (SELECT 1 FROM " + quote(t.Name) + " WHERE ")
		b.KeyMatch("", s.NullKeys)
		b.AndWhere()
		b.WriteString(")")
	}
}

func compile(t *dialect.Table, s *dialect.Shape) *plan {
	p := &plan{where: t.Where}
	cols := func(b *sqlbuild.Builder) { b.List("", t.Columns, sqlbuild.Seq(len(t.Columns))) }

	b := sqlbuild.NewBuilder(&syntax, t)
	b.WriteString("SELECT ")
	cols(b)
	b.WriteString(" FROM " + quote(t.Name) + " WHERE ")
	b.KeyMatch("", s.NullKeys)
	b.AndWhere()
	p.find = b.Stmt()

	b = sqlbuild.NewBuilder(&syntax, t)
	b.WriteString("INSERT INTO " + quote(t.Name) + " (")
	b.List("", t.Columns, s.Insert)
	b.WriteString(")")
	insertValues(b, s, false)
	b.WriteString(" ON CONFLICT ")
	b.ConflictTarget()
	b.WriteString(" DO NOTHING RETURNING ")
	cols(b)
	p.insert = b.Stmt()

	// The guarded insert inserts nothing when the key exists, so no insert
	// trigger fires for an existing row.
	b = sqlbuild.NewBuilder(&syntax, t)
	b.WriteString("INSERT INTO " + quote(t.Name) + " (")
	b.List("", t.Columns, s.Insert)
	b.WriteString(")")
	insertValues(b, s, true)
	b.WriteString(" ON CONFLICT ")
	b.ConflictTarget()
	b.WriteString(" DO NOTHING RETURNING ")
	cols(b)
	p.guarded = b.Stmt()

	if len(s.Updates) > 0 {
		b = sqlbuild.NewBuilder(&syntax, t)
		b.WriteString("UPDATE " + quote(t.Name) + " SET ")
		b.Assignments(s.Updates, nil)
		b.WriteString(" WHERE ")
		b.KeyMatch("", s.NullKeys)
		b.AndWhere()
		b.WriteString(" RETURNING ")
		cols(b)
		p.update = b.Stmt()
	}
	p.covered = sqlbuild.Covered(&syntax, t, func(b *sqlbuild.Builder) { proposed(b, s) })
	return p
}

// notCovered reports, for a partial arbiter, whether the call's proposed
// row fails its predicate: asked only once an insert returned nothing and
// a lookup found nothing either.
func (p *plan) notCovered(ctx context.Context, q dialect.Querier, c *dialect.Call) error {
	return sqlbuild.NotCovered(ctx, q, p.covered, c, p.where)
}

func (p *plan) Statements() []dialect.Statement {
	st := []dialect.Statement{
		{Path: dialect.PathGet, Role: "find", SQL: p.find.SQL},
		{Path: dialect.PathGet, Role: "insert", SQL: p.insert.SQL},
		{Path: dialect.PathGet, Role: "guarded insert, sent first when inserting first", SQL: p.guarded.SQL},
	}
	if p.update.SQL != "" {
		st = append(st,
			dialect.Statement{Path: dialect.PathUpdate, Role: "update", SQL: p.update.SQL},
			dialect.Statement{Path: dialect.PathUpdate, Role: "insert, when the update found nothing", SQL: p.insert.SQL},
			dialect.Statement{Path: dialect.PathUpdate, Role: "guarded insert, sent first when inserting first", SQL: p.guarded.SQL})
	}
	return st
}

// writeFirst: insert first when the table's calls mostly create, except in
// a caller's transaction, where a write needs SQLite's one write lock (and
// fails with SQLITE_BUSY_SNAPSHOT on a stale snapshot) while a read of an
// existing key would not.
func (p *plan) writeFirst(c *dialect.Call) bool { return !c.ReadFirst && !c.InTx }

func (p *plan) Find(ctx context.Context, q dialect.Querier, c *dialect.Call) (bool, error) {
	return p.find.QueryOne(ctx, q, c, c.Dest...)
}

// GetOrCreate: SELECT; on a miss, INSERT ... DO NOTHING RETURNING; when that
// returns nothing another connection inserted the key in between, and the
// next SELECT sees it. When the table's calls mostly create, the guarded
// insert goes first instead, so a new key costs one statement.
func (p *plan) GetOrCreate(ctx context.Context, q dialect.Querier, c *dialect.Call) (bool, error) {
	if p.writeFirst(c) {
		if created, err := p.guarded.QueryOne(ctx, q, c, c.Dest...); err != nil || created {
			return created, err
		}
	}
	for i := range dialect.LostRaceTries {
		if found, err := p.find.QueryOne(ctx, q, c, c.Dest...); err != nil || found {
			c.Raced = found && i > 0
			return false, err
		}
		if i > 0 || p.writeFirst(c) {
			// An insert returned nothing and the row is not there: a
			// race, or a row the partial index would not cover.
			if err := p.notCovered(ctx, q, c); err != nil {
				return false, err
			}
		}
		if created, err := p.insert.QueryOne(ctx, q, c, c.Dest...); err != nil || created {
			return created, err
		}
	}
	return false, dialect.LostRace()
}

// UpdateOrCreate: UPDATE ... RETURNING; on a miss, INSERT ... DO NOTHING
// RETURNING; when that returns nothing another connection inserted the key
// in between, and the next UPDATE finds it.
func (p *plan) UpdateOrCreate(ctx context.Context, q dialect.Querier, c *dialect.Call) (bool, error) {
	if p.writeFirst(c) {
		if created, err := p.guarded.QueryOne(ctx, q, c, c.Dest...); err != nil || created {
			return created, err
		}
	}
	for i := range dialect.LostRaceTries {
		if found, err := p.update.QueryOne(ctx, q, c, c.Dest...); err != nil || found {
			c.Raced = found && i > 0
			return false, err
		}
		if i > 0 || p.writeFirst(c) {
			if err := p.notCovered(ctx, q, c); err != nil {
				return false, err
			}
		}
		if created, err := p.insert.QueryOne(ctx, q, c, c.Dest...); err != nil || created {
			return created, err
		}
	}
	return false, dialect.LostRace()
}
