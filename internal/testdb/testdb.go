// Package testdb gives tests a real database of each kind: SQLite always
// (a temporary file), PostgreSQL and MariaDB/MySQL when their DSNs are set:
//
//	GETORCREATE_POSTGRES=postgres://postgres@127.0.0.1:5432/test?sslmode=disable
//	GETORCREATE_MYSQL=mysql://root@127.0.0.1:3306/test
//
// Without them the server suites skip with a message saying so. Each test
// gets tables with unique names, dropped when it ends, so tests run in
// parallel.
package testdb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/getorcreate/getorcreate"
	"github.com/getorcreate/getorcreate/dialect"
	"github.com/getorcreate/getorcreate/dialect/mysql"
	"github.com/getorcreate/getorcreate/dialect/postgres"
	"github.com/getorcreate/getorcreate/internal/dsn"
	"github.com/getorcreate/getorcreate/internal/faultproxy"
	"github.com/getorcreate/getorcreate/pgxv5"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/lib/pq" // the "postgres" driver, for the postgres-pq variant
)

// Env names the environment variables holding the server DSNs.
const (
	EnvPostgres = "GETORCREATE_POSTGRES"
	EnvMySQL    = "GETORCREATE_MYSQL"
)

// DB is one database under test.
type DB struct {
	// Name is the database and the way the library reaches it: "sqlite",
	// "postgres", "mysql"; "postgres-pgx" (pgx natively, package pgxv5),
	// "postgres-pq" (lib/pq), "mysql-noreturning" (MariaDB running the
	// MySQL statements), and "sqlite-wrapped", "postgres-wrapped",
	// "mysql-wrapped" (the driver behind a wrapping driver, as
	// instrumentation wraps it, so that the dialect must be found by
	// asking the server).
	Name    string
	Kind    string // "sqlite", "postgres" or "mysql"
	DSN     string // the project DSN form
	SQL     *sql.DB
	Dialect dialect.Dialect // non-nil to override detection
	// Pool is set for "postgres-pgx": tables open on it through package
	// pgxv5, without database/sql. SQL still reaches the same database,
	// for the tests' own checks.
	Pool *pgxpool.Pool
}

// OpenTable opens a table for the conformance suite: on DB.Pool through
// pgxv5 for "postgres-pgx" (with Config.Dialect set, which pgxv5 must
// honour), else on DB.SQL.
func OpenTable[T any](db *DB, cfg getorcreate.Config) (*getorcreate.Table[T], error) {
	if db.Dialect != nil {
		cfg.Dialect = db.Dialect
	}
	if db.Pool != nil {
		if cfg.Dialect == nil {
			cfg.Dialect = postgres.Dialect
		}
		return pgxv5.OpenConfig[T](context.Background(), db.Pool, cfg)
	}
	return getorcreate.OpenConfig[T](context.Background(), db.SQL, cfg)
}

var (
	mu    sync.Mutex
	pools = map[string]*sql.DB{}
)

// Kinds lists the databases to run against: sqlite always, the servers
// when configured. With variants, also every other way the library reaches
// them (see DB.Name): the conformance suite runs on all of them.
func Kinds(variants bool) []string {
	ks := []string{"sqlite", "postgres", "mysql"}
	if variants {
		ks = append(ks, "postgres-pgx", "postgres-pq", "mysql-noreturning", "sqlite-wrapped", "postgres-wrapped", "mysql-wrapped")
	}
	return ks
}

// kindOf is the database of a variant's name.
func kindOf(name string) string {
	kind, _, _ := strings.Cut(name, "-")
	return kind
}

// Open returns the database of this name for t, or skips t.
func Open(t testing.TB, name string) *DB {
	t.Helper()
	d := &DB{Name: name, Kind: kindOf(name)}
	switch d.Kind {
	case "sqlite":
		d.DSN = "sqlite:" + filepath.Join(t.TempDir(), "test.db")
	case "postgres":
		d.DSN = os.Getenv(EnvPostgres)
	case "mysql":
		d.DSN = os.Getenv(EnvMySQL)
	}
	if d.DSN == "" {
		env := EnvPostgres
		if d.Kind == "mysql" {
			env = EnvMySQL
		}
		t.Skipf("%s suite skipped: set %s to run it (see README)", name, env)
	}
	switch _, variant, _ := strings.Cut(name, "-"); variant {
	case "noreturning":
		d.Dialect = mysql.NoReturning
		d.SQL = Pool(t, d.DSN)
	case "pgx":
		d.SQL = Pool(t, d.DSN)
		d.Pool = PgxPool(t, d.DSN)
	case "pq":
		d.SQL = driverPool(t, "postgres", d.DSN, "")
	case "wrapped":
		d.SQL = driverPool(t, d.Kind, d.DSN, "wrapped")
	default:
		d.SQL = Pool(t, d.DSN)
	}
	return d
}

var pgxPools = map[string]*pgxpool.Pool{}

// PgxPool opens (once per process and DSN) a pgx pool on the DSN.
func PgxPool(t testing.TB, s string) *pgxpool.Pool {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if p, ok := pgxPools[s]; ok {
		return p
	}
	cfg, err := pgxpool.ParseConfig(s)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = MaxConns
	p, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	pgxPools[s] = p
	return p
}

// Pool opens (once per process and DSN for servers) a pool on the DSN.
func Pool(t testing.TB, s string) *sql.DB {
	t.Helper()
	if strings.HasPrefix(s, "sqlite:") {
		db, _, err := dsn.Open(context.Background(), s)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	mu.Lock()
	defer mu.Unlock()
	if db, ok := pools[s]; ok {
		return db
	}
	db := open(t, s)
	pools[s] = db
	return db
}

// driverPool opens (once per process and DSN for servers) a pool on the
// DSN through another driver: lib/pq's ("postgres") or, with wrap, the
// project DSN's own driver behind a wrapping one.
func driverPool(t testing.TB, driverName, s, wrap string) *sql.DB {
	t.Helper()
	p, err := dsn.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	if wrap != "" {
		driverName = WrapDriver(p.DriverName)
	}
	source := p.DataSource
	if driverName == "postgres" {
		source = s // lib/pq reads the URL itself
	}
	key := driverName + " " + source
	mu.Lock()
	defer mu.Unlock()
	if db, ok := pools[key]; ok && p.Kind != "sqlite" {
		return db
	}
	db, err := sql.Open(driverName, source)
	if err != nil {
		t.Fatal(err)
	}
	if p.Kind == "sqlite" {
		db.SetMaxOpenConns(8)
		t.Cleanup(func() { db.Close() })
		return db
	}
	db.SetMaxOpenConns(MaxConns)
	db.SetMaxIdleConns(MaxConns)
	pools[key] = db
	return db
}

// FreshPool opens a pool of its own on the DSN, closed when t ends.
func FreshPool(t testing.TB, s string) *sql.DB {
	t.Helper()
	db := open(t, s)
	t.Cleanup(func() { db.Close() })
	return db
}

// open opens a server pool small enough that the suites running in
// parallel stay well under the servers' connection limits.
func open(t testing.TB, s string) *sql.DB {
	t.Helper()
	db, _, err := dsn.Open(context.Background(), s)
	if err != nil {
		t.Fatalf("%v (is the server running? see README)", err)
	}
	db.SetMaxOpenConns(MaxConns)
	db.SetMaxIdleConns(MaxConns)
	return db
}

// MaxConns bounds each test pool on a server.
const MaxConns = 16

// Each runs fn as a parallel subtest on every database.
func Each(t *testing.T, fn func(t *testing.T, db *DB)) {
	EachOf(t, Kinds(false), fn)
}

// EachOf runs fn as a parallel subtest on the named databases.
func EachOf(t *testing.T, names []string, fn func(t *testing.T, db *DB)) {
	t.Helper()
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fn(t, Open(t, name))
		})
	}
}

// Table returns a fresh table name and drops the table when t ends.
func (d *DB) Table(t testing.TB) string {
	t.Helper()
	b := make([]byte, 5)
	rand.Read(b)
	name := "goc_" + hex.EncodeToString(b)
	t.Cleanup(func() { d.SQL.Exec("DROP TABLE IF EXISTS " + name) })
	return name
}

// Create creates a fresh table from per-database DDL, with %s standing for
// the table name, and returns the name. ddl maps a Kind to its DDL; "" is
// the default for kinds not listed.
func (d *DB) Create(t testing.TB, ddl map[string]string) string {
	t.Helper()
	name := d.Table(t)
	q, ok := ddl[d.Kind]
	if !ok {
		q = ddl[""]
	}
	for _, stmt := range strings.Split(q, ";\n") {
		if strings.TrimSpace(stmt) == "" {
			continue
		}
		if _, err := d.SQL.Exec(strings.ReplaceAll(stmt, "%s", name)); err != nil {
			t.Fatalf("creating table on %s: %v\n%s", d.Name, err, stmt)
		}
	}
	return name
}

// Exec runs a statement or fails the test.
func (d *DB) Exec(t testing.TB, q string, args ...any) {
	t.Helper()
	if _, err := d.SQL.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v\n%s", d.Name, err, q)
	}
}

// Count returns the number of rows of table.
func (d *DB) Count(t testing.TB, table string) int {
	t.Helper()
	var n int
	if err := d.SQL.QueryRow("SELECT COUNT(*) FROM " + table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TagsDDL is the tags table the conformance suite uses.
var TagsDDL = map[string]string{
	"sqlite":   `CREATE TABLE %s (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, count INTEGER NOT NULL DEFAULT 0, note TEXT, created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)`,
	"postgres": `CREATE TABLE %s (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE, count BIGINT NOT NULL DEFAULT 0, note TEXT, created_at TIMESTAMPTZ NOT NULL DEFAULT now())`,
	"mysql":    `CREATE TABLE %s (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(64) NOT NULL UNIQUE, count BIGINT NOT NULL DEFAULT 0, note TEXT, created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB`,
}

// ThroughProxy starts a fault proxy in front of d's server (closed when t
// ends) and returns the project DSN that reaches the server through it,
// for tests that cut connections. It skips t on SQLite, which has no
// connection to cut.
func (d *DB) ThroughProxy(t testing.TB) (string, *faultproxy.Proxy) {
	t.Helper()
	if d.Kind == "sqlite" {
		t.Skip("SQLite has no connection to cut")
	}
	u, err := url.Parse(d.DSN)
	if err != nil {
		t.Fatal(err)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), map[string]string{"postgres": "5432", "mysql": "3306"}[d.Kind])
	}
	p, err := faultproxy.Start(host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	u.Host = p.Addr()
	return u.String(), p
}

// FreshPgxPool opens a pgx pool of its own on the DSN, closed when t ends.
func FreshPgxPool(t testing.TB, s string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(s)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = MaxConns
	p, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// OwnSessions returns a project DSN for d whose sessions the test can tell
// apart from every other test's (and from the test's own checks), and a
// query that lists their ids, for tests that kill sessions: on PostgreSQL a
// unique application_name, on MariaDB a user of the test's own, dropped
// when t ends. The ids are what pg_terminate_backend or KILL take.
func (d *DB) OwnSessions(t testing.TB) (dsnStr, listQuery string) {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	tag := "goc_s" + hex.EncodeToString(b)
	u, err := url.Parse(d.DSN)
	if err != nil {
		t.Fatal(err)
	}
	switch d.Kind {
	case "postgres":
		q := u.Query()
		q.Set("application_name", tag)
		u.RawQuery = q.Encode()
		return u.String(), "SELECT pid FROM pg_stat_activity WHERE application_name = '" + tag + "'"
	case "mysql":
		for _, stmt := range []string{
			"CREATE USER '" + tag + "'@'127.0.0.1'",
			"CREATE USER '" + tag + "'@'localhost'",
			"GRANT ALL ON " + strings.TrimPrefix(u.Path, "/") + ".* TO '" + tag + "'@'127.0.0.1'",
			"GRANT ALL ON " + strings.TrimPrefix(u.Path, "/") + ".* TO '" + tag + "'@'localhost'",
		} {
			d.Exec(t, stmt)
		}
		t.Cleanup(func() {
			d.SQL.Exec("DROP USER IF EXISTS '" + tag + "'@'127.0.0.1'")
			d.SQL.Exec("DROP USER IF EXISTS '" + tag + "'@'localhost'")
		})
		u.User = url.User(tag)
		return u.String(), "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = '" + tag + "' AND COMMAND <> 'Killed'"
	}
	t.Skipf("%s has no sessions to kill", d.Kind)
	return "", ""
}
