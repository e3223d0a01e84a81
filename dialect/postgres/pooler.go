package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/getorcreate/getorcreate/dialect"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

var _ dialect.SessionChecker = pgDialect{}

// Behind PgBouncer in transaction mode (DATABASE-FACTS CL-8), pgx's default
// exec mode breaks: it prepares every statement under a name
// ("stmtcache_..."), on whatever server session it had at the time, and
// then meets that session again from another client (42P05, "already
// exists") or another session without it (26000); the leaked statements
// stay until PgBouncer restarts. describe_exec sends its Describe and its
// Execute as two messages that may reach two sessions. exec, cache_describe
// and simple_protocol keep nothing in the session, and exec still sends
// each statement in one round trip (Parse, Bind, Execute, Sync at once), so
// the library's statement counts stand.

// PoolerSafe reports whether an exec mode works behind a transaction
// pooler.
func PoolerSafe(m pgx.QueryExecMode) bool {
	switch m {
	case pgx.QueryExecModeExec, pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeSimpleProtocol:
		return true
	}
	return false
}

// CheckSession refuses a *sql.DB on pgx whose exec mode keeps prepared
// statements in the session when it is connected through a transaction
// pooler. Other drivers (lib/pq prepares unnamed statements only) and
// safe modes cost nothing; otherwise it holds two connections at once and
// asks each for its server's backend pid: a pooler in transaction mode
// hands the session the first one just released to the second (PgBouncer
// reuses server connections last in, first out), so the same pid twice
// can only be a pooler. Directly on PostgreSQL, or through a session-mode
// pooler, two connections are two backends.
func (pgDialect) CheckSession(ctx context.Context, db *sql.DB) error {
	a, err := db.Conn(ctx)
	if err != nil {
		return nil // Open's own queries report an unreachable server
	}
	defer a.Close()
	pa := pgxConn(a)
	if pa == nil || PoolerSafe(pa.Config().DefaultQueryExecMode) {
		return nil
	}
	if m := db.Stats().MaxOpenConnections; m == 1 {
		return nil // a second connection would wait for the first forever
	}
	// The pool may be busy with the caller's other work: do not wait long.
	bctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	b, err := db.Conn(bctx)
	if err != nil {
		return nil
	}
	defer b.Close()
	pb := pgxConn(b)
	if pb == nil {
		return nil
	}
	// Inside Raw only: the connections are used by this goroutine alone.
	var same bool
	_ = a.Raw(func(any) error {
		return b.Raw(func(any) error {
			same = SameBackend(ctx, pa.PgConn(), pb.PgConn())
			return nil
		})
	})
	if same {
		return PoolerError(pa.Config().DefaultQueryExecMode, "database/sql")
	}
	return nil
}

// pgxConn is the pgx connection under a database/sql one, or nil for
// another driver (lib/pq, a wrapping driver).
func pgxConn(c *sql.Conn) *pgx.Conn {
	var pc *pgx.Conn
	_ = c.Raw(func(dc any) error {
		if sc, ok := dc.(*stdlib.Conn); ok {
			pc = sc.Conn()
		}
		return nil
	})
	return pc
}

// SameBackend reports whether two client connections, open at the same
// time, reached the same server backend: the mark of a transaction (or
// statement) pooler. It asks three times, by the simple protocol, which
// prepares nothing that could itself leak.
func SameBackend(ctx context.Context, a, b *pgconn.PgConn) bool {
	pid := func(c *pgconn.PgConn) string {
		rs, err := c.Exec(ctx, "SELECT pg_backend_pid()").ReadAll()
		if err != nil || len(rs) != 1 || len(rs[0].Rows) != 1 {
			return ""
		}
		return string(rs[0].Rows[0][0])
	}
	for range 3 {
		x, y := pid(a), pid(b)
		if x == "" || y == "" {
			return false
		}
		if x == y {
			return true
		}
	}
	return false
}

// PoolerError is the error for a transaction pooler met with an exec mode
// that does not work behind it, with the fix for the way the connection
// was made ("database/sql" or "pgxpool").
func PoolerError(m pgx.QueryExecMode, via string) error {
	fix := "add default_query_exec_mode=exec to the connection string"
	if via == "pgxpool" {
		fix = "set ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeExec on the pool's config, or add default_query_exec_mode=exec to the connection string"
	}
	return fmt.Errorf("%w: two connections reached the same PostgreSQL session, so a pooler in transaction mode (PgBouncer pool_mode=transaction) sits in between, and pgx's exec mode %q prepares named statements in sessions that other clients then meet (42P05, 26000); fix: %s (cache_describe and simple_protocol work too), or connect in session mode",
		dialect.ErrTransactionPooler, m, fix)
}
