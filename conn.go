package getorcreate

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"

	"github.com/getorcreate/getorcreate/dialect"
)

// Querier is what *sql.DB, *sql.Tx and *sql.Conn share: the handle of the
// ...Tx calls. The library runs its statements on it and never begins,
// commits or rolls back. A value that also implements dialect.Querier (such
// as package pgxv5's adapters) is used through that interface instead.
type Querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// adapt turns a caller's handle into a dialect.Querier without allocating
// for the common types.
func adapt(q Querier) dialect.Querier {
	switch v := q.(type) {
	case dialect.Querier:
		return v
	case *sql.Tx:
		return sqlTx{tx: v}
	case *sql.Conn:
		return sqlConn{c: v}
	case *sql.DB:
		return sqlDB{db: v}
	}
	return sqlAny{q}
}

func rowsOf(r *sql.Rows, err error) (dialect.Rows, error) {
	if err != nil {
		return nil, err
	}
	return r, nil
}

// sqlDB runs statements on a pool. With a statement cache (for the
// table's own calls, where the driver would otherwise prepare every
// statement anew) each statement is prepared once per connection.
//
// replan, set only on a pool whose driver Open asked (the table's own and
// its replica), is the table's switch for having statements planned for
// their values (dialect.Replan); the connections and transactions taken
// from the pool obey it too. A caller's handle never gets it: the library
// cannot tell which driver a *sql.Tx runs on.
type sqlDB struct {
	db     *sql.DB
	stmts  *stmtCache
	replan *dialect.Replan
}

func (s sqlDB) Query(ctx context.Context, q string, args ...any) (dialect.Rows, error) {
	if st := s.stmts.get(ctx, q); st != nil {
		return rowsOf(st.QueryContext(ctx, args...))
	}
	return rowsOf(s.db.QueryContext(ctx, q, s.replan.Args(args)...))
}

func (s sqlDB) Exec(ctx context.Context, q string, args ...any) (dialect.Result, error) {
	if st := s.stmts.get(ctx, q); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return s.db.ExecContext(ctx, q, s.replan.Args(args)...)
}

// Replan is the switch the pool's statements obey, or nil.
func (s sqlDB) Replan() *dialect.Replan { return s.replan }

// stmtCache holds prepared statements by their text, up to a bound; past
// it, and when a prepare fails, statements run unprepared.
type stmtCache struct {
	db    *sql.DB
	m     sync.Map // string -> *sql.Stmt
	count atomic.Int32
}

const maxCachedStmts = 256

func (c *stmtCache) close() error {
	var first error
	c.m.Range(func(k, v any) bool {
		if err := v.(*sql.Stmt).Close(); err != nil && first == nil {
			first = err
		}
		c.m.Delete(k)
		return true
	})
	c.count.Store(maxCachedStmts) // prepare nothing more after Close
	return first
}

func (c *stmtCache) get(ctx context.Context, q string) *sql.Stmt {
	if c == nil {
		return nil
	}
	if st, ok := c.m.Load(q); ok {
		return st.(*sql.Stmt)
	}
	if c.count.Load() >= maxCachedStmts {
		return nil
	}
	st, err := c.db.PrepareContext(ctx, q)
	if err != nil {
		return nil
	}
	if prev, loaded := c.m.LoadOrStore(q, st); loaded {
		st.Close()
		return prev.(*sql.Stmt)
	}
	c.count.Add(1)
	return st
}

func (s sqlDB) Begin(ctx context.Context, iso sql.IsolationLevel) (dialect.Tx, error) {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: iso})
	if err != nil {
		return nil, err
	}
	return sqlTx{tx, s.replan}, nil
}

type sqlTx struct {
	tx     *sql.Tx
	replan *dialect.Replan
}

func (s sqlTx) IsTx() bool { return true }

func (s sqlTx) Query(ctx context.Context, q string, args ...any) (dialect.Rows, error) {
	return rowsOf(s.tx.QueryContext(ctx, q, s.replan.Args(args)...))
}

func (s sqlTx) Exec(ctx context.Context, q string, args ...any) (dialect.Result, error) {
	return s.tx.ExecContext(ctx, q, s.replan.Args(args)...)
}

func (s sqlTx) Commit(context.Context) error   { return s.tx.Commit() }
func (s sqlTx) Rollback(context.Context) error { return s.tx.Rollback() }

type sqlConn struct {
	c      *sql.Conn
	replan *dialect.Replan
}

func (s sqlConn) Query(ctx context.Context, q string, args ...any) (dialect.Rows, error) {
	return rowsOf(s.c.QueryContext(ctx, q, s.replan.Args(args)...))
}

func (s sqlConn) Exec(ctx context.Context, q string, args ...any) (dialect.Result, error) {
	return s.c.ExecContext(ctx, q, s.replan.Args(args)...)
}

// replanned makes q obey the switch r where q is known to take its
// argument: a handle of the library's own on a pool whose driver Open
// asked (it already has a switch), or a handle that says it can
// (dialect.ReplanTaker, package pgxv5's). Any other handle is returned as
// it is.
func replanned(q dialect.Querier, r *dialect.Replan) dialect.Querier {
	switch v := q.(type) {
	case sqlDB:
		if v.replan != nil {
			v.replan = r
		}
		return v
	case sqlTx:
		if v.replan != nil {
			v.replan = r
		}
		return v
	case sqlConn:
		if v.replan != nil {
			v.replan = r
		}
		return v
	case counted:
		v.q = replanned(v.q, r)
		return v
	case countedTx:
		v.q = replanned(v.q, r)
		return v
	case dialect.ReplanTaker:
		return v.WithReplan(r)
	}
	return q
}

type sqlAny struct{ q Querier }

func (s sqlAny) Query(ctx context.Context, q string, args ...any) (dialect.Rows, error) {
	return rowsOf(s.q.QueryContext(ctx, q, args...))
}

func (s sqlAny) Exec(ctx context.Context, q string, args ...any) (dialect.Result, error) {
	return s.q.ExecContext(ctx, q, args...)
}

// IsTx forwards the wrapped handle's answer, if it has one.
func (s sqlAny) IsTx() bool {
	t, ok := s.q.(dialect.TxReporter)
	return ok && t.IsTx()
}

// counted counts the statements sent through q, for a Tracer.
type counted struct {
	q dialect.Querier
	n *int
}

func (c counted) Query(ctx context.Context, q string, args ...any) (dialect.Rows, error) {
	*c.n++
	return c.q.Query(ctx, q, args...)
}

func (c counted) Exec(ctx context.Context, q string, args ...any) (dialect.Result, error) {
	*c.n++
	return c.q.Exec(ctx, q, args...)
}

func (c counted) IsTx() bool { return isTx(c.q) }

type countedTx struct {
	counted
	tx dialect.Tx
}

func (c countedTx) IsTx() bool                         { return true }
func (c countedTx) Commit(ctx context.Context) error   { return c.tx.Commit(ctx) }
func (c countedTx) Rollback(ctx context.Context) error { return c.tx.Rollback(ctx) }

// wrap counts the statements sent through q, when tracing.
func (tc *traced) wrap(q dialect.Querier) dialect.Querier {
	if tc == nil {
		return q
	}
	return counted{q, tc.count}
}

// wrapTx counts the statements sent through tx, when tracing.
func (tc *traced) wrapTx(tx dialect.Tx) dialect.Tx {
	if tc == nil {
		return tx
	}
	return countedTx{counted{tx, tc.count}, tx}
}

var (
	_ dialect.Querier  = sqlDB{}
	_ dialect.Beginner = sqlDB{}
	_ dialect.Tx       = sqlTx{}
	_ dialect.Querier  = sqlConn{}
)

// isTx reports whether a caller's handle is known to be a transaction (a
// *sql.Conn or *sql.DB runs each statement on its own).
func isTx(q dialect.Querier) bool {
	if t, ok := q.(dialect.TxReporter); ok {
		return t.IsTx()
	}
	_, ok := q.(sqlTx)
	return ok
}
