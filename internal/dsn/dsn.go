// Package dsn opens a database from the DSN forms used everywhere in this
// project, and registers the three getorcreate dialects with their drivers:
//
//	sqlite:PATH                                  (embedded; ":memory:" is refused, see Open)
//	postgres://user:pass@host:port/db?params     (pgx through database/sql)
//	mysql://user:pass@host:port/db?params        (MariaDB too; go-sql-driver/mysql)
package dsn

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	_ "github.com/getorcreate/getorcreate/dialect/mysql"
	_ "github.com/getorcreate/getorcreate/dialect/postgres"
	_ "github.com/getorcreate/getorcreate/dialect/sqlite"
	_ "github.com/jackc/pgx/v5/stdlib"
)

// ErrBadDSN is returned for a DSN of none of the supported forms.
var ErrBadDSN = errors.New("bad DSN")

// Parsed is a DSN translated for database/sql.
type Parsed struct {
	Kind       string // "sqlite", "postgres" or "mysql"
	DriverName string // for sql.Open
	DataSource string // for sql.Open
}

// Parse translates a project DSN into a driver name and data source.
func Parse(s string) (Parsed, error) {
	switch {
	case strings.HasPrefix(s, "sqlite:"):
		path := strings.TrimPrefix(s, "sqlite:")
		path = strings.TrimPrefix(path, "//")
		if path == "" || path == ":memory:" {
			return Parsed{}, fmt.Errorf("%w %q: sqlite needs a file path (an in-memory database is one per connection)", ErrBadDSN, s)
		}
		if strings.ContainsAny(path, "?#") {
			return Parsed{}, fmt.Errorf("%w %q: a sqlite path may not contain ? or #", ErrBadDSN, s)
		}
		q := url.Values{}
		q.Add("_pragma", "busy_timeout(10000)")
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "synchronous(NORMAL)")
		q.Add("_pragma", "foreign_keys(ON)")
		q.Set("_txlock", "immediate")
		// Times as SQLite's own date functions read them
		// ("2006-01-02 15:04:05.999999999-07:00"), not the driver's
		// default t.String(). The library binds times in UTC, which both
		// read back; a time key's text must not change format over the
		// life of a database, since the text is the key.
		q.Set("_time_format", "sqlite")
		return Parsed{"sqlite", "sqlite", "file:" + path + "?" + q.Encode()}, nil
	case strings.HasPrefix(s, "postgres://"), strings.HasPrefix(s, "postgresql://"):
		if _, err := url.Parse(s); err != nil {
			return Parsed{}, fmt.Errorf("%w: %v", ErrBadDSN, err)
		}
		return Parsed{"postgres", "pgx", s}, nil
	case strings.HasPrefix(s, "mysql://"), strings.HasPrefix(s, "mariadb://"):
		u, err := url.Parse(s)
		if err != nil {
			return Parsed{}, fmt.Errorf("%w: %v", ErrBadDSN, err)
		}
		cfg := mysql.NewConfig()
		cfg.Net = "tcp"
		cfg.Addr = u.Host
		if u.Port() == "" {
			cfg.Addr = net.JoinHostPort(u.Hostname(), "3306")
		}
		if u.User != nil {
			cfg.User = u.User.Username()
			cfg.Passwd, _ = u.User.Password()
		}
		cfg.DBName = strings.TrimPrefix(u.Path, "/")
		if cfg.DBName == "" {
			return Parsed{}, fmt.Errorf("%w %q: no database name", ErrBadDSN, s)
		}
		cfg.ParseTime = true
		// The driver writes and reads wall clocks in loc (UTC); the server
		// converts TIMESTAMP values between the session's time_zone and
		// UTC. They must agree, or every TIMESTAMP is stored as another
		// instant (Open checks).
		if !strings.Contains(u.RawQuery, "time_zone=") {
			cfg.Params = map[string]string{"time_zone": "'+00:00'"}
		}
		// Send statements with their values in one round trip instead of
		// prepare, execute and close; the driver refuses where the
		// connection's charset would make that unsafe.
		cfg.InterpolateParams = true
		cfg.Loc = time.UTC
		ds := cfg.FormatDSN()
		if raw := u.RawQuery; raw != "" {
			// Extra parameters (system variables such as
			// transaction_isolation, driver options) pass through as given.
			sep := "?"
			if strings.Contains(ds, "?") {
				sep = "&"
			}
			ds += sep + raw
		}
		if _, err := mysql.ParseDSN(ds); err != nil {
			return Parsed{}, fmt.Errorf("%w: %v", ErrBadDSN, err)
		}
		return Parsed{"mysql", "mysql", ds}, nil
	}
	return Parsed{}, fmt.Errorf("%w %q: want sqlite:PATH, postgres://HOST/DB or mysql://HOST/DB", ErrBadDSN, s)
}

// ErrNoDatabase is returned by OpenExisting for a SQLite path where there
// is no file.
var ErrNoDatabase = errors.New("no database file")

// OpenExisting is Open for tools that only read: a SQLite database must
// already exist, and is opened read-only, with no pragma that writes (no
// switch to WAL), so nothing on disk changes.
func OpenExisting(ctx context.Context, s string) (*sql.DB, Parsed, error) {
	p, err := Parse(s)
	if err != nil || p.Kind != "sqlite" {
		return Open(ctx, s)
	}
	path := strings.TrimPrefix(strings.TrimPrefix(s, "sqlite:"), "//")
	if fi, err := os.Stat(path); err != nil || fi.IsDir() {
		return nil, p, fmt.Errorf("%w at %s", ErrNoDatabase, path)
	}
	q := url.Values{}
	q.Set("mode", "ro")
	q.Add("_pragma", "busy_timeout(10000)")
	p.DataSource = "file:" + path + "?" + q.Encode()
	return open(ctx, p)
}

// Open opens and pings the database. The pool is sized for the database:
// SQLite gets a small pool, since it has one writer at a time.
func Open(ctx context.Context, s string) (*sql.DB, Parsed, error) {
	p, err := Parse(s)
	if err != nil {
		return nil, p, err
	}
	return open(ctx, p)
}

func open(ctx context.Context, p Parsed) (*sql.DB, Parsed, error) {
	db, err := sql.Open(p.DriverName, p.DataSource)
	if err != nil {
		return nil, p, fmt.Errorf("opening %s: %w", p.Kind, err)
	}
	if p.Kind == "sqlite" {
		// Keep the connections (and the statements prepared on them).
		db.SetMaxOpenConns(8)
		db.SetMaxIdleConns(8)
	} else {
		db.SetMaxOpenConns(64)
		db.SetMaxIdleConns(64)
	}
	db.SetConnMaxIdleTime(5 * time.Minute)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, p, fmt.Errorf("connecting to %s: %w", p.Kind, err)
	}
	return db, p, nil
}
