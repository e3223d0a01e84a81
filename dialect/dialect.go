// Package dialect is the contract between getorcreate and a database: what
// each database package (postgres, mysql, sqlite) provides, and what the
// library's core calls. A Dialect inspects a table, compiles the statements
// of each path into a Plan, and interprets its driver's errors, once: every
// error a Plan returns is an *Error whose Class says what it means.
//
// # Stability
//
// The API of this package is not stable: it changes with the library, in
// any release. It is exported only so that the database packages of this
// module can implement it. Do not implement it outside this module; to pick
// a dialect by hand, set getorcreate.Config.Dialect to one of the values
// those packages export.
//
// Users of getorcreate import a database package only for its driver and
// its registration:
//
//	import _ "github.com/getorcreate/getorcreate/dialect/postgres"
package dialect

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
)

// Querier runs one statement. The library adapts *sql.DB, *sql.Tx,
// *sql.Conn and pgx's handles to it.
type Querier interface {
	Query(ctx context.Context, query string, args ...any) (Rows, error)
	Exec(ctx context.Context, query string, args ...any) (Result, error)
}

// TxReporter is implemented by a Querier that knows whether it is a
// transaction. A plan that needs its statements to see one snapshot asks
// through Batch.InTx, which the core fills from it.
type TxReporter interface {
	IsTx() bool
}

// Rows is the part of *sql.Rows the library reads.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close() error
}

// Result is the part of sql.Result the library reads.
type Result interface {
	RowsAffected() (int64, error)
	LastInsertId() (int64, error)
}

// Beginner starts the library's own transactions, for the paths that need
// more than one statement to be atomic.
type Beginner interface {
	Begin(ctx context.Context, iso sql.IsolationLevel) (Tx, error)
}

// Tx is a transaction the library owns.
type Tx interface {
	Querier
	Commit(ctx context.Context) error
	Rollback(ctx context.Context) error
}

// Class is what an error means for get-or-create, decided from SQLSTATEs,
// MySQL error numbers or SQLite extended codes, never from message text.
type Class int

// The classes of errors.
const (
	ClassOther         Class = iota // nothing the library treats specially
	ClassUnique                     // a unique or primary key violation the plan did not resolve
	ClassSerialization              // a serialization failure (40001), or SQLite's stale snapshot
	ClassDeadlock                   // a deadlock (40P01, MySQL 1213)
	ClassBusy                       // SQLITE_BUSY, a lock wait timeout, a lock not available
	ClassTooLong                    // a value too long for its column (22001, 1406)
	ClassInvalidValue               // a value of the wrong type or out of range
	ClassNotNull                    // a NULL in a NOT NULL column
	ClassCardinality                // PostgreSQL 21000: one statement touched a row twice
	ClassLostRace                   // the row kept appearing and disappearing under the plan
	ClassNotCovered                 // the proposed row does not satisfy the partial index's predicate (Table.Where)
	// ClassConnection: the connection was lost or refused. Error.MayHaveRun
	// says whether the statement may have reached the server and run.
	ClassConnection
)

// Error is a database error as a dialect interpreted it. Plans return only
// *Error values (or nil); Dialect.Interpret makes them from driver errors.
type Error struct {
	Class Class
	// Constraint names the violated constraint or index, when the
	// database says.
	Constraint string
	// Row is the position in Batch.Rows of the row that caused the error,
	// when HasRow is set (bulk plans only).
	Row    int
	HasRow bool
	// MayHaveRun, for ClassConnection, is set when the statement may have
	// reached the server and run before the connection was lost (it is
	// clear when the driver knows nothing was sent, or the server refused
	// the connection).
	MayHaveRun bool
	// Err is the driver's error, or the plan's own.
	Err error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("database error (class %d)", e.Class)
	}
	return e.Err.Error()
}

// Unwrap returns the driver's error.
func (e *Error) Unwrap() error { return e.Err }

// LostRace is the error a plan returns when it went round its
// insert-or-select loop LostRaceTries times without getting the row.
func LostRace() *Error {
	return &Error{Class: ClassLostRace, Err: errors.New("lost the race for the row too many times (it kept being created and deleted)")}
}

// LostRaceTries is how many times a plan goes round its insert-or-select
// loop before it returns LostRace.
const LostRaceTries = 4

// NotCovered is the error a plan returns when it inserted nothing because
// the proposed row does not satisfy Table.Where: a row outside the partial
// index could be inserted again and again, and no lookup would find it.
func NotCovered(where string) *Error {
	return &Error{Class: ClassNotCovered, Err: fmt.Errorf("the row does not satisfy the partial index's predicate (%s), so it was not inserted", where)}
}

// Column describes one column of the live table.
type Column struct {
	Name       string
	Type       string // as the database names it
	Nullable   bool
	HasDefault bool // a DEFAULT, identity, serial or auto-increment: the database can fill it
	Identity   bool // generated by the database (identity, serial, auto-increment, rowid alias)
	Collation  string
	// Default is the DEFAULT expression as the database prints it, or ""
	// for none and for values the database generates (identity, generated
	// columns).
	Default string

	// What the column does to a value, for the checks that keep a key
	// from being stored or compared as another value.
	Kind ValueKind
	// Length is, for KindText, the most characters the column holds and,
	// for KindBinary, the most bytes; 0 when the library knows no limit.
	Length int
	// Fixed says how the column changes a value shorter than Length.
	Fixed Fixed
	// Bits is the width of a KindInt or KindFloat column.
	Bits int
	// Unsigned is set for an unsigned KindInt column.
	Unsigned bool
	// Digits is how many fractional digits of a second a KindTime column
	// keeps.
	Digits int
	// TimeProblem, when set, says why a time.Time does not come back from
	// this column as the instant it was, on this connection, and how to
	// fix it.
	TimeProblem string
}

// ValueKind is what a column holds, as far as the key checks care.
type ValueKind uint8

// The kinds of column value.
const (
	KindOther   ValueKind = iota // a type the library does not check (json, uuid, enum, arrays, ...)
	KindText                     // character strings
	KindBinary                   // byte strings
	KindInt                      // integers: Bits wide, Unsigned or not
	KindDecimal                  // exact numbers (and SQLite's NUMERIC affinity)
	KindFloat                    // binary floating point, Bits wide
	KindBool                     // booleans
	KindTime                     // a date and a time of day, to Digits fractional digits of a second
	KindDate                     // a calendar day
)

// Fixed is what a fixed-length column (CHAR(n), BINARY(n)) does to a value
// shorter than its length.
type Fixed uint8

// The fixed-length behaviours.
const (
	NotFixed    Fixed = iota
	PadsSpaces        // stores and returns it padded with spaces (PostgreSQL char(n))
	TrimsSpaces       // returns it without its trailing spaces (MariaDB/MySQL CHAR(n))
	PadsZeros         // stores and returns it padded with zero bytes (MariaDB/MySQL BINARY(n))
)

// Index describes a unique index or constraint of the live table.
type Index struct {
	Name             string
	Columns          []string // empty when the index is on expressions
	Primary          bool
	Partial          bool   // has a WHERE predicate
	Predicate        string // the WHERE of a partial index, as the database prints it
	Deferrable       bool
	Expression       bool // on expressions (or a column prefix), not plain columns
	NullsNotDistinct bool // NULLs compare equal (PostgreSQL 15 NULLS NOT DISTINCT)
}

// Schema is what Inspect reads of a table.
type Schema struct {
	Table    string
	Columns  []Column
	Unique   []Index // primary key and unique indexes/constraints
	Triggers []string
	Version  string // the server's version
	// Isolation is the connection's default transaction isolation as the
	// server names it ("READ-COMMITTED"), where the dialect reads it.
	Isolation string
}

// Column returns the column named name, or nil.
func (s *Schema) Column(name string) *Column {
	for i := range s.Columns {
		if s.Columns[i].Name == name {
			return &s.Columns[i]
		}
	}
	return nil
}

// Features are what the core needs to know of a database at its detected
// version.
type Features struct {
	// MaxParams bounds the parameters of one statement: bulk calls are
	// cut into chunks that fit.
	MaxParams int
	// PrepareOnce: the driver prepares each statement anew when it runs
	// with arguments through database/sql (go-sql-driver without
	// interpolateParams, modernc.org/sqlite), so the core keeps prepared
	// statements for the table's own calls on a *sql.DB.
	PrepareOnce bool
	// UpdateNeedsTx: the UpdateOrCreate plan sends more than one statement
	// whose results must agree (MySQL without RETURNING), so the core runs
	// it in a transaction of its own when the caller has none.
	UpdateNeedsTx bool
	// PartialIndexes: the database has partial unique indexes and can
	// arbitrate an insert on one (ON CONFLICT (key) WHERE ...).
	PartialIndexes bool
	// BulkRowArgs: the bulk upsert can bind each row's own update
	// arguments (Shape.RowArgs). MariaDB's cannot: its duplicate-key
	// update sees only the row's columns, and it evaluates every VALUES
	// row before the first update, so a per-row variable would hold the
	// last row's value.
	BulkRowArgs bool
	// AtomicBulkUpsert: a chunk of a bulk upsert is one statement (on a
	// table without a partial arbiter), atomic by itself, so a batch of
	// one chunk needs no transaction around it (PostgreSQL).
	AtomicBulkUpsert bool
	// Refusal, when set, is why no table can be used safely on this
	// connection as it is set up, and the fix: Open refuses the table.
	Refusal *Refusal
	// ReplanUntil, when not 0, says the table was too small at Open for a
	// plan the server caches now to serve it once it has grown
	// (PostgreSQL: a generic plan made on an empty table is a sequential
	// scan, CL-9): the core has each statement planned for its values (see
	// Replan) until its calls have created this many rows.
	ReplanUntil int64
}

// Replan is a table's switch for having each statement planned for the
// values it runs with instead of run by a plan the server cached for the
// statement. Arg is the driver's way of asking for that, passed as a
// statement's first argument (pgx: a QueryExecMode); the Queriers that
// know their driver takes it add it while the switch is on.
type Replan struct {
	Arg any
	on  atomic.Bool
}

// NewReplan returns a switch for arg, off.
func NewReplan(arg any) *Replan { return &Replan{Arg: arg} }

// Set turns the switch on or off.
func (r *Replan) Set(on bool) { r.on.Store(on) }

// On reports whether statements are planned for their values.
func (r *Replan) On() bool { return r != nil && r.on.Load() }

// Args returns args with Arg in front while the switch is on.
func (r *Replan) Args(args []any) []any {
	if !r.On() {
		return args
	}
	out := make([]any, 0, len(args)+1)
	return append(append(out, r.Arg), args...)
}

// Replanner is implemented by a handle of the library's own whose driver
// can have a statement planned for its values: Replan is the switch it
// obeys (nil when its statements are never run by a cached plan).
type Replanner interface {
	Replan() *Replan
}

// ReplanTaker is implemented by a caller's handle (a ...Tx call's) that
// can obey a table's switch: WithReplan returns it obeying r.
type ReplanTaker interface {
	WithReplan(r *Replan) Querier
}

// ReplanProber is implemented by a dialect whose driver may run
// statements by plans the server cached. ReplanArg returns the argument
// that makes db's driver plan a statement for its values, or nil when db
// needs none (it never caches plans) or cannot take one.
type ReplanProber interface {
	ReplanArg(ctx context.Context, db *sql.DB) any
}

// Refusal is a setting of the connection that would let the database
// store or compare a key as another value (MariaDB without a strict
// sql_mode), and how to change it.
type Refusal struct {
	Problem string
	Fix     string
}

// Table is what a dialect needs to build the statements for one table.
type Table struct {
	Name    string   // the table as the user named it (may be schema-qualified)
	Columns []string // mapped columns, in the order rows are scanned
	Key     []int    // positions in Columns of the key columns
	Arbiter Index    // the unique index that covers exactly the key
	Schema  *Schema
	// OtherUnique are the unique indexes other than Arbiter: an insert can
	// conflict on them.
	OtherUnique []Index
	// Where is the predicate of a partial Arbiter, as the database prints
	// it, or "": every lookup adds it, every insert arbitrates on it, and an
	// insert whose proposed row does not satisfy it inserts nothing.
	Where string
	// WhereColumns are the columns Where reads: the proposed row it is
	// evaluated on carries each of them (see ProposedValue).
	WhereColumns []string
}

// ProposedValue says what the proposed row of an insert of shape s holds
// in column col, for evaluating Table.Where on it: when the shape inserts
// the column, pos is its position in Columns (the call's value); else pos
// is -1 and expr is the SQL of what the database puts there, its DEFAULT
// or NULL.
func (t *Table) ProposedValue(s *Shape, col string) (pos int, expr string) {
	for _, p := range s.Insert {
		if t.Columns[p] == col {
			return p, ""
		}
	}
	if c := t.Schema.Column(col); c != nil && c.Default != "" {
		return -1, c.Default
	}
	return -1, "NULL"
}

// Shape is what a statement depends on beyond the table: which columns an
// insert gives and the assignments of an update. Plans are compiled once
// per table and shape and then reused.
type Shape struct {
	Insert  []int        // positions in Table.Columns given on insert
	Updates []Assignment // UpdateOrCreate only
	// NullKeys has bit i set when key column i (in Table.Key order) is
	// NULL in this call: only possible under NULLS NOT DISTINCT.
	NullKeys uint64
	// RowArgs, for a bulk plan with updates, says that each row of a
	// Batch carries its own update arguments in its Call.UpdateArgs
	// (Batch.UpdateArgs is unused): a coalesced batch of calls with
	// different values. The core sets it only when every argument is the
	// value of a Set, Add, Greatest or Least, so a dialect that must type
	// it types it as the assignment's column.
	RowArgs bool
}

// Assignment sets one column on update.
type Assignment struct {
	Column string
	Expr   Expr
}

// ExprOp is the kind of an update expression node.
type ExprOp int

// The update expression nodes.
const (
	OpArg      ExprOp = iota // a bound value: Call.UpdateArgs[Arg]
	OpExisting               // the stored row's column
	OpProposed               // the proposed (create) row's column
	OpAdd                    // Args[0] + Args[1]
	OpGreatest               // the greater of Args[0], Args[1]
	OpLeast                  // the lesser of Args[0], Args[1]
	OpRaw                    // SQL with one ? per Args element
)

// Expr is an update expression, evaluated by the database.
type Expr struct {
	Op   ExprOp
	Col  string
	Arg  int
	SQL  string
	Args []Expr
}

// Call carries one call's values to a Plan, and what the plan did back.
type Call struct {
	Values     []any // one per Table.Columns; only Shape.Insert positions are sent on insert
	UpdateArgs []any // the bound values of the assignments, in Expr order
	Dest       []any // scan targets, one per Table.Columns
	// InTx is true for the ...Tx calls, on the caller's handle: the plan
	// must not start or end transactions, and SQLite reads before it writes
	// there (a write needs its one write lock; a read does not).
	InTx bool
	// ReadFirst asks the plan to look the key up before it tries to
	// insert; when false it inserts first where that never writes an
	// existing row. Either order is correct; only the statement count
	// differs.
	ReadFirst bool
	// Raced is set by the plan when the row it returns was created by
	// another transaction between this call's lookup and its insert.
	Raced bool
}

// Statement is one statement of a plan, named by its role, for
// diagnostics.
type Statement struct {
	Path string // "get-or-create" or "update-or-create": the path that sends it
	Role string // "find", "insert", "upsert", ...
	SQL  string
}

// The paths of Statement.Path.
const (
	PathGet    = "get-or-create"
	PathUpdate = "update-or-create"
)

// Plan runs the compiled statements of one table and shape.
type Plan interface {
	// Find looks the row up by key without writing, scanning it into c.Dest.
	Find(ctx context.Context, q Querier, c *Call) (found bool, err error)
	// GetOrCreate finds the row by key or inserts it, scans it into
	// c.Dest and reports whether this call created it.
	GetOrCreate(ctx context.Context, q Querier, c *Call) (created bool, err error)
	// UpdateOrCreate applies the assignments to the row with the key, or
	// inserts it, scans the row as stored into c.Dest and reports whether
	// this call created it.
	UpdateOrCreate(ctx context.Context, q Querier, c *Call) (created bool, err error)
	// Statements lists the plan's statements.
	Statements() []Statement
}

// Batch carries one chunk of a bulk call to a BulkPlan: distinct keys, in
// the deterministic order in which they are written.
type Batch struct {
	Rows       []*Call
	Created    []bool // out: one per row
	UpdateArgs []any
	// InTx is true when the handle is known to be a transaction (the
	// library's own, or a caller's *sql.Tx or pgx.Tx), so that the batch's
	// statements see no other writer's commits between them on SQLite.
	InTx bool
}

// BulkPlan runs the compiled statements of one table and shape for batches
// of up to the number of rows it was compiled for.
type BulkPlan interface {
	// GetOrCreateMany finds or inserts every row of the batch, scanning
	// each into its Call.Dest and setting Created.
	GetOrCreateMany(ctx context.Context, q Querier, b *Batch) error
	// UpdateOrCreateMany applies the assignments to every existing row of
	// the batch and inserts the others.
	UpdateOrCreateMany(ctx context.Context, q Querier, b *Batch) error
}

// Dialect is one database's implementation.
type Dialect interface {
	// Name is "postgres", "mysql" or "sqlite".
	Name() string
	// Quote quotes an identifier, or a dot-separated qualified name.
	Quote(ident string) string
	// Detect reports whether q is connected to this dialect's database,
	// by asking the server; for handles whose driver it cannot tell by type
	// (a wrapping driver, another driver for the same database).
	Detect(ctx context.Context, q Querier) bool
	// Inspect reads the table's columns, unique indexes and triggers.
	// It returns ErrNoTable when the table does not exist.
	Inspect(ctx context.Context, q Querier, table string) (*Schema, Features, error)
	// Interpret classifies a driver error: it returns an *Error (err
	// itself when it is one already), or nil for nil.
	Interpret(err error) error
	// Compile builds the statements for a table and shape.
	Compile(t *Table, s *Shape, f Features) (Plan, error)
	// CompileBulk builds the statements for batches of up to rows rows.
	CompileBulk(t *Table, s *Shape, f Features, rows int) (BulkPlan, error)
	// CreateIndexDDL is the statement that would create a unique index on
	// the columns.
	CreateIndexDDL(table string, columns []string) string
	// LedgerDDL is the statements that create a request ledger table
	// (request_id, fingerprint, outcome, created_unix_ms), if it does not
	// exist.
	LedgerDDL(table string) []string
}

// ErrNoTable is returned by Inspect when the table does not exist.
var ErrNoTable = errors.New("table does not exist")

var (
	regMu    sync.RWMutex
	registry []registration
)

type registration struct {
	d     Dialect
	match func(driver.Driver) bool
}

// Register makes a dialect available for the drivers match accepts, and to
// Detect. The database packages call it from init.
func Register(d Dialect, match func(driver.Driver) bool) {
	regMu.Lock()
	defer regMu.Unlock()
	registry = append(registry, registration{d, match})
}

func registered() []registration {
	regMu.RLock()
	defer regMu.RUnlock()
	return registry
}

// ForDriver returns the registered dialect for a database/sql driver, by
// its type.
func ForDriver(drv driver.Driver) (Dialect, bool) {
	for _, r := range registered() {
		if r.match(drv) {
			return r.d, true
		}
	}
	return nil, false
}

// Find returns the dialect for a *sql.DB: by its driver's type, else by
// asking the server (for a driver behind an instrumenting wrapper, or a
// driver the dialects do not know by name).
func Find(ctx context.Context, db *sql.DB, q Querier) (Dialect, error) {
	if d, ok := ForDriver(db.Driver()); ok {
		return d, nil
	}
	regs := registered()
	for _, r := range regs {
		if r.d.Detect(ctx, q) {
			return r.d, nil
		}
	}
	if err := db.PingContext(ctx); err != nil {
		return nil, fmt.Errorf("finding the dialect of driver %T: %w", db.Driver(), err)
	}
	names := make([]string, len(regs))
	for i, r := range regs {
		names[i] = r.d.Name()
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no getorcreate dialect is registered: import one of github.com/getorcreate/getorcreate/dialect/{postgres,mysql,sqlite}")
	}
	return nil, fmt.Errorf("the server behind driver %T is none of the registered dialects (%s): import the dialect for it, or set Config.Dialect", db.Driver(), strings.Join(names, ", "))
}

// Interpret classifies err with the registered dialects: for errors of the
// caller's own statements, whose handle the library never saw. Each
// dialect knows its driver's error types, and every one reads the network
// errors all drivers share, so where several claim err the most precise
// answer wins: a class other than a lost connection, then a lost
// connection that a dialect knows ran nothing (pgx's connect error, say).
// It returns nil when none recognises err.
func Interpret(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var best *Error
	rank := func(e *Error) int {
		switch {
		case e.Class != ClassConnection:
			return 2
		case !e.MayHaveRun:
			return 1
		}
		return 0
	}
	for _, r := range registered() {
		var c *Error
		if errors.As(r.d.Interpret(err), &c) && c.Class != ClassOther && (best == nil || rank(c) > rank(best)) {
			best = c
		}
	}
	return best
}
