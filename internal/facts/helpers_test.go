package facts

import (
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib"
	"modernc.org/sqlite"
)

const (
	envPostgres = "GETORCREATE_POSTGRES"
	envMySQL    = "GETORCREATE_MYSQL"
)

// waitLimit bounds every wait for a server-side state; a test that reaches
// it fails instead of hanging.
const waitLimit = 15 * time.Second

var (
	poolMu sync.Mutex
	pools  = map[string]*sql.DB{}
)

// sharedPool opens one pool per driver and DSN for the whole run.
func sharedPool(t *testing.T, driverName, dsn string) *sql.DB {
	t.Helper()
	poolMu.Lock()
	defer poolMu.Unlock()
	if db, ok := pools[driverName+" "+dsn]; ok {
		return db
	}
	db, err := sql.Open(driverName, dsn)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxIdleConns(8)
	db.SetConnMaxIdleTime(time.Minute)
	if err := db.PingContext(context.Background()); err != nil {
		db.Close()
		t.Fatalf("%s: %v", driverName, err)
	}
	pools[driverName+" "+dsn] = db
	return db
}

// pgDB returns the PostgreSQL pool, or skips t.
func pgDB(t *testing.T) *sql.DB {
	t.Helper()
	dsn := os.Getenv(envPostgres)
	if dsn == "" {
		t.Skipf("PostgreSQL fact skipped: set %s (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable)", envPostgres)
	}
	return sharedPool(t, "pgx", dsn)
}

// myDSN converts the project's mysql://user[:pass]@host[:port]/db?params
// form to go-sql-driver's user[:pass]@tcp(host:port)/db?parseTime=true&params,
// adding extra parameters.
func myDSN(t *testing.T, extra url.Values) string {
	t.Helper()
	s := os.Getenv(envMySQL)
	if s == "" {
		t.Skipf("MariaDB/MySQL fact skipped: set %s (e.g. mysql://root@127.0.0.1:3306/test)", envMySQL)
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "mysql" && u.Scheme != "mariadb") {
		t.Fatalf("%s=%q: want mysql://user[:password]@host[:port]/database", envMySQL, s)
	}
	host := u.Host
	if u.Port() == "" {
		host += ":3306"
	}
	q := u.Query()
	q.Set("parseTime", "true")
	for k, v := range extra {
		q[k] = v
	}
	user := u.User.Username()
	if p, ok := u.User.Password(); ok {
		user += ":" + p
	}
	return fmt.Sprintf("%s@tcp(%s)/%s?%s", user, host, strings.TrimPrefix(u.Path, "/"), q.Encode())
}

// myDB returns the MariaDB/MySQL pool, or skips t.
func myDB(t *testing.T) *sql.DB {
	t.Helper()
	return sharedPool(t, "mysql", myDSN(t, nil))
}

// sqliteDB opens a pool on a new temporary database file. params are added
// to the DSN (busy_timeout is 5 s unless params set it).
func sqliteDB(t *testing.T, params string) *sql.DB {
	t.Helper()
	dsn := "file:" + filepath.Join(t.TempDir(), "facts.db") + "?"
	if !strings.Contains(params, "busy_timeout") {
		dsn += "_pragma=busy_timeout(5000)&"
	}
	db, err := sql.Open("sqlite", dsn+params)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// testCtx is cancelled when t ends or after a minute.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// tableName returns a table name unique to this run and test.
func tableName(t *testing.T, prefix string) string {
	var b [5]byte
	rand.Read(b[:])
	return "facts_" + prefix + "_" + hex.EncodeToString(b[:])
}

// table creates a table from the DDL (with %s for its name), on db,
// and drops it when t ends. It returns the name.
func table(t *testing.T, db *sql.DB, prefix, ddl string) string {
	t.Helper()
	name := tableName(t, prefix)
	if _, err := db.ExecContext(testCtx(t), fmt.Sprintf(ddl, name)); err != nil {
		t.Fatalf("%s: %v", fmt.Sprintf(ddl, name), err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP TABLE IF EXISTS "+name); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	return name
}

// session is one server connection of a test. It is never handed back to
// the pool: settings and open transactions end with it.
type session struct {
	t    *testing.T
	c    *sql.Conn
	ctx  context.Context
	id   int64 // pg_backend_pid() or CONNECTION_ID(); 0 for SQLite
	kind string
}

func newSession(t *testing.T, db *sql.DB, kind string) *session {
	t.Helper()
	ctx := testCtx(t)
	c, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := &session{t: t, c: c, ctx: ctx, kind: kind}
	t.Cleanup(func() {
		// Discard the connection: driver.ErrBadConn from Raw closes it.
		c.Raw(func(any) error { return driver.ErrBadConn })
		c.Close()
	})
	switch kind {
	case "postgres":
		s.id = s.int("SELECT pg_backend_pid()")
		// A stuck test fails instead of hanging.
		s.exec("SET lock_timeout = '20s'")
	case "mysql":
		s.id = s.int("SELECT CONNECTION_ID()")
		s.exec("SET SESSION innodb_lock_wait_timeout = 20")
	}
	return s
}

func pgSession(t *testing.T, db *sql.DB) *session { return newSession(t, db, "postgres") }
func mySession(t *testing.T, db *sql.DB) *session { return newSession(t, db, "mysql") }
func sqSession(t *testing.T, db *sql.DB) *session { return newSession(t, db, "sqlite") }

// exec runs q and fails the test on error.
func (s *session) exec(q string, args ...any) sql.Result {
	s.t.Helper()
	r, err := s.c.ExecContext(s.ctx, q, args...)
	if err != nil {
		s.t.Fatalf("%s: %v", q, err)
	}
	return r
}

// try runs q and returns its error.
func (s *session) try(q string, args ...any) error {
	_, err := s.c.ExecContext(s.ctx, q, args...)
	return err
}

// int returns the single integer q selects.
func (s *session) int(q string, args ...any) int64 {
	s.t.Helper()
	var n sql.NullInt64
	if err := s.c.QueryRowContext(s.ctx, q, args...).Scan(&n); err != nil {
		s.t.Fatalf("%s: %v", q, err)
	}
	return n.Int64
}

// str returns the single string q selects ("<null>" for NULL).
func (s *session) str(q string, args ...any) string {
	s.t.Helper()
	var v sql.NullString
	if err := s.c.QueryRowContext(s.ctx, q, args...).Scan(&v); err != nil {
		s.t.Fatalf("%s: %v", q, err)
	}
	if !v.Valid {
		return "<null>"
	}
	return v.String
}

// rows returns every row q selects, each column formatted with %v and
// joined by "|"; NULL is "<null>".
func (s *session) rows(q string, args ...any) ([]string, error) {
	rs, err := s.c.QueryContext(s.ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	cols, err := rs.Columns()
	if err != nil {
		return nil, err
	}
	var out []string
	for rs.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rs.Scan(ptrs...); err != nil {
			return nil, err
		}
		parts := make([]string, len(cols))
		for i, v := range vals {
			switch v := v.(type) {
			case nil:
				parts[i] = "<null>"
			case []byte:
				parts[i] = string(v)
			default:
				parts[i] = fmt.Sprint(v)
			}
		}
		out = append(out, strings.Join(parts, "|"))
	}
	return out, rs.Err()
}

// mustRows is rows that fails the test on error.
func (s *session) mustRows(q string, args ...any) []string {
	s.t.Helper()
	r, err := s.rows(q, args...)
	if err != nil {
		s.t.Fatalf("%s: %v", q, err)
	}
	return r
}

// warnings returns MySQL's SHOW WARNINGS for the previous statement as
// "Level code" strings.
func (s *session) warnings() []string {
	s.t.Helper()
	var out []string
	for _, r := range s.mustRows("SHOW WARNINGS") {
		p := strings.SplitN(r, "|", 3)
		out = append(out, p[0]+" "+p[1])
	}
	return out
}

// async runs q on s in a goroutine; the result arrives on the channel.
func (s *session) async(q string, args ...any) <-chan error {
	ch := make(chan error, 1)
	go func() {
		_, err := s.c.ExecContext(s.ctx, q, args...)
		ch <- err
	}()
	return ch
}

// asyncRows runs a query on s in a goroutine.
func (s *session) asyncRows(q string, args ...any) <-chan rowsResult {
	ch := make(chan rowsResult, 1)
	go func() {
		r, err := s.rows(q, args...)
		ch <- rowsResult{r, err}
	}()
	return ch
}

type rowsResult struct {
	rows []string
	err  error
}

// waitBlocked returns once the server reports session w waiting for a
// lock, observing from s (another session of the same server).
func (s *session) waitBlocked(w *session) {
	s.t.Helper()
	var q string
	switch s.kind {
	case "postgres":
		q = "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'"
	case "mysql":
		q = "SELECT count(*) FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id = ? AND trx_state = 'LOCK WAIT'"
	default:
		s.t.Fatal("waitBlocked: no lock view for " + s.kind)
	}
	deadline := time.Now().Add(waitLimit)
	for s.poll(q, w.id) == 0 {
		if time.Now().After(deadline) {
			s.t.Fatalf("session %d never blocked on a lock", w.id)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// InnoDB refreshes the cache behind information_schema.INNODB_TRX only when
// it has not been read for 100 ms, so polling it faster would see a frozen
// state forever; every read of it in this process goes through one throttle.
var innodbTrx struct {
	sync.Mutex
	last time.Time
}

func (s *session) poll(q string, id int64) int64 {
	if s.kind != "mysql" {
		return s.int(q, id)
	}
	innodbTrx.Lock()
	defer innodbTrx.Unlock()
	if d := 120*time.Millisecond - time.Since(innodbTrx.last); d > 0 {
		time.Sleep(d)
	}
	defer func() { innodbTrx.last = time.Now() }()
	return s.int(q, id)
}

// notYet fails the test if ch already has a result: the statement was
// expected to be blocked.
func notYet[T any](t *testing.T, ch <-chan T) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("statement finished while it should block: %v", v)
	default:
	}
}

// recv waits (bounded) for the result of an async statement.
func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitLimit):
		t.Fatal("statement did not finish")
		panic("unreachable")
	}
}

// pgCode is the SQLSTATE of a PostgreSQL error, "" for nil, or "not-pg".
func pgCode(err error) string {
	if err == nil {
		return ""
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return "not-pg: " + err.Error()
}

// myCode is "errno/SQLSTATE" of a MySQL error, "" for nil, or "not-mysql".
func myCode(err error) string {
	if err == nil {
		return ""
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return fmt.Sprintf("%d/%s", me.Number, string(me.SQLState[:]))
	}
	return "not-mysql: " + err.Error()
}

// sqCode is the extended result code of a SQLite error, 0 for nil, -1 for
// other errors.
func sqCode(err error) int {
	if err == nil {
		return 0
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code()
	}
	return -1
}

// want fails the test unless got == want.
func want[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
	t.Logf("%s: %v", what, got)
}

// wantRows fails the test unless got lists exactly want.
func wantRows(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") || len(got) != len(want) {
		t.Fatalf("%s: got rows %q, want %q", what, got, want)
	}
	t.Logf("%s: rows %q", what, got)
}
