package getorcreate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"

	"github.com/getorcreate/getorcreate/dialect"
	"github.com/getorcreate/getorcreate/internal/mapping"
)

// GetOrCreate returns the row whose key columns equal row's, creating it
// from row if there is none. Fields beyond the key are used only to create.
// An existing row is never written. It runs in the library's own
// transaction and retries serialization failures, deadlocks and busy errors.
func (t *Table[T]) GetOrCreate(ctx context.Context, row T) (Result[T], error) {
	if t.coalesce {
		return t.coalesced(ctx, row, nil)
	}
	return t.getOrCreate(ctx, t.own, false, row, nil)
}

// GetOrCreateTx is GetOrCreate inside the caller's transaction (or on a
// *sql.Conn). It never re-runs statements behind the caller's back: where
// the database cannot show the row that won a race (PostgreSQL REPEATABLE
// READ or SERIALIZABLE with an older snapshot), it returns an error for
// which IsRetryable is true, and the caller should retry the whole
// transaction (see RunTx).
func (t *Table[T]) GetOrCreateTx(ctx context.Context, tx Querier, row T) (Result[T], error) {
	return t.getOrCreate(ctx, t.adapt(tx), true, row, nil)
}

// GetOrCreateFunc is GetOrCreate with create values computed lazily: key
// holds the key columns, and create is called, with a copy of key to fill,
// only when the row must be created. It costs one extra lookup on the
// create path.
func (t *Table[T]) GetOrCreateFunc(ctx context.Context, key T, create func(row *T) error) (Result[T], error) {
	return t.getOrCreate(ctx, t.own, false, key, create)
}

// GetOrCreateFuncTx is GetOrCreateFunc inside the caller's transaction.
func (t *Table[T]) GetOrCreateFuncTx(ctx context.Context, tx Querier, key T, create func(row *T) error) (Result[T], error) {
	return t.getOrCreate(ctx, t.adapt(tx), true, key, create)
}

// UpdateOrCreate applies the updates to the row whose key columns equal
// row's, or creates it from row. The database evaluates the updates
// atomically; none is a read-modify-write in Go. Without updates it is
// GetOrCreate. It returns the row as stored after the write.
func (t *Table[T]) UpdateOrCreate(ctx context.Context, row T, updates ...Update) (Result[T], error) {
	if t.coalesce {
		return t.coalesced(ctx, row, updates)
	}
	return t.updateOrCreate(ctx, t.own, false, row, updates)
}

// UpdateOrCreateTx is UpdateOrCreate inside the caller's transaction.
func (t *Table[T]) UpdateOrCreateTx(ctx context.Context, tx Querier, row T, updates ...Update) (Result[T], error) {
	return t.updateOrCreate(ctx, t.adapt(tx), true, row, updates)
}

const findsClamp = 32

// adapt is the package's adapt for a caller's handle, obeying the table's
// switch for planning statements where the handle can (see replanned).
func (t *tableCore) adapt(q Querier) dialect.Querier {
	if t.replan == nil {
		return adapt(q)
	}
	return replanned(adapt(q), t.replan)
}

// grew counts rows the table's calls created, and turns the table's
// switch for planning statements off once they are as many as the
// dialect asked for: from then on the server's cached plans are made for a
// table that has grown.
func (t *tableCore) grew(n int) {
	if t.replan == nil || n == 0 {
		return
	}
	if t.created.Add(int64(n)) >= t.feat.ReplanUntil {
		t.replan.Set(false)
	}
}

// learn records whether a call found its key, for Adaptive.
func (t *tableCore) learn(found bool) {
	for {
		v := t.finds.Load()
		n := v - 1
		if found {
			n = v + 1
		}
		if n > findsClamp || n < -findsClamp || t.finds.CompareAndSwap(v, n) {
			return
		}
	}
}

// readFirst applies the table's Order: Adaptive writes first only when
// most recent calls created their key (one creation in a fresh table is no
// trend).
func (t *tableCore) readFirst() bool {
	switch t.order {
	case ReadFirst:
		return true
	case WriteFirst:
		return false
	}
	return t.finds.Load() > -8
}

func (t *tableCore) errf(op string, kind error, format string, args ...any) error {
	return &Error{Op: op, Table: t.name, Kind: kind, Input: -1, Err: fmt.Errorf(format, args...)}
}

// call prepares the values, scan targets and shape of one row.
func (t *Table[T]) call(op string, res *Result[T], inTx bool) (*dialect.Call, shapeKey, error) {
	p := reflect.ValueOf(&res.Row)
	c := &dialect.Call{InTx: inTx, ReadFirst: t.readFirst()}
	c.Values = t.m.Values(p, make([]any, 0, len(t.m.Fields)))
	t.bindTimes(c.Values)
	var sk shapeKey
	for i, pos := range t.keyPos {
		if mapping.IsNull(c.Values[pos]) {
			if !t.nullKeyOK[i] {
				return nil, sk, t.errf(op, ErrNullKey, "key column %q is NULL; the unique index treats NULLs as distinct, so a NULL key never matches", t.m.Fields[pos].Column)
			}
			sk.nulls |= 1 << i
		}
	}
	if err := t.checkKeys(op, c.Values); err != nil {
		return nil, sk, err
	}
	for i, pos := range t.defaultable {
		if t.m.IsZero(p, pos) {
			sk.omit |= 1 << i
		}
	}
	c.Dest = t.m.Addrs(p, make([]any, 0, len(t.m.Fields)))
	return c, sk, nil
}

// pathOf names what a single-row call did.
func pathOf(c *dialect.Call, created, update bool) Path {
	switch {
	case created:
		return PathCreated
	case update:
		return PathUpdated
	case c.Raced:
		return PathRaced
	}
	return PathExisting
}

func (t *Table[T]) getOrCreate(ctx context.Context, q dialect.Querier, inTx bool, row T, create func(*T) error) (Result[T], error) {
	ctx, tc := t.startTrace(ctx, "GetOrCreate", inTx, 1)
	return t.getOrCreateTraced(ctx, tc, q, inTx, row, create)
}

// getOrCreateTraced is getOrCreate once its trace started.
func (t *Table[T]) getOrCreateTraced(ctx context.Context, tc *traced, q dialect.Querier, inTx bool, row T, create func(*T) error) (Result[T], error) {
	const op = "GetOrCreate"
	raw := q
	q = tc.wrap(q)
	res := Result[T]{Row: row}
	c, sk, err := t.call(op, &res, inTx)
	if err != nil {
		tc.end(ctx, PathFailed, 0, 0, err)
		return res, err
	}
	if !inTx {
		if found := t.findOnReplica(ctx, tc, c, sk); found {
			res.Attempts, res.FromReplica = 1, true
			tc.end(ctx, PathReplica, 0, 1, nil)
			t.learn(true)
			return res, nil
		}
	}
	if create != nil {
		found, err := t.find(ctx, tc, q, inTx, c, sk)
		if err != nil || found {
			res.Attempts = 1
			tc.end(ctx, PathExisting, 0, 1, err)
			return res, err
		}
		if err := create(&res.Row); err != nil {
			tc.end(ctx, PathFailed, 0, 1, err)
			return res, err
		}
		if c, sk, err = t.call(op, &res, inTx); err != nil {
			tc.end(ctx, PathFailed, 0, 1, err)
			return res, err
		}
		c.ReadFirst = false // it was just looked up
	}
	plan, err := t.plan(opGet, sk, nil)
	if err != nil {
		tc.end(ctx, PathFailed, 0, 0, err)
		return res, err
	}
	var o outcome
	res.Created, o, err = t.run(ctx, tc, op, mode{inTx: inTx, callerTx: inTx && isTx(q), idempotent: true},
		func() (bool, error) {
			return t.pinned(ctx, raw, inTx, func(q dialect.Querier) (bool, error) { return plan.GetOrCreate(ctx, tc.wrap(q), c) })
		})
	res.Attempts, res.MaybeCreated = o.attempts, o.inDoubt && !res.Created
	tc.end(ctx, pathOf(c, res.Created, false), b2i(res.Created), o.attempts, err)
	if err != nil {
		return Result[T]{Row: row, Attempts: o.attempts}, err
	}
	t.learn(!res.Created)
	t.grew(b2i(res.Created))
	return res, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (t *Table[T]) find(ctx context.Context, tc *traced, q dialect.Querier, inTx bool, c *dialect.Call, sk shapeKey) (bool, error) {
	plan, err := t.plan(opGet, shapeKey{nulls: sk.nulls}, nil)
	if err != nil {
		return false, err
	}
	found, _, err := t.run(ctx, tc, "GetOrCreate", mode{inTx: inTx, callerTx: inTx && isTx(q), idempotent: true},
		func() (bool, error) { return plan.Find(ctx, q, c) })
	return found, err
}

func (t *Table[T]) updateOrCreate(ctx context.Context, q dialect.Querier, inTx bool, row T, ups []Update) (Result[T], error) {
	if len(ups) == 0 {
		return t.getOrCreate(ctx, q, inTx, row, nil)
	}
	ctx, tc := t.startTrace(ctx, "UpdateOrCreate", inTx, 1)
	return t.updateOrCreateTraced(ctx, tc, q, inTx, row, ups)
}

// updateOrCreateTraced is updateOrCreate once its trace started.
func (t *Table[T]) updateOrCreateTraced(ctx context.Context, tc *traced, q dialect.Querier, inTx bool, row T, ups []Update) (Result[T], error) {
	const op = "UpdateOrCreate"
	raw := q
	q = tc.wrap(q)
	res := Result[T]{Row: row}
	c, sk, err := t.call(op, &res, inTx)
	if err != nil {
		tc.end(ctx, PathFailed, 0, 0, err)
		return res, err
	}
	plan, err := t.plan(opUpdate, sk, ups)
	if err != nil {
		tc.end(ctx, PathFailed, 0, 0, err)
		return res, err
	}
	c.UpdateArgs = bindArgs(ups, nil)
	m := mode{inTx: inTx, callerTx: inTx && isTx(q), idempotent: idempotent(ups)}
	fn := func() (bool, error) {
		return t.pinned(ctx, raw, inTx, func(q dialect.Querier) (bool, error) { return plan.UpdateOrCreate(ctx, tc.wrap(q), c) })
	}
	if !inTx && t.feat.UpdateNeedsTx {
		m.ownTx = true
		fn = func() (bool, error) {
			return t.inOwnTx(ctx, tc, func(tx dialect.Tx) (bool, error) { return plan.UpdateOrCreate(ctx, tx, c) })
		}
	}
	var o outcome
	res.Created, o, err = t.run(ctx, tc, op, m, fn)
	res.Attempts, res.MaybeCreated = o.attempts, o.inDoubt && !res.Created
	tc.end(ctx, pathOf(c, res.Created, true), b2i(res.Created), o.attempts, err)
	if err != nil {
		// Whatever a failed attempt scanned is not the caller's row.
		return Result[T]{Row: row, Attempts: o.attempts}, err
	}
	t.learn(!res.Created)
	t.grew(b2i(res.Created))
	return res, nil
}

// inOwnTx runs fn in a transaction of the library's own and commits it. A
// connection lost before the COMMIT was sent is a definite failure: the
// server rolls back a transaction whose connection it lost, so whatever
// the statements did is gone. Only a lost COMMIT is indeterminate.
func (t *tableCore) inOwnTx(ctx context.Context, tc *traced, fn func(tx dialect.Tx) (bool, error)) (bool, error) {
	tx, err := t.beg.Begin(ctx, sql.LevelDefault)
	if err != nil {
		return false, uncommitted(t.d.Interpret(err))
	}
	ok, err := fn(tc.wrapTx(tx))
	if err == nil {
		err = ctx.Err() // a COMMIT not sent is a definite failure
	}
	if err != nil {
		_ = tx.Rollback(ctx)
		return false, uncommitted(err)
	}
	if err := tx.Commit(ctx); err != nil {
		if cerr := ctx.Err(); cerr != nil {
			// The context ended while the COMMIT was on its way.
			return false, &dialect.Error{Class: dialect.ClassConnection, MayHaveRun: true, Err: fmt.Errorf("%w: %w", cerr, err)}
		}
		return false, lostCommit(t.d.Interpret(err))
	}
	return ok, nil
}

// lostCommit makes a lost connection at COMMIT indeterminate, whatever the
// driver says: the COMMIT may have reached the server and committed.
func lostCommit(err error) error {
	var de *dialect.Error
	if errors.As(err, &de) && de.Class == dialect.ClassConnection && !de.MayHaveRun {
		c := *de
		c.MayHaveRun = true
		return &c
	}
	return err
}

// uncommitted turns a lost connection into a definite failure, for an
// error that came before its transaction's COMMIT.
func uncommitted(err error) error {
	var e *Error
	if errors.As(err, &e) {
		if e.Kind != ErrIndeterminate {
			return err
		}
		c := *e
		c.Kind = ErrConnection
		return &c
	}
	var de *dialect.Error
	if errors.As(err, &de) && de.Class == dialect.ClassConnection && de.MayHaveRun {
		c := *de
		c.MayHaveRun = false
		return &c
	}
	return err
}

// lostRaceRetries bounds the retries of ErrLostRace in the library's own
// calls, below RetryPolicy.MaxRetries.
const lostRaceRetries = 2

// mode is how a call runs: in the caller's transaction or handle (inTx),
// which is a real transaction (callerTx), in a transaction of the
// library's own (ownTx: nothing lasts unless its COMMIT does), and whether
// running it again after an indeterminate failure is safe (idempotent).
type mode struct{ inTx, callerTx, ownTx, idempotent bool }

// outcome is what run reports besides the result: the attempts made, and
// whether an earlier attempt was cut off after its write may have taken
// effect.
type outcome struct {
	attempts int
	inDoubt  bool
}

// run runs fn once inside the caller's transaction, or, in the library's
// own, until it succeeds or fails with an error that is not retryable (see
// RetryPolicy): a retryable error, a connection lost before anything
// could take effect, and, for idempotent calls, one lost after it may
// have. It returns the error as an *Error.
func (t *tableCore) run(ctx context.Context, tc *traced, op string, m mode, fn func() (bool, error)) (bool, outcome, error) {
	var ok bool
	var o outcome
	attempt := func() error {
		// A context done before the attempt began sends nothing.
		doneBefore := ctx.Err() != nil
		var err error
		ok, err = fn()
		if err == nil {
			return nil
		}
		if cerr := ctx.Err(); cerr != nil && !doneBefore {
			if !errors.Is(err, cerr) {
				// The driver saw the cancellation as a broken statement; say so.
				err = fmt.Errorf("%w: %w", cerr, err)
			}
			// A statement of its own that the context cut short may still
			// run to its end on the server (PostgreSQL and MariaDB both
			// commit it when it gets its lock): its outcome is not known,
			// unless a transaction around it never committed.
			if !m.ownTx && !m.callerTx && Kind(err) != ErrConnection {
				return &Error{Op: op, Table: t.name, Kind: ErrIndeterminate, Input: -1, Err: err}
			}
		}
		if m.callerTx {
			// The caller's transaction is gone with its connection:
			// nothing it did is committed.
			err = uncommitted(err)
		}
		return t.wrap(op, err)
	}
	lost := 0
	retryable := func(err error) bool {
		if errors.Is(err, ErrLostRace) {
			// The plan went round its loop LostRaceTries times already: a
			// churn of creates and deletes gets a few more tries, a key
			// the database changes on its way in (a trigger) no more.
			lost++
			return lost <= lostRaceRetries
		}
		if IsRetryable(err) {
			return true
		}
		if m.idempotent && errors.Is(err, ErrIndeterminate) {
			o.inDoubt = true
			return true
		}
		return false
	}
	policy := t.retry
	if m.inTx {
		policy.MaxRetries = 0
	}
	n, err := policy.run(ctx, attempt, retryable, tc.retried)
	o.attempts = n
	if err != nil {
		err = t.wrap(op, err)
		if o.inDoubt && Kind(err) == ErrConnection {
			// An earlier attempt may have taken effect: the last one's
			// refused connection does not make the call's outcome known.
			if e, ok := err.(*Error); ok {
				c := *e
				c.Kind = ErrIndeterminate
				err = &c
			}
		}
		return false, o, err
	}
	return ok, o, nil
}

// pinned runs fn on one connection of q, when q is a pool that
// database/sql would retry statements on (the table's own *sql.DB, without
// prepared statements: PostgreSQL's). database/sql runs a statement again on
// another connection when the driver says driver.ErrBadConn, and lib/pq and
// pgx's simple protocol say so even after the statement was sent, so a
// write could run twice unseen; on one *sql.Conn it is never re-run, and
// the lost connection reaches the library as what it is.
func (t *tableCore) pinned(ctx context.Context, q dialect.Querier, inTx bool, fn func(q dialect.Querier) (bool, error)) (bool, error) {
	pool, ok := q.(sqlDB)
	if inTx || !ok || pool.stmts != nil {
		return fn(q)
	}
	conn, err := pool.db.Conn(ctx)
	if err != nil {
		return false, uncommitted(t.d.Interpret(err)) // nothing was sent
	}
	defer conn.Close()
	return fn(sqlConn{conn, pool.replan})
}

// wrap turns an error into an *Error with its kind: the one place where a
// dialect's classes become the library's sentinels.
func (t *tableCore) wrap(op string, err error) error {
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	e = &Error{Op: op, Table: t.name, Input: -1, Err: err}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return e
	}
	var de *dialect.Error
	if errors.As(err, &de) {
		e.Kind = kindOf(de)
		if de.Class == dialect.ClassUnique {
			e.Constraint = de.Constraint
		}
	}
	return e
}
