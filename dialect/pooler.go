package dialect

import (
	"context"
	"database/sql"
	"errors"
)

// ErrTransactionPooler is returned by a SessionChecker when the connection
// goes through a pooler that hands a server session to another client
// after each transaction (PgBouncer's pool_mode=transaction or
// statement), and the driver's settings keep state in the session that
// the next client would meet (named prepared statements).
var ErrTransactionPooler = errors.New("connection settings cannot work behind a transaction pooler")

// SessionChecker is implemented by a Dialect that checks, once at Open,
// that the settings of a *sql.DB can work where it is connected.
type SessionChecker interface {
	CheckSession(ctx context.Context, db *sql.DB) error
}
