// Package pgxv5 runs getorcreate on PostgreSQL through pgx v5 natively, on
// a *pgxpool.Pool and inside a pgx.Tx, without database/sql. The statements
// are the PostgreSQL dialect's, the same as through database/sql:
//
//	tags, err := pgxv5.Open[Tag](ctx, pool, "tags", "name")
//	res, err := tags.GetOrCreate(ctx, Tag{Name: "go"})
//	res, err = tags.GetOrCreateTx(ctx, pgxv5.Tx(tx), Tag{Name: "go"}) // tx is a pgx.Tx
package pgxv5

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"

	"github.com/getorcreate/getorcreate"
	"github.com/getorcreate/getorcreate/dialect"
	"github.com/getorcreate/getorcreate/dialect/postgres"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Open inspects the table once, through the pool, and returns a handle whose
// own calls run on the pool. See getorcreate.Open.
func Open[T any](ctx context.Context, pool *pgxpool.Pool, table string, key ...string) (*getorcreate.Table[T], error) {
	return OpenConfig[T](ctx, pool, getorcreate.Config{Table: table, Key: key})
}

// OpenConfig is Open with a Config.
func OpenConfig[T any](ctx context.Context, pool *pgxpool.Pool, cfg getorcreate.Config) (*getorcreate.Table[T], error) {
	if pool == nil {
		return nil, errors.New("getorcreate/pgxv5: Open: nil pool")
	}
	if err := checkPool(ctx, pool); err != nil {
		return nil, err
	}
	p := poolQ{p: pool}
	if caches(pool.Config().ConnConfig) {
		p.replan = dialect.NewReplan(pgx.QueryExecModeCacheDescribe)
	}
	d := cfg.Dialect
	if d == nil {
		d = postgres.Dialect
	}
	return getorcreate.OpenDriver[T](ctx, d, p, p, cfg)
}

// Handle is what pgx.Tx, *pgx.Conn and *pgxpool.Pool share.
type Handle interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Tx adapts a pgx.Tx (or a *pgx.Conn or *pgxpool.Pool) for the ...Tx calls
// of a table: tags.GetOrCreateTx(ctx, pgxv5.Tx(tx), row). The library runs
// its statements on it and never commits or rolls back.
func Tx(h Handle) getorcreate.Querier { return handleQ{h: h} }

// caches reports whether pgx runs statements by named prepared statements
// on connections of cfg (its default exec mode), for which PostgreSQL may
// cache a generic plan. A table opened while small has its statements
// planned for their values instead (see dialect/postgres, CL-9), by the
// exec mode cache_describe, which prepares unnamed statements: still one
// round trip per statement once their descriptions are cached.
func caches(cfg *pgx.ConnConfig) bool {
	return cfg != nil && cfg.DefaultQueryExecMode == pgx.QueryExecModeCacheStatement
}

// RunTx runs fn in a transaction on pool and commits it, running fn again
// from the start when it or the commit fails with an error for which
// getorcreate.IsRetryable is true, whether it came from the library or
// straight from pgx, as getorcreate.RunTx does, with the same retry loop
// and getorcreate.DefaultRetry.
//
// A connection lost while fn runs is retried (the transaction did not
// commit); one lost during the COMMIT is returned as
// getorcreate.ErrIndeterminate.
func RunTx(ctx context.Context, pool *pgxpool.Pool, opts pgx.TxOptions, fn func(tx pgx.Tx) error) error {
	return getorcreate.DefaultRetry.Retry(ctx, func() error {
		tx, err := pool.BeginTx(ctx, opts)
		if err != nil {
			return getorcreate.Uncommitted(err)
		}
		if err := fn(tx); err != nil {
			_ = tx.Rollback(ctx)
			return getorcreate.Uncommitted(err)
		}
		return getorcreate.Committed(tx.Commit(ctx))
	})
}

// poolQ is the table's own pool. replan, when the pool's exec mode lets
// the server cache plans, is the table's switch for planning each
// statement for its values; the transactions begun on the pool obey it.
type poolQ struct {
	p      *pgxpool.Pool
	replan *dialect.Replan
}

func (q poolQ) Query(ctx context.Context, s string, args ...any) (dialect.Rows, error) {
	r, err := q.p.Query(ctx, s, q.replan.Args(args)...)
	if err != nil {
		return nil, err
	}
	return rows{r}, nil
}

func (q poolQ) Exec(ctx context.Context, s string, args ...any) (dialect.Result, error) {
	tag, err := q.p.Exec(ctx, s, q.replan.Args(args)...)
	return result{tag}, err
}

// Replan is the switch the pool's statements obey, or nil.
func (q poolQ) Replan() *dialect.Replan { return q.replan }

var isoLevels = map[sql.IsolationLevel]pgx.TxIsoLevel{
	sql.LevelReadCommitted:  pgx.ReadCommitted,
	sql.LevelRepeatableRead: pgx.RepeatableRead,
	sql.LevelSerializable:   pgx.Serializable,
}

func (q poolQ) Begin(ctx context.Context, iso sql.IsolationLevel) (dialect.Tx, error) {
	tx, err := q.p.BeginTx(ctx, pgx.TxOptions{IsoLevel: isoLevels[iso]})
	if err != nil {
		return nil, err
	}
	return txQ{handleQ{tx, q.replan}, tx}, nil
}

type txQ struct {
	handleQ
	tx pgx.Tx
}

func (t txQ) Commit(ctx context.Context) error   { return t.tx.Commit(ctx) }
func (t txQ) Rollback(ctx context.Context) error { return t.tx.Rollback(ctx) }

// handleQ is the adapter Tx returns. Its database/sql methods exist only so
// that it can be passed where a getorcreate.Querier is asked for; the
// library uses Query and Exec.
type handleQ struct {
	h      Handle
	replan *dialect.Replan
}

func (q handleQ) Query(ctx context.Context, s string, args ...any) (dialect.Rows, error) {
	r, err := q.h.Query(ctx, s, q.replan.Args(args)...)
	if err != nil {
		return nil, err
	}
	return rows{r}, nil
}

func (q handleQ) Exec(ctx context.Context, s string, args ...any) (dialect.Result, error) {
	tag, err := q.h.Exec(ctx, s, q.replan.Args(args)...)
	return result{tag}, err
}

// WithReplan returns the handle obeying a table's switch for planning
// statements, when the handle's exec mode lets the server cache plans:
// pgx always takes the switch's argument, an exec mode.
func (q handleQ) WithReplan(r *dialect.Replan) dialect.Querier {
	var cfg *pgx.ConnConfig
	switch h := q.h.(type) {
	case pgx.Tx:
		cfg = h.Conn().Config()
	case *pgx.Conn:
		cfg = h.Config()
	case *pgxpool.Pool:
		cfg = h.Config().ConnConfig
	case *pgxpool.Conn:
		cfg = h.Conn().Config()
	default:
		return q // a Handle of the caller's own: its mode is not known
	}
	if caches(cfg) {
		q.replan = r
	}
	return q
}

// IsTx reports whether the handle is a transaction.
func (q handleQ) IsTx() bool {
	_, ok := q.h.(pgx.Tx)
	return ok
}

var errNotSQL = errors.New("getorcreate/pgxv5: this adapter is for getorcreate's ...Tx calls, not for database/sql use")

// ExecContext runs the statement through pgx.
func (q handleQ) ExecContext(ctx context.Context, s string, args ...any) (sql.Result, error) {
	tag, err := q.h.Exec(ctx, s, args...)
	return result{tag}, err
}

// QueryContext is not available on a pgx handle: database/sql rows cannot
// be made from pgx rows. getorcreate never calls it on this adapter.
func (q handleQ) QueryContext(context.Context, string, ...any) (*sql.Rows, error) {
	return nil, errNotSQL
}

type rows struct{ r pgx.Rows }

func (r rows) Next() bool             { return r.r.Next() }
func (r rows) Scan(dest ...any) error { return r.r.Scan(dest...) }
func (r rows) Err() error             { return r.r.Err() }
func (r rows) Close() error           { r.r.Close(); return r.r.Err() }

type result struct{ tag pgconn.CommandTag }

func (r result) RowsAffected() (int64, error) { return r.tag.RowsAffected(), nil }
func (r result) LastInsertId() (int64, error) {
	return 0, errors.New("getorcreate/pgxv5: PostgreSQL has no LastInsertId; use RETURNING")
}

var (
	_ dialect.Querier     = poolQ{}
	_ dialect.Beginner    = poolQ{}
	_ dialect.Tx          = txQ{}
	_ getorcreate.Querier = handleQ{}
	_ dialect.ReplanTaker = handleQ{}
	_ dialect.Replanner   = poolQ{}
	_ driver.Result       = result{}
)
