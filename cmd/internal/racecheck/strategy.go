package racecheck

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/getorcreate/getorcreate"
	"github.com/getorcreate/getorcreate/dialect"
)

// row is a row of the scratch table.
type row struct {
	ID    int64  `db:"id"`
	Name  string `db:"name"`
	Count int64  `db:"count"`
}

// env is what one process needs to run a strategy on one scratch table.
type env struct {
	db   *sql.DB
	kind string // "sqlite", "postgres" or "mysql"
	d    dialect.Dialect
	iso  sql.IsolationLevel
	inTx bool
	tbl  *getorcreate.Table[row] // for the getorcreate strategy only
	q    statements
}

// statements are the naive strategies' SQL for one scratch table.
type statements struct {
	find   string // id, count by name
	insert string // name, count
	incr   string // count = count + 1 by name, evaluated by the database
	set    string // count = a value computed in Go, by name
	pin    string // the first read of an --in-tx transaction
}

func newStatements(d dialect.Dialect, kind, table, pin string) statements {
	ph := func(i int) string { return "?" }
	if kind == "postgres" {
		ph = func(i int) string { return fmt.Sprintf("$%d", i) }
	}
	t, name, count := d.Quote(table), d.Quote("name"), d.Quote("count")
	return statements{
		find:   fmt.Sprintf("SELECT %s, %s FROM %s WHERE %s = %s", d.Quote("id"), count, t, name, ph(1)),
		insert: fmt.Sprintf("INSERT INTO %s (%s, %s) VALUES (%s, %s)", t, name, count, ph(1), ph(2)),
		incr:   fmt.Sprintf("UPDATE %s SET %s = %s + 1 WHERE %s = %s", t, count, count, name, ph(1)),
		set:    fmt.Sprintf("UPDATE %s SET %s = %s WHERE %s = %s", t, count, ph(1), name, ph(2)),
		pin:    fmt.Sprintf("SELECT %s FROM %s WHERE %s = 1", d.Quote("id"), d.Quote(pin), d.Quote("id")),
	}
}

// handle is what *sql.DB and *sql.Tx share, for the naive strategies.
type handle interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// errNotFoundAfterDuplicate is insert-catch's failure: the INSERT said the
// key exists, and the SELECT that followed could not see it (a snapshot
// older than the winner's commit: MySQL/MariaDB REPEATABLE READ, PostgreSQL
// REPEATABLE READ or SERIALIZABLE inside a caller's transaction).
var errNotFoundAfterDuplicate = errors.New("duplicate key, yet the SELECT that followed found no row")

// op runs one operation of strategy on key: a get-or-create, or with incr
// an increment of the key's count that creates the row with count 1. It
// reports whether this call created the row and how many times the whole
// operation was retried.
func (e *env) op(ctx context.Context, strategy, key string, incr bool) (created bool, retries int, err error) {
	if strategy == GetOrCreate {
		return e.getorcreate(ctx, key, incr)
	}
	body := e.naive
	switch strategy {
	case InsertCatch:
		body = e.insertCatch
	case ReadModifyWrite:
		body = e.readModifyWrite
	}
	switch {
	case e.inTx:
		// Every strategy runs inside the caller's transaction, as in a
		// framework with one transaction per request. naive and naive-tx
		// are then the same code. Nobody retries: the naive code people
		// write does not.
		created, err = e.callerTx(ctx, func(tx *sql.Tx) (bool, error) { return body(ctx, tx, true, key, incr) })
	case strategy == NaiveTx:
		created, err = e.ownTx(ctx, func(tx *sql.Tx) (bool, error) { return body(ctx, tx, true, key, incr) })
	default:
		created, err = body(ctx, e.db, false, key, incr)
	}
	return created, 0, err
}

// callerTx runs fn in a transaction at the chosen isolation whose snapshot a
// first read pins: PostgreSQL takes the snapshot at the first statement and
// InnoDB its read view at the first consistent read, not at BEGIN, so
// without it the race window would be smaller than in a real request that
// read something (a session, a user) before it got to the get-or-create.
func (e *env) callerTx(ctx context.Context, fn func(*sql.Tx) (bool, error)) (bool, error) {
	return e.ownTx(ctx, func(tx *sql.Tx) (bool, error) {
		if err := e.pin(ctx, tx); err != nil {
			return false, err
		}
		return fn(tx)
	})
}

func (e *env) pin(ctx context.Context, tx *sql.Tx) error {
	var one int
	return tx.QueryRowContext(ctx, e.q.pin).Scan(&one)
}

// ownTx runs fn in a transaction at the chosen isolation and commits it.
func (e *env) ownTx(ctx context.Context, fn func(*sql.Tx) (bool, error)) (bool, error) {
	tx, err := e.db.BeginTx(ctx, &sql.TxOptions{Isolation: e.iso})
	if err != nil {
		return false, err
	}
	created, err := fn(tx)
	if err != nil {
		_ = tx.Rollback()
		return false, err
	}
	if err := tx.Commit(); err != nil {
		return false, err
	}
	return created, nil
}

// naive models the get-or-create most code starts with, in any language:
//
//	row = SELECT ... WHERE name = ?
//	if row is None: INSERT ...
//
// (naive-tx is the same inside BEGIN ... COMMIT, which people add believing
// a transaction makes it atomic; it does not, except on SQLite, whose
// BEGIN IMMEDIATE takes the single write lock up front.) Two callers that
// both SELECT before either INSERTs both insert: the unique index turns the
// second into a duplicate-key error shown to a user, and without the index
// it is a duplicate row. As a counter it increments in SQL (count = count +
// 1), so it loses no updates once the row exists.
func (e *env) naive(ctx context.Context, h handle, _ bool, key string, incr bool) (bool, error) {
	found, _, err := e.find(ctx, h, key)
	if err != nil {
		return false, err
	}
	if found {
		if incr {
			_, err = h.ExecContext(ctx, e.q.incr, key)
		}
		return false, err
	}
	_, err = h.ExecContext(ctx, e.q.insert, key, initialCount(incr))
	return err == nil, err
}

// readModifyWrite models the ORM counter: obj = get(name); obj.count += 1;
// obj.save(), or create(name, count=1) when there is none. The new value is
// computed in Go from a read that may be stale by the time the UPDATE runs,
// so concurrent increments overwrite each other: lost updates, under READ
// COMMITTED and under MySQL/MariaDB REPEATABLE READ. (PostgreSQL REPEATABLE
// READ and SERIALIZABLE refuse the stale write with a serialization
// failure instead, inside a caller's transaction.) Its create path is the
// naive one.
func (e *env) readModifyWrite(ctx context.Context, h handle, _ bool, key string, incr bool) (bool, error) {
	found, count, err := e.find(ctx, h, key)
	if err != nil {
		return false, err
	}
	if found {
		if incr {
			_, err = h.ExecContext(ctx, e.q.set, count+1, key)
		}
		return false, err
	}
	_, err = h.ExecContext(ctx, e.q.insert, key, initialCount(incr))
	return err == nil, err
}

// insertCatch models Django's QuerySet.get_or_create (and Rails'
// find_or_create_by with a rescue, and most hand-written "fixes"):
//
//	try: return get(name), False
//	except DoesNotExist:
//	    try:
//	        with transaction.atomic(): return create(name), True   # a savepoint inside a transaction
//	    except IntegrityError:
//	        try: return get(name), False
//	        except DoesNotExist: pass
//	        raise
//
// Outside a transaction it holds on READ COMMITTED databases. Inside a
// caller's transaction under a snapshot (MySQL/MariaDB REPEATABLE READ,
// their default, or PostgreSQL REPEATABLE READ/SERIALIZABLE), the second
// get cannot see the row the INSERT collided with, and the duplicate-key
// error is re-raised: "not-found-after-duplicate". As a counter it then
// increments in SQL, as update_or_create with F("count") + 1 would.
func (e *env) insertCatch(ctx context.Context, h handle, inTx bool, key string, incr bool) (bool, error) {
	found, _, err := e.find(ctx, h, key)
	if err != nil {
		return false, err
	}
	if !found {
		if inTx {
			err = e.insertInSavepoint(ctx, h, key, incr)
		} else {
			_, err = e.ownTx(ctx, func(tx *sql.Tx) (bool, error) {
				_, err := tx.ExecContext(ctx, e.q.insert, key, initialCount(incr))
				return true, err
			})
		}
		if err == nil {
			return true, nil
		}
		if getorcreate.Kind(err) != getorcreate.ErrConflict {
			return false, err
		}
		found, _, ferr := e.find(ctx, h, key)
		if ferr != nil {
			return false, ferr
		}
		if !found {
			return false, fmt.Errorf("%w: %w", errNotFoundAfterDuplicate, err)
		}
	}
	if !incr {
		return false, nil
	}
	_, err = h.ExecContext(ctx, e.q.incr, key)
	return false, err
}

// insertInSavepoint is Django's transaction.atomic() inside an outer
// transaction: a savepoint, so that on PostgreSQL the failed INSERT does not
// abort the caller's whole transaction.
func (e *env) insertInSavepoint(ctx context.Context, h handle, key string, incr bool) error {
	if _, err := h.ExecContext(ctx, "SAVEPOINT racecheck_sp"); err != nil {
		return err
	}
	if _, err := h.ExecContext(ctx, e.q.insert, key, initialCount(incr)); err != nil {
		if _, rerr := h.ExecContext(ctx, "ROLLBACK TO SAVEPOINT racecheck_sp"); rerr != nil {
			return fmt.Errorf("%w (and rolling back to the savepoint: %v)", err, rerr)
		}
		return err
	}
	_, err := h.ExecContext(ctx, "RELEASE SAVEPOINT racecheck_sp")
	return err
}

func (e *env) find(ctx context.Context, h handle, key string) (found bool, count int64, err error) {
	var id int64
	err = h.QueryRowContext(ctx, e.q.find, key).Scan(&id, &count)
	if errors.Is(err, sql.ErrNoRows) {
		return false, 0, nil
	}
	return err == nil, count, err
}

// initialCount is the count a new row gets: 1 when the call is an
// increment, which the new row counts.
func initialCount(incr bool) int64 {
	if incr {
		return 1
	}
	return 0
}

// retryPolicy is the retry budget racecheck gives getorcreate, for its own
// transactions and for RunTx around the caller's. The library's default is
// sized for ordinary contention; racecheck's counter puts half of 16
// workers' increments on one row, and at PostgreSQL SERIALIZABLE every
// concurrent writer of that row but one fails each time. With the default
// of 10 retries of the time, 1 operation in 3,200 exhausted it (2026-11-25;
// the default is 20 since). That is a budget too small for the load, not a
// wrong result, so racecheck gives one such contention does not exhaust and
// shows what it cost in the retries column. An error that still reaches the
// caller counts as an error.
var retryPolicy = getorcreate.RetryPolicy{MaxRetries: 100, BaseDelay: 2 * time.Millisecond, MaxDelay: 100 * time.Millisecond}

// getorcreate is the library, used as its documentation says: on its own
// (it owns and retries its transaction), or with --in-tx inside the
// caller's transaction, with the whole transaction retried by RunTx when
// the library returns a retryable error (PostgreSQL REPEATABLE READ or
// SERIALIZABLE, when the snapshot is older than the winner's commit).
func (e *env) getorcreate(ctx context.Context, key string, incr bool) (bool, int, error) {
	call := func(q getorcreate.Querier, inTx bool) (getorcreate.Result[row], error) {
		r := row{Name: key}
		switch {
		case incr && inTx:
			r.Count = 1
			return e.tbl.UpdateOrCreateTx(ctx, q, r, getorcreate.Add("count", 1))
		case incr:
			r.Count = 1
			return e.tbl.UpdateOrCreate(ctx, r, getorcreate.Add("count", 1))
		case inTx:
			return e.tbl.GetOrCreateTx(ctx, q, r)
		}
		return e.tbl.GetOrCreate(ctx, r)
	}
	if !e.inTx {
		res, err := call(nil, false)
		return res.Created, max(res.Attempts-1, 0), err
	}
	attempts, created := 0, false
	err := getorcreate.RunTxPolicy(ctx, e.db, &sql.TxOptions{Isolation: e.iso}, retryPolicy, func(tx *sql.Tx) error {
		attempts++
		created = false
		if err := e.pin(ctx, tx); err != nil {
			return err
		}
		res, err := call(tx, true)
		created = res.Created
		return err
	})
	if err != nil {
		created = false
	}
	return created, max(attempts-1, 0), err
}

// errorKind names the kind of an error that reached the caller, as reports
// count them.
// The kind comes from the library, which classifies the drivers' own errors
// too.
func errorKind(err error) string {
	if errors.Is(err, errNotFoundAfterDuplicate) {
		return "not-found-after-duplicate"
	}
	switch getorcreate.Kind(err) {
	case getorcreate.ErrConflict:
		return "duplicate-key"
	case getorcreate.ErrDeadlock:
		return "deadlock"
	case getorcreate.ErrSerialization:
		return "serialization"
	case getorcreate.ErrBusy:
		return "busy"
	}
	return "other"
}

// ErrorKinds lists the kinds of errors reports count, in report order.
var ErrorKinds = []string{"duplicate-key", "not-found-after-duplicate", "deadlock", "serialization", "busy", "other"}
