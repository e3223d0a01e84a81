// Package postgres is the getorcreate dialect for PostgreSQL 12+. Importing
// it registers the dialect for pgx's database/sql driver
// (github.com/jackc/pgx/v5/stdlib), which it also imports.
package postgres

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/getorcreate/getorcreate/dialect"
	"github.com/getorcreate/getorcreate/dialect/internal/sqlbuild"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// Dialect is the PostgreSQL dialect.
var Dialect dialect.Dialect = pgDialect{}

func init() {
	dialect.Register(Dialect, func(d driver.Driver) bool {
		_, ok := d.(*stdlib.Driver)
		return ok
	})
}

type pgDialect struct{}

var _ dialect.Dialect = pgDialect{}

func (pgDialect) Name() string { return "postgres" }

// Quote quotes each dot-separated part of ident with double quotes.
func (pgDialect) Quote(ident string) string { return quote(ident) }

func quote(ident string) string { return sqlbuild.QuoteWith(ident, '"') }

// quoteColumn quotes a column or index name, whole.
func quoteColumn(ident string) string { return sqlbuild.QuotePart(ident, '"') }

// Detect asks the server for a setting only PostgreSQL has.
func (pgDialect) Detect(ctx context.Context, q dialect.Querier) bool {
	return sqlbuild.Answers(ctx, q, `SELECT current_setting('server_version_num')`)
}

func (d pgDialect) Inspect(ctx context.Context, q dialect.Querier, table string) (*dialect.Schema, dialect.Features, error) {
	f := dialect.Features{MaxParams: 65535, PartialIndexes: true, BulkRowArgs: true, AtomicBulkUpsert: true}
	s := &dialect.Schema{Table: table}
	var vnum int
	if err := sqlbuild.QueryEach(ctx, q, `SELECT current_setting('server_version_num')::int, current_setting('server_version')`, nil,
		func(r dialect.Rows) error { return r.Scan(&vnum, &s.Version) }); err != nil {
		return nil, f, err
	}
	if vnum < 120000 {
		return nil, f, fmt.Errorf("PostgreSQL %s is too old: getorcreate needs 12", s.Version)
	}
	nullsNotDistinct := vnum >= 150000
	if strings.ContainsRune(table, 0) {
		return nil, f, dialect.ErrNoTable
	}
	var oid *uint32
	var pages *int64
	if err := sqlbuild.QueryEach(ctx, q, `SELECT to_regclass($1)::oid, pg_relation_size(to_regclass($1)) / current_setting('block_size')::int`, []any{quote(table)},
		func(r dialect.Rows) error { return r.Scan(&oid, &pages) }); err != nil {
		return nil, f, err
	}
	if oid == nil {
		return nil, f, dialect.ErrNoTable
	}
	if pages != nil && *pages < smallPages {
		f.ReplanUntil = replanRows
	}
	err := sqlbuild.QueryEach(ctx, q, `
SELECT a.attname,
       -- The type without its modifier, for the casts of INSERT ... SELECT:
       -- a cast to varchar(n) would truncate where an insert fails, and
       -- "character" and "bit" without a length mean length 1.
       CASE ty.typname WHEN 'bpchar' THEN 'bpchar' WHEN 'bit' THEN 'varbit'
                       WHEN '_bpchar' THEN 'bpchar[]' WHEN '_bit' THEN 'varbit[]'
                       ELSE format_type(a.atttypid, NULL) END,
       NOT a.attnotnull,
       a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '',
       a.attidentity <> '' OR coalesce(pg_get_expr(ad.adbin, ad.adrelid) LIKE 'nextval(%', false),
       coalesce(co.collname, ''),
       coalesce(CASE WHEN a.attgenerated = '' THEN pg_get_expr(ad.adbin, ad.adrelid) END, ''),
       ty.typname, a.atttypmod
FROM pg_attribute a
JOIN pg_type ty ON ty.oid = a.atttypid
LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
LEFT JOIN pg_collation co ON co.oid = a.attcollation AND a.attcollation <> 0
WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum`, []any{*oid}, func(r dialect.Rows) error {
		var c dialect.Column
		var typname string
		var typmod int
		if err := r.Scan(&c.Name, &c.Type, &c.Nullable, &c.HasDefault, &c.Identity, &c.Collation, &c.Default, &typname, &typmod); err != nil {
			return err
		}
		describe(&c, typname, typmod)
		s.Columns = append(s.Columns, c)
		return nil
	})
	if err != nil {
		return nil, f, err
	}
	nnd := "false"
	if nullsNotDistinct {
		nnd = "i.indnullsnotdistinct"
	}
	err = sqlbuild.QueryEach(ctx, q, `
SELECT c.relname, i.indisprimary, i.indpred IS NOT NULL, coalesce(pg_get_expr(i.indpred, i.indrelid), ''), i.indexprs IS NOT NULL,
       coalesce(con.condeferrable, false), `+nnd+`,
       coalesce((SELECT json_agg(a.attname ORDER BY k.ord)
                 FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                 WHERE k.ord <= i.indnkeyatts), '[]')::text
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.contype IN ('p', 'u')
WHERE i.indrelid = $1 AND i.indisunique AND i.indisvalid
ORDER BY c.relname`, []any{*oid}, func(r dialect.Rows) error {
		var ix dialect.Index
		var cols string
		if err := r.Scan(&ix.Name, &ix.Primary, &ix.Partial, &ix.Predicate, &ix.Expression, &ix.Deferrable, &ix.NullsNotDistinct, &cols); err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(cols), &ix.Columns); err != nil {
			return err
		}
		s.Unique = append(s.Unique, ix)
		return nil
	})
	if err != nil {
		return nil, f, err
	}
	s.Triggers, err = sqlbuild.QueryStrings(ctx, q, `SELECT tgname FROM pg_trigger WHERE tgrelid = $1 AND NOT tgisinternal ORDER BY tgname`, *oid)
	return s, f, err
}

// A table of fewer than smallPages pages at Open gets its statements
// planned for their values until the table's calls have created
// replanRows rows (CL-9). pgx prepares every statement, and PostgreSQL
// may switch a prepared statement to a generic plan from its sixth
// execution, made once for the table as it is then: on an empty or
// near-empty table that is a sequential scan for the lookup, the UPDATE
// and the guarded insert's NOT EXISTS, and it is kept while the table
// grows, until an ANALYZE. A sequential scan is cheaper than the unique
// index up to a few pages; replanRows rows are at least 16 pages of the
// narrowest rows a key table has (about 250 to a page), so the generic
// plan made after the switch is an index scan. Planning every statement
// costs the server CPU (a fresh key's guarded insert ran at about 0.6x
// the cached plan here), which is why the cached plans are used again
// once the table has grown.
const (
	smallPages = 16
	replanRows = 4096
)

var _ dialect.ReplanProber = pgDialect{}

// ReplanArg returns pgx.QueryExecModeCacheDescribe for a *sql.DB on pgx
// in its default exec mode (which prepares each statement under a name and
// so lets the server cache a generic plan for it): in that mode pgx
// prepares an unnamed statement, which PostgreSQL plans for the values
// bound to it, still in one round trip once pgx has cached its
// description. Other modes plan each statement anyway (exec, describe
// exec, simple protocol, cache describe), as does lib/pq, which prepares
// unnamed statements only. A driver that wraps pgx's hides its mode: one
// statement asks whether the argument reaches pgx, which takes it as an
// option, where any other driver would send it as a parameter the
// statement does not have and fail.
func (pgDialect) ReplanArg(ctx context.Context, db *sql.DB) any {
	c, err := db.Conn(ctx)
	if err != nil {
		return nil
	}
	defer c.Close()
	if pc := pgxConn(c); pc != nil {
		if pc.Config().DefaultQueryExecMode != pgx.QueryExecModeCacheStatement {
			return nil
		}
		return pgx.QueryExecModeCacheDescribe
	}
	var one int
	if err := c.QueryRowContext(ctx, "SELECT 1", pgx.QueryExecModeCacheDescribe).Scan(&one); err != nil || one != 1 {
		return nil
	}
	return pgx.QueryExecModeCacheDescribe
}

// describe fills in what a column of type typname (pg_type.typname) with
// modifier typmod does to a value. Domains, arrays and the other types are
// KindOther: the key checks leave them to the database.
func describe(c *dialect.Column, typname string, typmod int) {
	switch typname {
	case "varchar", "bpchar":
		c.Kind = dialect.KindText
		if typmod >= 4 {
			c.Length = typmod - 4
			if typname == "bpchar" {
				c.Fixed = dialect.PadsSpaces
			}
		}
	case "text", "citext", "name":
		c.Kind = dialect.KindText
	case "bytea":
		c.Kind = dialect.KindBinary
	case "int2", "int4", "int8":
		c.Kind = dialect.KindInt
		c.Bits = map[string]int{"int2": 16, "int4": 32, "int8": 64}[typname]
	case "numeric":
		c.Kind = dialect.KindDecimal
	case "float4", "float8":
		c.Kind, c.Bits = dialect.KindFloat, 32
		if typname == "float8" {
			c.Bits = 64
		}
	case "bool":
		c.Kind = dialect.KindBool
	case "timestamp", "timestamptz":
		c.Kind, c.Digits = dialect.KindTime, 6
		if typmod >= 0 {
			c.Digits = typmod
		}
	case "date":
		c.Kind = dialect.KindDate
	}
}

// sqlState is what a PostgreSQL driver's error reports: pgx's
// *pgconn.PgError and lib/pq's *pq.Error both have it.
type sqlState interface{ SQLState() string }

func state(err error) string {
	var e sqlState
	if errors.As(err, &e) {
		return e.SQLState()
	}
	return ""
}

// class maps SQLSTATEs (https://www.postgresql.org/docs/current/errcodes-appendix.html),
// and pgx's own errors for a connection it could not make or use.
func class(err error) dialect.Class {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return dialect.ClassOther // pgx's "context already done": the caller's context, not the connection
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) || pgconn.SafeToRetry(err) {
		return dialect.ClassConnection
	}
	code := state(err)
	if strings.HasPrefix(code, "08") {
		return dialect.ClassConnection // connection exception
	}
	switch code {
	case "57P01", "57P02", "57P03", "53300": // admin or crash shutdown, cannot connect now, too many connections
		return dialect.ClassConnection
	case "23505":
		return dialect.ClassUnique
	case "40001":
		return dialect.ClassSerialization
	case "40P01":
		return dialect.ClassDeadlock
	case "55P03":
		return dialect.ClassBusy
	case "22001":
		return dialect.ClassTooLong
	case "22P02", "22003", "22007", "22008", "22021", "42804":
		return dialect.ClassInvalidValue
	case "23502":
		return dialect.ClassNotNull
	case "21000":
		return dialect.ClassCardinality
	}
	return dialect.ClassOther
}

// constraint names the violated constraint: the server's ErrorResponse
// field 'n', which pgx keeps as PgError.ConstraintName and lib/pq behind
// its Error.Get.
func constraint(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.ConstraintName
	}
	var fields interface{ Get(byte) string }
	if errors.As(err, &fields) {
		return fields.Get('n')
	}
	return ""
}

// mayHaveRun reports whether a statement that met a lost connection may
// have run: not when the connection could not be made or the server
// refused it. Anything else may have: pgx returns the same unexpected EOF
// for a statement the server never saw and for one it ran and committed,
// and on its simple-protocol path (BEGIN, COMMIT, statements without
// arguments) it even reports a lost connection as SafeToRetry after the
// statement was sent (internal/faultproxy/OBSERVED.md). A session
// terminated under it (57P01) may have committed too: PostgreSQL warns of
// exactly that when it is killed while waiting for a synchronous standby.
func mayHaveRun(err error) bool {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return false
	}
	switch state(err) {
	case "08001", "08004", "57P03", "53300":
		return false
	}
	return true
}

var interpret = sqlbuild.Interpreter(class, constraint, mayHaveRun)

// Interpret classifies a driver error by its SQLSTATE.
func (pgDialect) Interpret(err error) error { return interpret(err) }

func (pgDialect) LedgerDDL(table string) []string {
	t := quote(table)
	return []string{
		"CREATE TABLE IF NOT EXISTS " + t + " (request_id text PRIMARY KEY, fingerprint text NOT NULL, outcome text NOT NULL, created_unix_ms bigint NOT NULL)",
		"CREATE INDEX IF NOT EXISTS " + quoteColumn(sqlbuild.IndexName(table, []string{"created"})) + " ON " + t + " (created_unix_ms)",
	}
}

func (pgDialect) CreateIndexDDL(table string, cols []string) string {
	return fmt.Sprintf("CREATE UNIQUE INDEX CONCURRENTLY %s ON %s (%s)", quoteColumn(sqlbuild.IndexName(table, cols)), quote(table), sqlbuild.QuoteList(quoteColumn, cols))
}

// The alias of the target table in upserts, so that the stored row's
// columns can be named whatever the table is called.
const alias = `"t"`

var syntax = sqlbuild.Syntax{
	Placeholder: func(n int) string { return "$" + strconv.Itoa(n) },
	Quote:       quoteColumn,
	Existing:    func(b *sqlbuild.Builder, col string) { b.WriteString(alias + "."); b.Ident(col) },
	Proposed:    func(b *sqlbuild.Builder, col string) { b.WriteString("EXCLUDED."); b.Ident(col) },
	Greatest:    "GREATEST",
	Least:       "LEAST",
}

type plan struct {
	find, insert, upsert sqlbuild.Stmt
	// update is UPDATE ... WHERE key = $1 RETURNING: the key's row updated
	// without an insert (no nextval). updateFirst is set when it says
	// exactly what the upsert would: no proposed value it reads is one
	// the database generates.
	update      sqlbuild.Stmt
	updateFirst bool
	// covered, for a partial arbiter: its predicate on the proposed row.
	covered sqlbuild.Stmt
	where   string
}

// castValue writes the call's value at pos, cast to its column's type
// without the modifier (see Inspect): INSERT ... SELECT does not type its
// parameters from the target columns.
func castValue(b *sqlbuild.Builder, pos int) {
	b.Value(pos)
	b.WriteString("::" + b.Table.Schema.Column(b.Table.Columns[pos]).Type)
}

// proposed writes "(SELECT $1::type AS col, ...) p": the proposed row,
// with the columns a partial arbiter's predicate reads.
func proposed(b *sqlbuild.Builder, s *dialect.Shape) {
	b.WriteString("(SELECT ")
	b.ProposedRow(s, func(pos int) { castValue(b, pos) }, func(col, expr string) {
		b.WriteString("(" + expr + ")::" + b.Table.Schema.Column(col).Type)
	})
	b.WriteString(") p")
}

// insertSource writes what an insert selects from: the call's values, or,
// for a partial arbiter, the proposed row where the predicate holds, so
// that a row the index would not cover is never inserted.
func insertSource(b *sqlbuild.Builder, s *dialect.Shape) {
	b.WriteString(" SELECT ")
	if b.Table.Where == "" {
		for i, pos := range s.Insert {
			if i > 0 {
				b.WriteString(", ")
			}
			castValue(b, pos)
		}
		return
	}
	b.List("p.", b.Table.Columns, s.Insert)
	b.WriteString(" FROM ")
	proposed(b, s)
	b.WriteString(" WHERE (" + b.Table.Where + ")")
}

// Compile builds:
//
//	find:   SELECT cols FROM t WHERE key = $1
//	insert: INSERT INTO t (...) SELECT $2::type, ... WHERE NOT EXISTS (SELECT FROM t WHERE key = $1)
//	        ON CONFLICT (key) DO NOTHING RETURNING cols
//	upsert: INSERT INTO t AS t (...) VALUES (...) ON CONFLICT (key) DO UPDATE SET ...
//	        RETURNING cols, xmax = 0
//
// The guarded insert inserts nothing when the key exists in its snapshot:
// no sequence value, no trigger, no dead tuple. When a racing transaction
// inserted the key after that snapshot, ON CONFLICT DO NOTHING waits for it
// and returns no row, and the next find (a new snapshot under READ
// COMMITTED) sees it.
//
// With a partial arbiter (Table.Where) every lookup adds the predicate,
// ON CONFLICT (key) WHERE predicate infers the index, and the inserts
// select from the proposed row where the predicate holds on it:
//
//	INSERT INTO t (...) SELECT p.c, ... FROM (SELECT $2::type AS c, ...) p
//	WHERE (predicate) AND NOT EXISTS (... AND (predicate)) ON CONFLICT (key) WHERE (predicate) ...
func (pgDialect) Compile(t *dialect.Table, s *dialect.Shape, _ dialect.Features) (dialect.Plan, error) {
	return sqlbuild.Classify(compile(t, s), interpret), nil
}

func compile(t *dialect.Table, s *dialect.Shape) *plan {
	p := &plan{where: t.Where}
	all := sqlbuild.Seq(len(t.Columns))
	table := quote(t.Name)

	b := sqlbuild.NewBuilder(&syntax, t)
	b.WriteString("SELECT ")
	b.List("", t.Columns, all)
	b.WriteString(" FROM " + table + " WHERE ")
	b.KeyMatch("", s.NullKeys)
	b.AndWhere()
	p.find = b.Stmt()

	b = sqlbuild.NewBuilder(&syntax, t)
	b.WriteString("INSERT INTO " + table + " (")
	b.List("", t.Columns, s.Insert)
	b.WriteString(")")
	insertSource(b, s)
	if t.Where == "" {
		b.WriteString(" WHERE")
	} else {
		b.WriteString(" AND")
	}
	b.WriteString(" NOT EXISTS (SELECT FROM " + table + " WHERE ")
	b.KeyMatch("", s.NullKeys)
	b.AndWhere()
	b.WriteString(") ON CONFLICT ")
	b.ConflictTarget()
	b.WriteString(" DO NOTHING RETURNING ")
	b.List("", t.Columns, all)
	p.insert = b.Stmt()

	if len(s.Updates) > 0 {
		b = sqlbuild.NewBuilder(&syntax, t)
		b.WriteString("INSERT INTO " + table + " AS " + alias + " (")
		b.List("", t.Columns, s.Insert)
		if t.Where == "" {
			b.WriteString(") VALUES (")
			b.Values(s.Insert)
			b.WriteString(")")
		} else {
			b.WriteString(")")
			insertSource(b, s)
		}
		b.WriteString(" ON CONFLICT ")
		b.ConflictTarget()
		b.WriteString(" DO UPDATE SET ")
		b.Assignments(s.Updates, nil)
		b.WriteString(" RETURNING ")
		b.List(alias+".", t.Columns, all)
		// xmax is 0 on a freshly inserted row version and set (to our own
		// transaction) on one written by ON CONFLICT DO UPDATE. This is an
		// implementation detail, stable from 9.5 to 17; PostgreSQL 18 adds
		// RETURNING old.*, which a later version may switch to.
		b.WriteString(", " + alias + ".xmax = 0")
		p.upsert = b.Stmt()
	}
	if len(s.Updates) > 0 {
		p.update = buildUpdate(t, s)
		p.updateFirst = true
		for _, col := range sqlbuild.ProposedColumns(s.Updates) {
			c := t.Schema.Column(col)
			if pos, _ := t.ProposedValue(s, col); pos < 0 && c != nil && (c.Identity || c.HasDefault && c.Default == "") {
				p.updateFirst = false
			}
		}
	}
	p.covered = sqlbuild.Covered(&syntax, t, func(b *sqlbuild.Builder) { proposed(b, s) })
	return p
}

// buildUpdate is UPDATE t AS t SET ... WHERE key = $1 [AND (predicate)]
// RETURNING t.cols. A proposed column is what the upsert's EXCLUDED.col
// would be: the call's value when the shape inserts it, else the column's
// DEFAULT (or NULL).
func buildUpdate(t *dialect.Table, s *dialect.Shape) sqlbuild.Stmt {
	syn := syntax
	syn.Proposed = func(b *sqlbuild.Builder, col string) {
		pos, expr := t.ProposedValue(s, col)
		if pos >= 0 {
			castValue(b, pos)
			return
		}
		b.WriteString("(" + expr + ")::" + t.Schema.Column(col).Type)
	}
	b := sqlbuild.NewBuilder(&syn, t)
	b.WriteString("UPDATE " + quote(t.Name) + " AS " + alias + " SET ")
	b.Assignments(s.Updates, nil)
	b.WriteString(" WHERE ")
	b.KeyMatch(alias+".", s.NullKeys)
	b.AndWhere()
	b.WriteString(" RETURNING ")
	b.List(alias+".", t.Columns, sqlbuild.Seq(len(t.Columns)))
	return b.Stmt()
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
		{Path: dialect.PathGet, Role: "guarded insert", SQL: p.insert.SQL},
	}
	if p.upsert.SQL != "" {
		st = append(st, dialect.Statement{Path: dialect.PathUpdate, Role: "update, first when the table's calls mostly find their key", SQL: p.update.SQL},
			dialect.Statement{Path: dialect.PathUpdate, Role: "upsert", SQL: p.upsert.SQL})
	}
	if p.covered.SQL != "" {
		st = append(st, dialect.Statement{Path: dialect.PathGet, Role: "the partial index's predicate on the proposed row, when nothing was inserted", SQL: p.covered.SQL})
	}
	return st
}

func (p *plan) Find(ctx context.Context, q dialect.Querier, c *dialect.Call) (bool, error) {
	return p.find.QueryOne(ctx, q, c, c.Dest...)
}

// GetOrCreate looks up first when the table's calls mostly find their key
// (an existing key then costs one plain SELECT) and inserts first when they
// mostly create (a new key then costs one guarded INSERT). Until one of them
// returns a row, it alternates: a guarded insert that returns nothing means
// the key exists, or a racing transaction has just committed it, and the
// next find sees it.
func (p *plan) GetOrCreate(ctx context.Context, q dialect.Querier, c *dialect.Call) (bool, error) {
	read := c.ReadFirst
	for i := range dialect.LostRaceTries {
		if read {
			if found, err := p.find.QueryOne(ctx, q, c, c.Dest...); err != nil || found {
				// A find after a lookup that missed and an insert that
				// returned nothing sees the row a racing transaction
				// committed. (Inserting first, an empty insert may just
				// mean the key was there.)
				c.Raced = found && (i > 1 || i == 1 && c.ReadFirst)
				return false, err
			}
			if i > 0 {
				// An insert returned nothing and the row is not there:
				// a race, or a row the partial index would not cover.
				if err := p.notCovered(ctx, q, c); err != nil {
					return false, err
				}
			}
		}
		read = true
		if created, err := p.insert.QueryOne(ctx, q, c, c.Dest...); err != nil || created {
			return created, err
		}
	}
	return false, dialect.LostRace()
}

// UpdateOrCreate is one statement: ON CONFLICT DO UPDATE either inserts or
// updates, atomically, whatever runs concurrently (PG-1). But the upsert
// builds its proposed row, nextval included, before it finds the conflict
// (PG-14): every update of an existing key takes a sequence value, and a
// busy table with a 32-bit serial runs out. So when the table's calls
// mostly find their key, a plain UPDATE goes first (one statement, no
// sequence value, for the common path), and the upsert only when it
// matched nothing; a racing insert of the key then makes the upsert wait
// and update, as it would have. Tables whose calls mostly create keep the
// one upsert, for which a new key costs one statement.
func (p *plan) UpdateOrCreate(ctx context.Context, q dialect.Querier, c *dialect.Call) (bool, error) {
	if c.ReadFirst && p.updateFirst {
		if found, err := p.update.QueryOne(ctx, q, c, c.Dest...); err != nil || found {
			return false, err
		}
	}
	var created bool
	dest := append(c.Dest[:len(c.Dest):len(c.Dest)], &created)
	found, err := p.upsert.QueryOne(ctx, q, c, dest...)
	if err == nil && !found {
		return false, p.uncoveredUpdate(ctx, q, c)
	}
	return created, err
}

// uncoveredUpdate handles an upsert that neither inserted nor updated,
// which only a partial arbiter's predicate failing on the proposed row
// causes (it filters the row out before any conflict): the row passed is
// only for creating, so the key's covered row, if there is one, is
// updated as the upsert would have; else the row cannot be created.
func (p *plan) uncoveredUpdate(ctx context.Context, q dialect.Querier, c *dialect.Call) error {
	if p.covered.SQL == "" {
		return errors.New("upsert returned no row")
	}
	found, err := p.update.QueryOne(ctx, q, c, c.Dest...)
	if err != nil || found {
		return err
	}
	if err := p.notCovered(ctx, q, c); err != nil {
		return err
	}
	return dialect.LostRace() // covered after all: the row came and went
}
