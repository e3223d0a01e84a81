package faultproxy

// The tests here run against the real servers named by GETORCREATE_POSTGRES
// and GETORCREATE_MYSQL, through pgx (database/sql and pgxpool) and
// go-sql-driver/mysql (database/sql), prove that each kind of cut happens
// as documented, and log, on lines starting "OBSERVED |", which error each
// client returns; OBSERVED.md collects them.

import (
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/getorcreate/getorcreate/internal/dsn"
	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib"
)

// server is a real database server and a direct pool on it, for checks.
type server struct {
	kind   string // "postgres" or "mysql"
	dsn    string // the project's form
	target string // host:port
	direct *sql.DB
}

func openServer(t *testing.T, kind string) *server {
	t.Helper()
	env := map[string]string{"postgres": "GETORCREATE_POSTGRES", "mysql": "GETORCREATE_MYSQL"}[kind]
	s := &server{kind: kind, dsn: os.Getenv(env)}
	if s.dsn == "" {
		t.Skipf("%s tests skipped: set %s to run them against a real server (for example %s)", kind, env,
			map[string]string{"postgres": "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "mysql": "mysql://root@127.0.0.1:3306/test"}[kind])
	}
	u, err := url.Parse(s.dsn)
	if err != nil {
		t.Fatal(err)
	}
	s.target = u.Host
	if u.Port() == "" {
		s.target = net.JoinHostPort(u.Hostname(), map[string]string{"postgres": "5432", "mysql": "3306"}[kind])
	}
	db, _, err := dsn.Open(context.Background(), s.dsn)
	if err != nil {
		t.Fatalf("%v (is the server running?)", err)
	}
	t.Cleanup(func() { db.Close() })
	s.direct = db
	return s
}

// client is one way of talking to a server: "pgx-stdlib" (database/sql),
// "pgxpool", "mysql" (database/sql with the project's DSN, so
// interpolateParams) and "mysql-prepared" (without interpolateParams, so
// every statement with arguments is prepared and executed).
type client struct {
	name string
	db   *sql.DB
	pool *pgxpool.Pool
	ph   string // the first placeholder
}

var clientKinds = map[string]string{"pgx-stdlib": "postgres", "pgxpool": "postgres", "mysql": "mysql", "mysql-prepared": "mysql"}

// connect opens a client of this name on addr (a proxy's, or the
// server's own), with a single connection so that it is the one reused.
func (s *server) connect(t *testing.T, name, addr string) *client {
	t.Helper()
	c := &client{name: name, ph: "$1"}
	switch name {
	case "pgx-stdlib", "pgxpool":
		u, _ := url.Parse(s.dsn)
		u.Host = addr
		if name == "pgxpool" {
			cfg, err := pgxpool.ParseConfig(u.String())
			if err != nil {
				t.Fatal(err)
			}
			cfg.MaxConns = 1
			if c.pool, err = pgxpool.NewWithConfig(context.Background(), cfg); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.pool.Close)
			return c
		}
		db, err := sql.Open("pgx", u.String())
		if err != nil {
			t.Fatal(err)
		}
		c.db = db
	case "mysql", "mysql-prepared":
		p, err := dsn.Parse(s.dsn)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := mysql.ParseDSN(p.DataSource)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Addr = addr
		cfg.InterpolateParams = name == "mysql"
		if c.db, err = sql.Open("mysql", cfg.FormatDSN()); err != nil {
			t.Fatal(err)
		}
		c.ph = "?"
	}
	c.db.SetMaxOpenConns(1)
	t.Cleanup(func() { c.db.Close() })
	return c
}

func (c *client) exec(ctx context.Context, q string, args ...any) error {
	if c.pool != nil {
		_, err := c.pool.Exec(ctx, q, args...)
		return err
	}
	_, err := c.db.ExecContext(ctx, q, args...)
	return err
}

// connID returns the server's id of the connection a statement ran on.
func (c *client) connID(ctx context.Context) (int64, error) {
	q := "SELECT pg_backend_pid()"
	if c.ph == "?" {
		q = "SELECT CONNECTION_ID()"
	}
	var id int64
	if c.pool != nil {
		return id, c.pool.QueryRow(ctx, q).Scan(&id)
	}
	return id, c.db.QueryRowContext(ctx, q).Scan(&id)
}

func (c *client) ping(ctx context.Context) error {
	if c.pool != nil {
		return c.pool.Ping(ctx)
	}
	return c.db.PingContext(ctx)
}

// txExec runs q in a transaction and commits it, calling beforeCommit
// just before the COMMIT; it returns the first error.
func (c *client) txExec(ctx context.Context, beforeCommit func(), q string, args ...any) error {
	if c.pool != nil {
		tx, err := c.pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, q, args...); err != nil {
			return err
		}
		beforeCommit()
		return tx.Commit(ctx)
	}
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, q, args...); err != nil {
		return err
	}
	beforeCommit()
	return tx.Commit()
}

// table creates a table of one text column v, dropped when t ends.
func (s *server) table(t *testing.T) string {
	t.Helper()
	b := make([]byte, 5)
	rand.Read(b)
	name := "goc_fp_" + hex.EncodeToString(b)
	typ := "TEXT"
	if s.kind == "mysql" {
		typ = "VARCHAR(64)"
	}
	if _, err := s.direct.Exec("CREATE TABLE " + name + " (v " + typ + ")"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.direct.Exec("DROP TABLE IF EXISTS " + name) })
	return name
}

// has reports whether table holds the value v, read over the direct pool.
func (s *server) has(t *testing.T, table, v string) bool {
	t.Helper()
	return s.count(t, table, v) > 0
}

// running waits until a statement containing marker runs on the server.
func (s *server) running(t *testing.T, marker string) {
	t.Helper()
	q := "SELECT COUNT(*) FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() AND query LIKE '%' || $1 || '%'"
	if s.kind == "mysql" {
		q = "SELECT COUNT(*) FROM information_schema.processlist WHERE id <> CONNECTION_ID() AND info LIKE CONCAT('%', ?, '%')"
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		var n int
		if err := s.direct.QueryRow(q, marker).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no statement with %q running", marker)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// kill ends connection id from the server's side and waits until it is
// gone.
func (s *server) kill(t *testing.T, id int64) {
	t.Helper()
	kill := fmt.Sprintf("SELECT pg_terminate_backend(%d)", id)
	gone := fmt.Sprintf("SELECT COUNT(*) FROM pg_stat_activity WHERE pid = %d", id)
	if s.kind == "mysql" {
		kill = fmt.Sprintf("KILL %d", id)
		gone = fmt.Sprintf("SELECT COUNT(*) FROM information_schema.processlist WHERE id = %d", id)
	}
	if _, err := s.direct.Exec(kill); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		var n int
		if err := s.direct.QueryRow(gone).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("connection %d not gone", id)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// describe names an error's type chain and what errors.Is and As find in
// it.
func describe(err error) string {
	if err == nil {
		return "no error"
	}
	var chain []string
	for e := err; e != nil; e = errors.Unwrap(e) {
		chain = append(chain, fmt.Sprintf("%T", e))
	}
	var is []string
	for _, c := range []struct {
		name string
		err  error
	}{
		{"driver.ErrBadConn", driver.ErrBadConn},
		{"mysql.ErrInvalidConn", mysql.ErrInvalidConn},
		{"io.ErrUnexpectedEOF", io.ErrUnexpectedEOF},
		{"io.EOF", io.EOF},
		{"pgconn.ErrConnClosed", pgconn.ErrConnClosed},
		{"net.ErrClosed", net.ErrClosed},
		{"syscall.ECONNRESET", syscall.ECONNRESET},
		{"syscall.EPIPE", syscall.EPIPE},
		{"sql.ErrConnDone", sql.ErrConnDone},
		{"sql.ErrTxDone", sql.ErrTxDone},
		{"context.Canceled", context.Canceled},
		{"context.DeadlineExceeded", context.DeadlineExceeded},
	} {
		if errors.Is(err, c.err) {
			is = append(is, c.name)
		}
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		is = append(is, "*pgconn.PgError "+pgErr.Code)
	}
	var myErr *mysql.MySQLError
	if errors.As(err, &myErr) {
		is = append(is, fmt.Sprintf("*mysql.MySQLError %d", myErr.Number))
	}
	is = append(is, fmt.Sprintf("SafeToRetry=%v", pgconn.SafeToRetry(err)))
	return fmt.Sprintf("`%s` — %q — %s", strings.Join(chain, " > "), err.Error(), strings.Join(is, ", "))
}

func observe(t *testing.T, what string, err error) {
	t.Helper()
	t.Logf("OBSERVED | %s | %s | %s |", t.Name(), what, describe(err))
}

// eachClient runs fn on every client whose server is configured.
func eachClient(t *testing.T, fn func(t *testing.T, s *server, name string)) {
	for _, name := range []string{"pgx-stdlib", "pgxpool", "mysql", "mysql-prepared"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fn(t, openServer(t, clientKinds[name]), name)
		})
	}
}

// fault is one connection through a fresh proxy, with a table.
type fault struct {
	s     *server
	p     *Proxy
	c     *client
	table string
	ins   string // inserts its argument into table
	ctx   context.Context
}

func newFault(t *testing.T, s *server, name string) *fault {
	p, err := Start(s.target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	f := &fault{s: s, p: p, c: s.connect(t, name, p.Addr()), table: s.table(t), ctx: ctx}
	f.ins = "INSERT INTO " + f.table + " (v) VALUES (" + f.c.ph + ")"
	// Open the connection, and for pgx cache the INSERT's prepared
	// statement, so that the cut statement goes as a Bind alone. Twice:
	// pgx's stdlib pings a connection on its first reuse (see
	// TestFirstReusePing), and the tests want to cut their own statement.
	for range 2 {
		if err := f.c.exec(ctx, f.ins, "warm"); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// count returns how many rows of table hold v.
func (s *server) count(t *testing.T, table, v string) int {
	t.Helper()
	ph := "$1"
	if s.kind == "mysql" {
		ph = "?"
	}
	var n int
	if err := s.direct.QueryRow("SELECT COUNT(*) FROM "+table+" WHERE v = "+ph, v).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// cuts is the Stats of one cut by a rule of w.
func cuts(w When) Stats {
	if w == BeforeSend {
		return Stats{CutBefore: 1}
	}
	return Stats{CutAfter: 1}
}

// after checks the proxy's counts and that the client works again.
func (f *fault) after(t *testing.T, want Stats) {
	t.Helper()
	s := f.p.Stats()
	if s.CutBefore != want.CutBefore || s.CutAfter != want.CutAfter || s.CutAll != want.CutAll || s.Refused != want.Refused {
		t.Errorf("proxy stats %+v, want cuts %+v", s, want)
	}
	err := f.c.exec(f.ctx, f.ins, "next")
	observe(t, "next use of the pool", err)
	if err != nil {
		// Not a failure of the proxy: a client may hand the broken
		// connection back once.
		if err = f.c.exec(f.ctx, f.ins, "next"); err != nil {
			t.Errorf("client does not recover: %v", err)
		}
	}
}

func TestInsert(t *testing.T) {
	for _, w := range []When{BeforeSend, AfterSend} {
		t.Run(w.String(), func(t *testing.T) {
			eachClient(t, func(t *testing.T, s *server, name string) {
				f := newFault(t, s, name)
				f.p.Cut(Rule{Match: []byte("insert into " + f.table), When: w})
				err := f.c.exec(f.ctx, f.ins, "x")
				observe(t, "autocommit INSERT cut "+w.String(), err)
				if err == nil {
					t.Error("no error")
				}
				if got, want := s.has(t, f.table, "x"), w == AfterSend; got != want {
					t.Errorf("row present: %v, want %v", got, want)
				}
				f.after(t, cuts(w))
			})
		})
	}
}

func TestCommit(t *testing.T) {
	for _, w := range []When{BeforeSend, AfterSend} {
		t.Run(w.String(), func(t *testing.T) {
			eachClient(t, func(t *testing.T, s *server, name string) {
				f := newFault(t, s, name)
				err := f.c.txExec(f.ctx, func() {
					f.p.Cut(Rule{Match: []byte("COMMIT"), When: w})
				}, f.ins, "x")
				observe(t, "COMMIT cut "+w.String(), err)
				if err == nil {
					t.Error("no error")
				}
				if got, want := s.has(t, f.table, "x"), w == AfterSend; got != want {
					t.Errorf("row present: %v, want %v", got, want)
				}
				f.after(t, cuts(w))
			})
		})
	}
}

// TestNextStatement cuts whatever statement comes next (a nil Match).
func TestNextStatement(t *testing.T) {
	eachClient(t, func(t *testing.T, s *server, name string) {
		f := newFault(t, s, name)
		f.p.Cut(Rule{When: BeforeSend})
		err := f.c.exec(f.ctx, f.ins, "x")
		observe(t, "next statement cut BeforeSend", err)
		if err == nil {
			t.Error("no error")
		}
		if s.has(t, f.table, "x") {
			t.Error("row present")
		}
		f.after(t, Stats{CutBefore: 1})
	})
}

// TestNoArguments cuts an autocommit INSERT sent without arguments: pgx
// sends it as a simple Query, the MySQL driver as COM_QUERY. A client that
// reports no error must have run it again on a new connection.
func TestNoArguments(t *testing.T) {
	for _, w := range []When{BeforeSend, AfterSend} {
		t.Run(w.String(), func(t *testing.T) {
			eachClient(t, func(t *testing.T, s *server, name string) {
				f := newFault(t, s, name)
				f.p.Cut(Rule{Match: []byte("insert into " + f.table), When: w})
				err := f.c.exec(f.ctx, "INSERT INTO "+f.table+" (v) VALUES ('x')")
				n := s.count(t, f.table, "x")
				observe(t, fmt.Sprintf("autocommit INSERT without arguments cut %v (rows inserted: %d)", w, n), err)
				want := 0
				if w == AfterSend {
					want = 1
				}
				if err == nil {
					want++ // run again
					if s := f.p.Stats(); s.Conns < 2 {
						t.Errorf("no error, on the same connection: %+v", s)
					}
				}
				if n != want {
					t.Errorf("%d rows, want %d", n, want)
				}
				f.after(t, cuts(w))
			})
		})
	}
}

// TestCutAllWhileRunning cuts a connection whose statement runs, with and
// without arguments (see TestNoArguments).
func TestCutAllWhileRunning(t *testing.T) {
	for _, args := range []bool{true, false} {
		t.Run(fmt.Sprintf("args=%v", args), func(t *testing.T) {
			eachClient(t, func(t *testing.T, s *server, name string) {
				f := newFault(t, s, name)
				marker := "marker_" + f.table
				fn := "pg_sleep"
				if s.kind == "mysql" {
					fn = "SLEEP"
				}
				q := "SELECT " + fn + "(" + f.c.ph + "), '" + marker + "'"
				qargs := []any{2}
				if !args {
					q, qargs = "SELECT "+fn+"(2), '"+marker+"'", nil
				}
				errc := make(chan error, 1)
				go func() { errc <- f.c.exec(f.ctx, q, qargs...) }()
				s.running(t, marker)
				start := time.Now()
				if n := f.p.CutAll(); n != 1 {
					t.Errorf("CutAll cut %d connections, want 1", n)
				}
				err := <-errc
				d := time.Since(start)
				observe(t, fmt.Sprintf("CutAll while SELECT sleep(2) runs (returned after %v)", d.Round(100*time.Millisecond)), err)
				if err == nil {
					if s := f.p.Stats(); d < 2*time.Second || s.Conns < 2 {
						t.Errorf("no error after %v, stats %+v", d, s)
					}
				} else if d > time.Second {
					t.Errorf("the client took %v to notice", d)
				}
				f.after(t, Stats{CutAll: 1})
			})
		})
	}
}

// TestCutAllIdle cuts pooled connections while idle, and uses them again
// at once and after more than a second (when pgx pings first).
func TestCutAllIdle(t *testing.T) {
	for _, idle := range []time.Duration{50 * time.Millisecond, 1200 * time.Millisecond} {
		t.Run(fmt.Sprintf("idle=%v", idle), func(t *testing.T) {
			eachClient(t, func(t *testing.T, s *server, name string) {
				f := newFault(t, s, name)
				f.p.CutAll()
				time.Sleep(idle)
				err := f.c.exec(f.ctx, f.ins, "x")
				observe(t, "INSERT on a pooled connection the proxy cut while idle", err)
				if present := s.has(t, f.table, "x"); present != (err == nil) {
					t.Errorf("error %v but row present %v", err, present)
				}
				f.after(t, Stats{CutAll: 1})
			})
		})
	}
}

// TestFirstReusePing shows that a nil-Match rule can cut a pool's own
// statement: pgx's stdlib pings a connection on its first reuse (and
// after a second idle), and database/sql replaces a connection whose ping
// failed without telling the caller.
func TestFirstReusePing(t *testing.T) {
	s := openServer(t, "postgres")
	p, err := Start(s.target)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := s.connect(t, "pgx-stdlib", p.Addr())
	table := s.table(t)
	ctx := context.Background()
	if err := c.exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	p.Cut(Rule{When: BeforeSend})
	err = c.exec(ctx, "INSERT INTO "+table+" (v) VALUES ($1)", "x")
	observe(t, "first reuse of a database/sql connection, next statement cut BeforeSend", err)
	if err != nil || !s.has(t, table, "x") {
		t.Errorf("error %v, row present %v", err, s.has(t, table, "x"))
	}
	if st := p.Stats(); st.CutBefore != 1 || st.Conns < 2 {
		t.Errorf("stats %+v: the ping was not the statement cut", st)
	}
}

func TestRefuse(t *testing.T) {
	eachClient(t, func(t *testing.T, s *server, name string) {
		f := newFault(t, s, name)
		f.p.Refuse(true)
		fresh := s.connect(t, name, f.p.Addr())
		err := fresh.ping(f.ctx)
		observe(t, "Ping of a new pool while the proxy refuses", err)
		if err == nil {
			t.Error("no error")
		}
		if err := f.c.exec(f.ctx, f.ins, "x"); err != nil {
			t.Errorf("Refuse touched an open connection: %v", err)
		}
		f.p.Refuse(false)
		if err := fresh.ping(f.ctx); err != nil {
			t.Errorf("after Refuse(false): %v", err)
		}
		if f.p.Stats().Refused == 0 {
			t.Error("nothing refused")
		}
	})
}

// TestServerKill observes, without the proxy, what a pooled connection
// that the server ended (pg_terminate_backend, KILL) returns on its next
// use: right away, and after more than a second idle (when pgx pings
// before reuse).
func TestServerKill(t *testing.T) {
	for _, idle := range []time.Duration{0, 1200 * time.Millisecond} {
		t.Run(fmt.Sprintf("idle=%v", idle), func(t *testing.T) {
			eachClient(t, func(t *testing.T, s *server, name string) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				c := s.connect(t, name, s.target)
				var id int64
				for range 2 { // past pgx stdlib's ping on first reuse
					var err error
					if id, err = c.connID(ctx); err != nil {
						t.Fatal(err)
					}
				}
				s.kill(t, id)
				time.Sleep(idle)
				id2, err := c.connID(ctx)
				observe(t, "next use after the server killed the connection", err)
				if err != nil {
					id2, err = c.connID(ctx)
					observe(t, "the use after that", err)
				}
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("OBSERVED | %s | connection | %d, then %d |", t.Name(), id, id2)
				if id2 == id {
					t.Errorf("still connection %d", id)
				}
			})
		})
	}
}
