package getorcreate

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/getorcreate/getorcreate/dialect"
)

// ErrTransactionPooler is returned by Open when the connection goes
// through a pooler in transaction mode (PgBouncer pool_mode=transaction)
// with driver settings that keep prepared statements in the server
// session, where the next client would meet them: with pgx, its default
// exec mode. The error says the fix (on PostgreSQL: default_query_exec_mode=exec
// in the connection string). See docs/SCALING.md.
var ErrTransactionPooler = dialect.ErrTransactionPooler

// checkSession asks the dialect, where it can, whether db's settings work
// where db is connected.
func checkSession(ctx context.Context, d dialect.Dialect, db *sql.DB) error {
	sc, ok := d.(dialect.SessionChecker)
	if !ok {
		return nil
	}
	if err := sc.CheckSession(ctx, db); err != nil {
		return fmt.Errorf("getorcreate: Open: %w", err)
	}
	return nil
}
