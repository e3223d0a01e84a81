package testdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"sync"
)

// WrapDriver registers, once per driver name, a database/sql driver named
// "wrapped-" + name that hands out connections of its own types around the
// real driver's, as instrumenting wrappers (otelsql, sqlhooks, ...) do.
// Behind it the library cannot tell the database from the driver's type.
func WrapDriver(name string) string {
	wrapMu.Lock()
	defer wrapMu.Unlock()
	w := "wrapped-" + name
	if !wrapped[name] {
		db, err := sql.Open(name, "")
		if err != nil {
			panic(err)
		}
		sql.Register(w, wDriver{db.Driver()})
		db.Close()
		wrapped[name] = true
	}
	return w
}

var (
	wrapMu  sync.Mutex
	wrapped = map[string]bool{}
)

type wDriver struct{ d driver.Driver }

func (w wDriver) Open(dsn string) (driver.Conn, error) {
	c, err := w.d.Open(dsn)
	if err != nil {
		return nil, err
	}
	return &wConn{c}, nil
}

// wConn forwards every optional interface the real connection has; where
// it has none, driver.ErrSkip sends database/sql down its default path.
type wConn struct{ c driver.Conn }

func (w *wConn) Prepare(q string) (driver.Stmt, error) { return w.c.Prepare(q) }
func (w *wConn) Close() error                          { return w.c.Close() }

//lint:ignore SA1019 the wrapper forwards the deprecated method too, as real wrappers must
func (w *wConn) Begin() (driver.Tx, error) { return w.c.Begin() }

func (w *wConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if b, ok := w.c.(driver.ConnBeginTx); ok {
		return b.BeginTx(ctx, opts)
	}
	return w.Begin()
}

func (w *wConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	if p, ok := w.c.(driver.ConnPrepareContext); ok {
		return p.PrepareContext(ctx, q)
	}
	return w.c.Prepare(q)
}

func (w *wConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	if e, ok := w.c.(driver.ExecerContext); ok {
		return e.ExecContext(ctx, q, args)
	}
	return nil, driver.ErrSkip
}

func (w *wConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	if e, ok := w.c.(driver.QueryerContext); ok {
		return e.QueryContext(ctx, q, args)
	}
	return nil, driver.ErrSkip
}

func (w *wConn) CheckNamedValue(v *driver.NamedValue) error {
	if c, ok := w.c.(driver.NamedValueChecker); ok {
		return c.CheckNamedValue(v)
	}
	return driver.ErrSkip
}

func (w *wConn) ResetSession(ctx context.Context) error {
	if r, ok := w.c.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (w *wConn) IsValid() bool {
	if v, ok := w.c.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

func (w *wConn) Ping(ctx context.Context) error {
	if p, ok := w.c.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

var (
	_ driver.ConnBeginTx        = (*wConn)(nil)
	_ driver.ConnPrepareContext = (*wConn)(nil)
	_ driver.ExecerContext      = (*wConn)(nil)
	_ driver.QueryerContext     = (*wConn)(nil)
	_ driver.NamedValueChecker  = (*wConn)(nil)
	_ driver.SessionResetter    = (*wConn)(nil)
	_ driver.Validator          = (*wConn)(nil)
	_ driver.Pinger             = (*wConn)(nil)
)
