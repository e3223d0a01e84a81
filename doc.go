// Package getorcreate does get-or-create and update-or-create right under
// any concurrency, on PostgreSQL, MariaDB/MySQL and SQLite.
//
// Written as SELECT-then-INSERT, "find the tag or create it" lets two
// goroutines, processes or servers both find nothing and both insert. This
// package lets the unique index decide, in the fewest statements each
// database allows, and tells exactly one caller that it created the row.
//
// # Tables
//
// [Open] inspects a table once and returns a [Table] for a struct type whose
// fields map to columns (by `db` tag, else snake_case name):
//
//	tags, err := getorcreate.Open[Tag](ctx, db, "tags", "name")
//
// The key columns must be exactly those of a PRIMARY KEY or of a
// non-partial, non-deferrable UNIQUE constraint or index: that index is the
// only thing that keeps one row per key across connections. On PostgreSQL
// and SQLite a partial unique index serves too (soft deletes), when
// [Config].Where names its predicate: lookups then see only the rows it
// covers. Without it Open
// returns a [*SchemaError] whose Fix is the DDL that adds it.
//
// # Zero values
//
// A zero-valued field whose column has a default (or is an identity, serial
// or auto-increment column) is left to the database on insert, in single
// and bulk calls alike. A field tagged `db:"col,explicit"` is always
// inserted as it is: its zero value, false, or NULL for a nil pointer.
//
// The dialect comes from the *sql.DB's driver; import the dialect package
// for your database (it imports the driver too):
//
//	import _ "github.com/getorcreate/getorcreate/dialect/postgres" // pgx's database/sql driver
//	import _ "github.com/getorcreate/getorcreate/dialect/mysql"    // MariaDB 10.5+, MySQL 8.0+
//	import _ "github.com/getorcreate/getorcreate/dialect/sqlite"   // modernc.org/sqlite
//
// Package pgxv5 opens the same tables on a pgx pool, without database/sql.
//
// # Calls
//
// [Table.GetOrCreate] returns the stored row for the key, creating it from
// the given row if there is none; an existing row is never written.
// [Table.UpdateOrCreate] applies [Update] expressions ([Set], [Add],
// [Greatest], [Least], [SetProposed], [Expr]) to an existing row, evaluated by
// the database in the statement that finds it, or creates the row. Both
// return a [Result]: the row as stored and whether this call created it.
// [Table.GetOrCreateMany] and [Table.UpdateOrCreateMany] do the same for many
// rows in a few statements, in one deterministic key order.
//
// # Coalescing
//
// With [Config].Coalesce, GetOrCreate and UpdateOrCreate calls that many
// goroutines make while a statement of the same shape is in flight go
// together as the next batch, through the bulk path, and each caller gets
// its own Result and error; a call that finds nothing in flight is sent at
// once, alone. Increments of one key merge into one write of their sum.
// See Config.Coalesce for what each caller sees.
//
// # Transactions
//
// A call on the Table runs on the Table's own pool: its statements are
// autocommit statements, or, where a path needs several to agree (bulk
// calls, MySQL's update, UpdateOrCreateOnce), a transaction of the
// library's own. It retries serialization failures, deadlocks, busy errors
// and lost connections with jittered backoff ([RetryPolicy]); a write that
// is not idempotent is never re-run when its outcome is not known
// ([ErrIndeterminate]). Each call has a ...Tx twin that runs inside the caller's
// *sql.Tx or *sql.Conn and never re-runs anything behind the caller's back:
// where the database cannot show the row that won a race (PostgreSQL
// REPEATABLE READ or SERIALIZABLE, with a snapshot older than the winner's
// commit) it returns an error for which [IsRetryable] is true. [RunTx] runs a
// function in a transaction and runs it again on such errors.
//
// # Errors
//
// Every error matches a sentinel with errors.Is ([ErrConflict],
// [ErrSerialization], [ErrNullKey], ...) and wraps the driver's error. They
// are classified from SQLSTATEs, MySQL error numbers and SQLite extended
// codes, never from message text.
//
// docs/HOW-IT-WORKS.md lists, for each database, the statements of each path
// and the race each one closes.
package getorcreate
