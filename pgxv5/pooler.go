package pgxv5

import (
	"context"
	"fmt"
	"time"

	"github.com/getorcreate/getorcreate/dialect/postgres"
	"github.com/jackc/pgx/v5/pgxpool"
)

// checkPool refuses a pool whose exec mode prepares named statements when
// it is connected through a transaction pooler (see
// getorcreate.ErrTransactionPooler): two connections held at once that
// reach one server backend can only be a pooler's doing. A pool in a safe
// mode, or of one connection, is not probed.
func checkPool(ctx context.Context, pool *pgxpool.Pool) error {
	cfg := pool.Config()
	mode := cfg.ConnConfig.DefaultQueryExecMode
	if postgres.PoolerSafe(mode) || cfg.MaxConns < 2 {
		return nil
	}
	a, err := pool.Acquire(ctx)
	if err != nil {
		return nil // Open's own queries report an unreachable server
	}
	defer a.Release()
	// The pool may be busy with the caller's other work: do not wait long.
	bctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	b, err := pool.Acquire(bctx)
	if err != nil {
		return nil
	}
	defer b.Release()
	if postgres.SameBackend(ctx, a.Conn().PgConn(), b.Conn().PgConn()) {
		return fmt.Errorf("getorcreate/pgxv5: Open: %w", postgres.PoolerError(mode, "pgxpool"))
	}
	return nil
}
