package getorcreate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"

	"github.com/getorcreate/getorcreate/dialect"
	"github.com/getorcreate/getorcreate/internal/mapping"
)

// Config configures a Table. Only Table and Key are required.
type Config struct {
	// Table is the table's name, optionally schema-qualified ("app.tags").
	Table string
	// Key are the columns that identify a row. A PRIMARY KEY or a
	// non-partial, non-deferrable UNIQUE constraint or index must cover
	// exactly these columns, or, with Where, a partial unique index.
	Key []string
	// Where, when set, is the predicate of a partial unique index on the
	// Key columns, such as "deleted_at IS NULL" (PostgreSQL and SQLite):
	// the key is unique only among the rows it holds for. Every lookup
	// adds it, so a row outside it (a soft-deleted one) is never returned
	// and a new row can be created beside it; a row to create that does
	// not satisfy it is refused with ErrNotCovered. Open compares it with
	// the index's predicate as the database prints it (PostgreSQL's
	// pg_get_expr adds casts: 'x'::text), ignoring whitespace, the case of
	// keywords and names, and outer parentheses; its error shows the text
	// to use. No other unique index may cover the Key columns: PostgreSQL
	// and SQLite would take it as an arbiter too.
	Where string
	// Retry bounds the retries of the library's own transactions. The zero
	// value means DefaultRetry.
	Retry RetryPolicy
	// Order says whether a call looks its key up before it tries to
	// insert. The zero value, Adaptive, follows the table's recent calls.
	Order Order
	// Tracer, when set, observes every call (see Tracer).
	Tracer Tracer
	// Ledger, when set, records the request ids of UpdateOrCreateOnce. It
	// must be on the same database as the table.
	Ledger *Ledger
	// Dialect, when set, is used instead of finding the database's dialect
	// from the driver or the server: one of the values the packages under
	// dialect/ export, such as postgres.Dialect.
	Dialect dialect.Dialect
	// Replica, when set, serves the existing-key lookups of GetOrCreate
	// and GetOrCreateMany: a *sql.DB on a hot standby (or on a pool of
	// them), or pgxv5.Tx(standbyPool). A key it does not find, and every
	// write, goes to the primary, where the unique index decides. See
	// replica.go's notes and FromPrimary for what may be stale.
	Replica Querier
	// Coalesce, when set, merges the GetOrCreate and UpdateOrCreate calls
	// that goroutines of this process make on the table while a statement
	// of the same shape (GetOrCreate, or UpdateOrCreate with the same
	// updates, values aside) is in flight: they queue, and when the flight
	// lands they go together as the next batch, one bulk statement per
	// chunk (see UpdateOrCreateMany) in one transaction of the library's
	// own. A call that finds nothing in flight goes out at once as the
	// plain single call, so sparse calls wait for nothing. Each caller
	// gets its own Result and its own error:
	//
	//   - GetOrCreate callers of one key in a batch share its row; the
	//     first in arrival order gets Created if the batch created it.
	//   - UpdateOrCreate calls whose updates are all Add of Go integers to
	//     integer fields, or Set of values their fields can hold, merge per
	//     key into one write of the sums and the last caller's Set values,
	//     and exactly one of them (the first) can see Created. Each caller's
	//     Row shows the row as if the calls had been applied one by one in
	//     arrival order: the merged count less the deltas of the callers
	//     after it, and its own Set values as it gave them (the last caller
	//     sees the row as stored; a first caller that created the row sees
	//     the row it proposed, count and Set columns included).
	//   - Any other update of a key already in the batch waits for the next
	//     batch, so a batch means what its calls would, run one after the
	//     other.
	//   - An input that a single call refuses before sending (a NULL key, a
	//     key the database would alter, an invalid update) fails before it
	//     joins. If a batch fails for certain (a value too long, a conflict
	//     on another unique index, any error but ErrIndeterminate), nothing
	//     of it was committed and each of its calls is then sent alone, so
	//     a bad input fails only its own caller. If its outcome is not
	//     known (ErrIndeterminate, after the retries idempotent batches
	//     get), every caller gets ErrIndeterminate.
	//   - A caller whose context ends while it is queued leaves with the
	//     context's error and nothing sent for it; once its batch is sent,
	//     it returns at once with ErrIndeterminate (wrapping the context's
	//     error): the batch goes on without it, with the values of its
	//     first caller's context and the latest of its callers' deadlines
	//     (no deadline if one caller has none).
	//   - Attempts and MaybeCreated are the batch's. GetOrCreate still asks
	//     Config.Replica first, before it joins a batch.
	//
	// The ...Tx forms, GetOrCreateFunc, UpdateOrCreateOnce and the Many
	// calls are never coalesced. A Tracer sees every call; the statements
	// of a batch are counted once, on its first caller, and
	// TraceCallEndData.Batch says how many calls went together.
	Coalesce bool
}

// Order is which statement a call sends first when both orders are
// correct: a lookup, which costs nothing more when the key exists, or an
// insert that never writes an existing row, which costs nothing more when
// it does not. Only the number of statements differs; see the README's
// table of statements per call.
type Order int

// The orders.
const (
	// Adaptive looks up first unless most of the table's recent calls
	// created their key: each table keeps a clamped score of its calls
	// that found their key against those that created it.
	Adaptive Order = iota
	// ReadFirst always looks up first: for tables whose keys mostly exist.
	ReadFirst
	// WriteFirst always inserts first where the database allows it: for
	// tables whose keys are mostly new.
	WriteFirst
)

// Result is the outcome of a single-row call.
type Result[T any] struct {
	// Row is the row as stored after the call: every mapped column,
	// generated ids and database defaults included. On a table with
	// Config.Coalesce, a call whose increments were merged with others' in
	// one write sees the row at its own place in their sequence (see
	// Config.Coalesce): its count is the stored count less the deltas of
	// the calls after it, its Set columns the values it gave.
	Row T
	// Created is true when this call inserted the row. Among concurrent
	// calls for the same new key at most one sees true, and exactly one
	// unless a lost connection left the creator in doubt (MaybeCreated).
	// UpdateOrCreateOnce replays the first outcome, Created included, to
	// every sender of a request.
	Created bool
	// Attempts counts the tries of the library's own transaction: 1 unless
	// a serialization failure, deadlock, busy database or lost connection
	// was retried.
	Attempts int
	// MaybeCreated is set when Created is false but an earlier attempt of
	// this call was cut off (a lost connection) after its insert may have
	// taken effect: the row returned may then be the one that attempt
	// created. Created stays true for at most one caller of a key, and a
	// caller that sees neither Created nor MaybeCreated knows another
	// caller created the row, or that it existed.
	MaybeCreated bool
	// Replayed is set by UpdateOrCreateOnce when the request id had been
	// applied before: Row and Created are that first outcome, and nothing
	// was written this time.
	Replayed bool
	// FromReplica is set when the row was read on Config.Replica: the key
	// existed there, so Created is false, but the other columns are as
	// the replica had replayed them, which may be older than the
	// primary's (see FromPrimary).
	FromReplica bool
}

// Table is a handle on one table, with the struct mapping and the SQL built
// once. It is safe for concurrent use.
type Table[T any] struct {
	tableCore
}

// tableCore is the part of a Table that does not depend on T.
type tableCore struct {
	name   string
	d      dialect.Dialect
	feat   dialect.Features
	own    dialect.Querier // the handle Open was given, for the library's own calls
	beg    dialect.Beginner
	m      *mapping.Mapping
	dt     *dialect.Table
	retry  RetryPolicy
	order  Order
	tracer Tracer
	ledger *Ledger
	// replica serves existing-key lookups (Config.Replica), or is nil.
	replica dialect.Querier
	keyPos  []int // positions of the key fields
	// nullKeyOK[i] is true when key column i may be NULL and the index
	// treats NULLs as equal.
	nullKeyOK   []bool
	defaultable []int // positions of fields whose column the database can fill
	keyChecks   []keyCheck
	timePos     []int // positions of fields that may hold a time.Time, bound in UTC
	plans       sync.Map
	// finds counts recent calls that found their key (up) against those
	// that created it (down), clamped: the score Adaptive reads.
	finds atomic.Int32
	// coalesce is Config.Coalesce; lanes hold the queued calls of each
	// shape (laneKey -> *lane[T]), with at most maxFlight batches of a
	// shape in flight (1: a second, on keys the first does not hold,
	// measured no faster; BenchmarkCoalesce); flights counts the batches
	// running on goroutines of their own.
	coalesce  bool
	maxFlight int
	lanes     sync.Map
	flights   sync.WaitGroup
	// replan is the switch that has the table's statements planned for
	// their values while the table is small (dialect.Features.ReplanUntil),
	// or nil; created counts the rows its calls created meanwhile.
	replan  *dialect.Replan
	created atomic.Int64
}

// Open inspects the table once and returns a handle for get-or-create and
// update-or-create of rows of type T. T's exported fields map to columns by
// their `db` tag or their snake_case name; `db:"-"` skips a field.
//
// Open fails with a *SchemaError when no unique index covers exactly the key
// columns (ErrNoUniqueIndex, with the DDL that fixes it), when a field or key
// column maps to nothing (ErrMapping), or when the table does not exist
// (ErrNoTable). The database's dialect is found from db's driver, or, for a
// driver it does not know (an instrumenting wrapper, another driver for
// the same database), by asking the server; import the dialect package for
// your database.
func Open[T any](ctx context.Context, db *sql.DB, table string, key ...string) (*Table[T], error) {
	return OpenConfig[T](ctx, db, Config{Table: table, Key: key})
}

// OpenConfig is Open with a Config.
func OpenConfig[T any](ctx context.Context, db *sql.DB, cfg Config) (*Table[T], error) {
	if db == nil {
		return nil, errors.New("getorcreate: Open: nil *sql.DB")
	}
	d, err := dialectOf(ctx, db, cfg)
	if err != nil {
		return nil, err
	}
	if err := checkSession(ctx, d, db); err != nil {
		return nil, err
	}
	own := sqlDB{db: db, replan: replanOf(ctx, d, db)}
	if cfg.Replica != nil {
		if rdb, ok := cfg.Replica.(*sql.DB); ok && own.replan != nil {
			cfg.Replica = replicaDB{sqlDB{db: rdb, replan: replanOf(ctx, d, rdb)}}
		}
	}
	t, err := OpenDriver[T](ctx, d, own, own, cfg)
	if err == nil && t.feat.PrepareOnce {
		t.own = sqlDB{db: db, stmts: &stmtCache{db: db}}
	}
	return t, err
}

// replanOf asks the dialect, where it can tell, for the argument that has
// db's driver plan a statement for its values, and returns a switch for
// it (off), or nil.
func replanOf(ctx context.Context, d dialect.Dialect, db *sql.DB) *dialect.Replan {
	p, ok := d.(dialect.ReplanProber)
	if !ok {
		return nil
	}
	if arg := p.ReplanArg(ctx, db); arg != nil {
		return dialect.NewReplan(arg)
	}
	return nil
}

// replicaDB carries a replica pool that Open asked about to OpenDriver,
// which takes Config.Replica as a Querier.
type replicaDB struct{ sqlDB }

func (replicaDB) ExecContext(context.Context, string, ...any) (sql.Result, error) {
	return nil, errors.New("getorcreate: replicaDB is internal")
}

func (replicaDB) QueryContext(context.Context, string, ...any) (*sql.Rows, error) {
	return nil, errors.New("getorcreate: replicaDB is internal")
}

func dialectOf(ctx context.Context, db *sql.DB, cfg Config) (dialect.Dialect, error) {
	if cfg.Dialect != nil {
		return cfg.Dialect, nil
	}
	d, err := dialect.Find(ctx, db, sqlDB{db: db})
	if err != nil {
		return nil, fmt.Errorf("getorcreate: %w", err)
	}
	return d, nil
}

// OpenDriver opens a table on a handle that is not a *sql.DB, such as a pgx
// pool adapted by package pgxv5. Most users want Open.
func OpenDriver[T any](ctx context.Context, d dialect.Dialect, q dialect.Querier, b dialect.Beginner, cfg Config) (*Table[T], error) {
	if d == nil {
		return nil, errors.New("getorcreate: OpenDriver: nil dialect")
	}
	var zero T
	m, err := mapping.For(reflect.TypeOf(zero))
	if err != nil {
		return nil, &SchemaError{Table: cfg.Table, Key: cfg.Key, Kind: ErrMapping, Problem: err.Error()}
	}
	t := &Table[T]{tableCore{name: cfg.Table, d: d, own: q, beg: b, m: m, retry: cfg.Retry.orDefault(), order: cfg.Order, tracer: cfg.Tracer, ledger: cfg.Ledger,
		coalesce: cfg.Coalesce, maxFlight: 1}}
	if err := t.inspect(ctx, cfg); err != nil {
		return nil, err
	}
	if r, ok := q.(dialect.Replanner); ok && t.feat.ReplanUntil > 0 {
		if t.replan = r.Replan(); t.replan != nil {
			t.replan.Set(true)
		}
	}
	if cfg.Replica != nil {
		if rd, ok := cfg.Replica.(replicaDB); ok {
			// A replica's table is the primary's: its size is the same.
			t.replica = replanned(rd.sqlDB, t.replan)
		} else {
			t.replica = t.adapt(cfg.Replica)
		}
	}
	return t, nil
}

// Close releases the statements the table prepared on its *sql.DB (on
// SQLite and MariaDB/MySQL). Open a table once and share it; Close it when
// the program no longer needs it. It does not close the *sql.DB.
func (t *tableCore) Close() error {
	t.flights.Wait() // a coalesced batch in flight still uses them
	if s, ok := t.own.(sqlDB); ok && s.stmts != nil {
		return s.stmts.close()
	}
	return nil
}

// Name returns the table's name.
func (t *tableCore) Name() string { return t.name }

// Dialect returns the name of the table's database dialect: "postgres",
// "mysql" or "sqlite".
func (t *tableCore) Dialect() string { return t.d.Name() }
