// Package sqlbuild is the kit the database packages build their statements
// with: a statement builder that records where each bound value comes from,
// quoting, scanning helpers, and the wrappers that make every error a plan
// returns a classified *dialect.Error. Only the packages under dialect/ can
// import it.
package sqlbuild

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/getorcreate/getorcreate/dialect"
)

// Classify wraps a plan so that every error it returns has gone through
// interpret, the dialect's one reading of its driver's errors.
func Classify(p dialect.Plan, interpret func(error) error) dialect.Plan {
	return classified{p, interpret}
}

type classified struct {
	p  dialect.Plan
	in func(error) error
}

func (c classified) Find(ctx context.Context, q dialect.Querier, call *dialect.Call) (bool, error) {
	ok, err := c.p.Find(ctx, q, call)
	return ok, c.in(err)
}

func (c classified) GetOrCreate(ctx context.Context, q dialect.Querier, call *dialect.Call) (bool, error) {
	ok, err := c.p.GetOrCreate(ctx, q, call)
	return ok, c.in(err)
}

func (c classified) UpdateOrCreate(ctx context.Context, q dialect.Querier, call *dialect.Call) (bool, error) {
	ok, err := c.p.UpdateOrCreate(ctx, q, call)
	return ok, c.in(err)
}

func (c classified) Statements() []dialect.Statement { return c.p.Statements() }

// ClassifyBulk is Classify for a bulk plan.
func ClassifyBulk(p dialect.BulkPlan, interpret func(error) error) dialect.BulkPlan {
	return classifiedBulk{p, interpret}
}

type classifiedBulk struct {
	p  dialect.BulkPlan
	in func(error) error
}

func (c classifiedBulk) GetOrCreateMany(ctx context.Context, q dialect.Querier, b *dialect.Batch) error {
	return c.in(c.p.GetOrCreateMany(ctx, q, b))
}

func (c classifiedBulk) UpdateOrCreateMany(ctx context.Context, q dialect.Querier, b *dialect.Batch) error {
	return c.in(c.p.UpdateOrCreateMany(ctx, q, b))
}

// Interpreter builds a dialect's Interpret from its reading of driver
// errors: nil stays nil, an *dialect.Error stays as it is, anything else
// gets its class, its constraint, and for a lost connection whether the
// statement may have run. A network error that no class claims is a lost
// connection too (see Network).
func Interpreter(class func(error) dialect.Class, constraint func(error) string, mayHaveRun func(error) bool) func(error) error {
	return func(err error) error {
		if err == nil {
			return nil
		}
		if e := (*dialect.Error)(nil); errors.As(err, &e) {
			return err
		}
		e := &dialect.Error{Class: class(err), Err: err}
		if e.Class == dialect.ClassOther {
			if lost, sent := Network(err); lost {
				e.Class, e.MayHaveRun = dialect.ClassConnection, sent
			}
		} else if e.Class == dialect.ClassConnection {
			e.MayHaveRun = mayHaveRun(err)
		}
		if e.Class == dialect.ClassUnique {
			e.Constraint = constraint(err)
		}
		return e
	}
}

// Network reads the errors every driver shares for a connection that
// broke or was refused: lost reports one, and mayHaveRun whether a
// statement may have been sent on it before it broke. A refused or failed
// dial sent nothing, nor did a statement on a connection database/sql had
// already closed (sql.ErrConnDone). driver.ErrBadConn is meant to say
// "nothing was sent", but lib/pq and pgx's simple protocol return it after
// a statement was sent too, so it may have run.
func Network(err error) (lost, mayHaveRun bool) {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false, false
	}
	var op *net.OpError
	switch {
	case errors.Is(err, sql.ErrConnDone), errors.Is(err, syscall.ECONNREFUSED):
		return true, false
	case errors.As(err, &op) && op.Op == "dial":
		return true, false
	case errors.Is(err, driver.ErrBadConn), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed), errors.As(err, &op):
		return true, true
	}
	return false, false
}

// Pieces splits n rows into pieces whose sizes are powers of two, largest
// first, for statements that cannot be padded: their texts then come from
// a few fixed sizes, whatever the batch.
func Pieces(n int) []int {
	var p []int
	for size := 1 << 30; size > 0; size >>= 1 {
		for n >= size {
			p = append(p, size)
			n -= size
		}
	}
	return p
}
