package getorcreate

import (
	"errors"
	"fmt"
	"strings"

	"github.com/getorcreate/getorcreate/dialect"
)

// Sentinel errors. The errors the library recognises match one of them with
// errors.Is and wrap the driver's error too; an error it does not recognise
// (a foreign-key or CHECK violation) comes back as an *Error with a nil
// Kind, wrapping the driver's error, and a cancelled context's error
// matches context.Canceled or context.DeadlineExceeded.
var (
	// ErrNoUniqueIndex: no PRIMARY KEY or non-partial, non-deferrable UNIQUE
	// constraint or index covers exactly the key columns, so the database
	// cannot keep one row per key under concurrency. Returned by Open as a
	// *SchemaError carrying the DDL that fixes it.
	ErrNoUniqueIndex = errors.New("no unique index covers exactly the key columns")
	// ErrNoTable: the table does not exist.
	ErrNoTable = errors.New("table does not exist")
	// ErrMapping: a struct field maps to no column, a key column maps to no
	// field, or a NOT NULL column without a default is not mapped.
	ErrMapping = errors.New("struct does not match the table")
	// ErrNullKey: a key value is NULL and the unique index treats NULLs as
	// distinct, so no row could ever be found again by that key.
	ErrNullKey = errors.New("NULL key value")
	// ErrKeyAltered: the database would not store or compare the key as
	// the value given: it would cut it to the column's length, pad it,
	// round it, or convert it between a string and a number, so a lookup
	// would miss the stored row or find another key's. A call returns it
	// (in an *Error naming the column and the value) before it sends
	// anything; a key too long also matches ErrValueTooLong, one out of
	// range ErrInvalidValue. Open returns it (in a *SchemaError) for a key
	// field whose Go type the column would convert, and for a MariaDB or
	// MySQL connection whose sql_mode is not strict. Not retryable.
	ErrKeyAltered = errors.New("the database would store or compare the key as another value")
	// ErrNotCovered: the row to create does not satisfy the predicate of
	// the partial unique index (Config.Where), so the index would not
	// cover it: nothing was inserted. Not retryable.
	ErrNotCovered = errors.New("row outside the partial unique index")
	// ErrUnsupported: the Config asks for what the database cannot do
	// safely (Config.Where on MariaDB/MySQL, which have no partial
	// indexes; a partial index beside another unique index on the same
	// columns). Returned by Open as a *SchemaError.
	ErrUnsupported = errors.New("not supported by this database or schema")
	// ErrInvalidUpdate: an update names an unknown or key column, or its
	// expression does not fit its arguments.
	ErrInvalidUpdate = errors.New("invalid update")
	// ErrConflict: the row conflicts on a unique constraint other than the
	// key; see Error.Constraint.
	ErrConflict = errors.New("conflict on another unique constraint")
	// ErrSerialization: the database could not serialize the transaction
	// (SQLSTATE 40001). Retryable.
	ErrSerialization = errors.New("serialization failure")
	// ErrDeadlock: the database broke a deadlock by failing this transaction. Retryable.
	ErrDeadlock = errors.New("deadlock")
	// ErrBusy: the database is locked by another writer (SQLITE_BUSY) or a
	// lock wait timed out. Retryable.
	ErrBusy = errors.New("database busy")
	// ErrValueTooLong: a value is too long for its column.
	ErrValueTooLong = errors.New("value too long for column")
	// ErrInvalidValue: a value has the wrong type or is out of range.
	ErrInvalidValue = errors.New("invalid value for column")
	// ErrNotNull: a NULL was given for a NOT NULL column.
	ErrNotNull = errors.New("NULL in NOT NULL column")
	// ErrDuplicateInput: two inputs of one UpdateOrCreateMany batch are one
	// key under the column's collation (citext, a nondeterministic
	// collation) though their bytes differ, and PostgreSQL cannot update a
	// row twice in one statement (21000). Send them in separate batches.
	ErrDuplicateInput = errors.New("two inputs of one batch are the same key under the column's collation")
	// ErrLostRace: the row kept changing under the call (created and deleted
	// again by others, or changed on its way in, as by a trigger that
	// rewrites the key) more times than the retry limit allows. Retryable;
	// the library's own calls retry it twice at most,
	// since a condition that persists would otherwise spend the whole
	// retry budget.
	ErrLostRace = errors.New("row kept changing under the call")
	// ErrConnection: the connection to the database was lost or refused
	// (a restart, a failover, a killed session, a proxy's timeout, too many
	// connections), and nothing the call did was committed: the statement
	// never reached the server, or its transaction never committed.
	// Retryable: the library's own calls retry it on another connection.
	ErrConnection = errors.New("database connection lost or refused")
	// ErrIndeterminate: the connection was lost after a statement or a
	// COMMIT may have reached the server and taken effect: the outcome is
	// not known. It matches ErrConnection too, but it is not retryable: a
	// write that is not idempotent must not be sent again blindly (see
	// Result.MaybeCreated for the calls the library does retry, and
	// package docs for making any write safe to retry).
	ErrIndeterminate error = indeterminate{}
	// ErrRequestReused: UpdateOrCreateOnce was given a request id that the
	// ledger holds for a different request (other values or updates).
	ErrRequestReused = errors.New("request id already used for a different request")
	// ErrInvalidRequestID: a request id is empty or too long for the
	// ledger (MaxRequestIDLength).
	ErrInvalidRequestID = errors.New("invalid request id")
)

type indeterminate struct{}

func (indeterminate) Error() string {
	return "outcome unknown: the connection was lost after the write may have taken effect"
}

// Is makes ErrIndeterminate match ErrConnection: it is a lost connection
// too.
func (indeterminate) Is(target error) bool { return target == ErrConnection }

// Error is a failed call. It matches its Kind and its wrapped driver error
// with errors.Is and errors.As.
type Error struct {
	Op         string // "GetOrCreate", "UpdateOrCreate", ...
	Table      string
	Kind       error  // one of the sentinel errors, or nil for an unclassified driver error
	Constraint string // the other unique constraint, for ErrConflict, when known
	Input      int    // for bulk calls, the position of the failing input; else -1
	Err        error  // the driver's error, or nil
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "getorcreate: %s %s", e.Op, e.Table)
	if e.Input >= 0 {
		fmt.Fprintf(&b, " (input %d)", e.Input)
	}
	if e.Kind != nil {
		b.WriteString(": ")
		b.WriteString(e.Kind.Error())
		if e.Constraint != "" {
			fmt.Fprintf(&b, " %q", e.Constraint)
		}
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the kind and the driver error.
func (e *Error) Unwrap() []error {
	errs := make([]error, 0, 2)
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// SchemaError says why Open refused a table and how to fix it.
type SchemaError struct {
	Table   string
	Key     []string
	Kind    error  // ErrNoUniqueIndex, ErrMapping, ErrNoTable, ErrKeyAltered or ErrUnsupported
	Problem string // what is wrong, in a sentence
	Fix     string // the DDL or change that fixes it, when there is one
}

func (e *SchemaError) Error() string {
	s := fmt.Sprintf("getorcreate: table %s, key (%s): %v: %s", e.Table, strings.Join(e.Key, ", "), e.Kind, e.Problem)
	if e.Fix != "" {
		s += "; fix: " + e.Fix
	}
	return s
}

// Unwrap returns the kind.
func (e *SchemaError) Unwrap() error { return e.Kind }

// IsRetryable reports whether err is a serialization failure, a deadlock, a
// busy database, a lock wait timeout, a lost race (ErrLostRace) or a
// connection lost before anything could take effect (ErrConnection, but not
// ErrIndeterminate): running the whole transaction again may succeed and
// cannot apply anything twice. (Most of these end the transaction; MySQL's
// lock wait timeout rolls back only the statement, but retrying the
// transaction is still the safe response.) It reads the library's errors
// and, through the imported dialects, the drivers' own. Inside a caller's
// transaction the library never retries by itself; use RunTx.
//
// Use IsRetryable, not errors.Is(err, ErrConnection), to decide on a
// retry: ErrIndeterminate matches ErrConnection too.
func IsRetryable(err error) bool {
	switch Kind(err) {
	case ErrSerialization, ErrDeadlock, ErrBusy, ErrLostRace, ErrConnection:
		return true
	}
	return false
}

// Kind returns the sentinel error that says what err means: the Kind of a
// library *Error, or, for an error straight from a driver (a statement of
// your own in a transaction), the class an imported dialect gives it. It
// returns nil for nil and for errors no dialect recognises.
func Kind(err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) && e.Kind != nil {
		return e.Kind
	}
	var se *SchemaError
	if errors.As(err, &se) {
		return se.Kind
	}
	for _, k := range kinds {
		if errors.Is(err, k) {
			return k
		}
	}
	if de := dialect.Interpret(err); de != nil {
		return kindOf(de)
	}
	return nil
}

// kinds are the sentinels a wrapped error may match directly, the more
// precise first.
var kinds = []error{ErrIndeterminate, ErrConnection, ErrSerialization, ErrDeadlock, ErrBusy, ErrLostRace, ErrKeyAltered, ErrNotCovered, ErrConflict, ErrValueTooLong, ErrInvalidValue, ErrNotNull, ErrNullKey, ErrDuplicateInput, ErrInvalidUpdate, ErrRequestReused, ErrInvalidRequestID}

// kindOf maps a dialect's error to a sentinel.
func kindOf(de *dialect.Error) error {
	switch de.Class {
	case dialect.ClassConnection:
		if de.MayHaveRun {
			return ErrIndeterminate
		}
		return ErrConnection
	case dialect.ClassLostRace:
		return ErrLostRace
	case dialect.ClassNotCovered:
		return ErrNotCovered
	case dialect.ClassSerialization:
		return ErrSerialization
	case dialect.ClassDeadlock:
		return ErrDeadlock
	case dialect.ClassBusy:
		return ErrBusy
	case dialect.ClassTooLong:
		return ErrValueTooLong
	case dialect.ClassInvalidValue:
		return ErrInvalidValue
	case dialect.ClassNotNull:
		return ErrNotNull
	case dialect.ClassUnique:
		return ErrConflict
	case dialect.ClassCardinality:
		return ErrDuplicateInput
	}
	return nil
}
