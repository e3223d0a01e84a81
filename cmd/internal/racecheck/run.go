package racecheck

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/getorcreate/getorcreate/dialect"
	"github.com/getorcreate/getorcreate/internal/dsn"
)

// Report is the outcome of one strategy on one workload. Its JSON form is
// the --json line.
type Report struct {
	Strategy  string `json:"strategy"`
	Workload  string `json:"workload"`
	DB        string `json:"db"` // "sqlite", "postgres", "mariadb" or "mysql"
	Workers   int    `json:"workers"`
	Procs     int    `json:"procs"`
	Isolation string `json:"isolation"` // "rc", "rr" or "serializable": what the transactions ran at
	InTx      bool   `json:"in_tx"`
	// NoUnique is true when the strategy's table had no unique index on
	// the key (Config.NoUnique). Not part of the JSON line.
	NoUnique bool `json:"-"`
	// Attempted and OK count operations; an operation that failed after
	// its retries is attempted and not OK.
	Attempted int64   `json:"attempted"`
	OK        int64   `json:"ok"`
	OpsPerSec float64 `json:"ops_per_sec"`
	P50ms     float64 `json:"p50_ms"`
	P99ms     float64 `json:"p99_ms"`
	// Duplicates counts rows beyond the first for any key.
	Duplicates int64 `json:"duplicates"`
	// LostUpdates is the increments callers were told succeeded minus the
	// sum stored (counter workload; 0 elsewhere). It is negative when
	// duplicate rows made one increment count several times (NoUnique).
	LostUpdates int64 `json:"lost_updates"`
	// CreatedFlagErrors counts keys for which not exactly one caller was
	// told it created the row.
	CreatedFlagErrors int64 `json:"created_flag_errors"`
	// Errors counts errors that reached the caller, by kind (see
	// ErrorKinds).
	Errors map[string]int64 `json:"errors"`
	// Retries counts whole-operation retries: the library's own, or
	// RunTx's with InTx. Not part of the JSON line.
	Retries int64 `json:"-"`
	// Samples holds the first message of each error kind, for diagnosis.
	Samples map[string]string `json:"-"`
	// Elapsed is the time the rounds took.
	Elapsed time.Duration `json:"-"`
	// Table is the strategy's scratch table, dropped unless Config.Keep.
	Table string `json:"-"`
}

// Held reports whether every invariant held: no duplicates, no lost
// updates, exactly one creator per key, and no error reaching a caller.
func (r Report) Held() bool {
	return r.Duplicates == 0 && r.LostUpdates == 0 && r.CreatedFlagErrors == 0 && r.OK == r.Attempted && r.errorCount() == 0
}

func (r Report) errorCount() int64 {
	var n int64
	for _, v := range r.Errors {
		n += v
	}
	return n
}

// Held reports whether getorcreate held every invariant in every report
// (whatever the other strategies did): the exit status of racecheck.
func Held(reports []Report) bool {
	for _, r := range reports {
		if r.Strategy == GetOrCreate && !r.Held() {
			return false
		}
	}
	return true
}

// database is an open database and what racecheck knows of it.
type database struct {
	db      *sql.DB
	kind    string // dsn kind: "sqlite", "postgres" or "mysql"
	name    string // for reports: "mariadb" for a MariaDB server
	version string
	d       dialect.Dialect
	iso     string // the default isolation, short name
}

// openDatabase opens and pings dsnStr; a bad DSN or a server that does not
// answer is a UsageError. With existing, a SQLite database must exist and
// is opened read-only.
func openDatabase(ctx context.Context, dsnStr string, existing bool) (*database, error) {
	open := dsn.Open
	if existing {
		open = dsn.OpenExisting
	}
	db, p, err := open(ctx, dsnStr)
	if errors.Is(err, dsn.ErrBadDSN) || errors.Is(err, dsn.ErrNoDatabase) {
		return nil, usagef("%v", err)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, usagef("cannot reach the database: %s", oneLine(err.Error()))
	}
	d, ok := dialect.ForDriver(db.Driver())
	if !ok {
		db.Close()
		return nil, fmt.Errorf("no getorcreate dialect for driver %T", db.Driver())
	}
	x := &database{db: db, kind: p.Kind, name: p.Kind, d: d}
	var q string
	switch p.Kind {
	case "sqlite":
		q = "SELECT sqlite_version()"
	case "postgres":
		q = "SELECT current_setting('server_version')"
	default:
		q = "SELECT VERSION()"
	}
	if err := db.QueryRowContext(ctx, q).Scan(&x.version); err != nil {
		db.Close()
		return nil, usagef("cannot query the database: %s", oneLine(err.Error()))
	}
	if p.Kind == "mysql" && strings.Contains(strings.ToLower(x.version), "mariadb") {
		x.name = "mariadb"
	}
	if x.iso, err = defaultIsolation(ctx, db, p.Kind); err != nil {
		db.Close()
		return nil, fmt.Errorf("reading the default isolation level: %w", err)
	}
	return x, nil
}

// defaultIsolation reads the isolation level transactions get when they ask
// for none, as a short name.
func defaultIsolation(ctx context.Context, db *sql.DB, kind string) (string, error) {
	var s string
	switch kind {
	case "sqlite":
		// One writer at a time: every transaction is serializable.
		return "serializable", nil
	case "postgres":
		if err := db.QueryRowContext(ctx, "SHOW default_transaction_isolation").Scan(&s); err != nil {
			return "", err
		}
	default:
		// MySQL 8 names it transaction_isolation; MariaDB before 11.1
		// only tx_isolation.
		if err := db.QueryRowContext(ctx, "SELECT @@transaction_isolation").Scan(&s); err != nil {
			if err := db.QueryRowContext(ctx, "SELECT @@tx_isolation").Scan(&s); err != nil {
				return "", err
			}
		}
	}
	switch strings.ToLower(strings.ReplaceAll(s, "-", " ")) {
	case "read committed":
		return "rc", nil
	case "repeatable read":
		return "rr", nil
	case "serializable":
		return "serializable", nil
	case "read uncommitted":
		return "ru", nil
	}
	return s, nil
}

// scratch creates and drops the run's tables. Names are
// racecheck_<random>_<what>, so a run never touches a table it did not
// create.
type scratch struct {
	x       *database
	onTable func(string)
	prefix  string
	created []string
}

func newScratch(x *database) *scratch {
	b := make([]byte, 4)
	rand.Read(b)
	return &scratch{x: x, prefix: "racecheck_" + hex.EncodeToString(b)}
}

// table creates the scratch table for strategy: the shape of a typical
// tags or counters table, with the unique index on name that getorcreate
// (and insert-catch) depend on.
//
// Without unique, name has no unique index, as on many real tables: then
// the naive strategies' race shows as duplicate rows instead of
// duplicate-key errors.
func (s *scratch) table(ctx context.Context, what string, unique bool) (string, error) {
	name := s.prefix + "_" + strings.ReplaceAll(what, "-", "_")
	u := " UNIQUE"
	if !unique {
		u = ""
	}
	var ddl []string
	switch s.x.kind {
	case "sqlite":
		ddl = []string{`CREATE TABLE %s (id INTEGER PRIMARY KEY, name TEXT NOT NULL` + u + `, count INTEGER NOT NULL DEFAULT 0)`}
	case "postgres":
		ddl = []string{`CREATE TABLE %s (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL` + u + `, count BIGINT NOT NULL DEFAULT 0)`}
	default:
		ddl = []string{`CREATE TABLE %s (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(64) NOT NULL` + u + `, count BIGINT NOT NULL DEFAULT 0) ENGINE=InnoDB`}
	}
	if what == "pin" {
		ddl = []string{`CREATE TABLE %s (id INTEGER PRIMARY KEY)`, `INSERT INTO %s (id) VALUES (1)`}
	}
	// Registered before it exists, so that a CREATE interrupted half-way
	// is still dropped.
	s.created = append(s.created, name)
	if s.onTable != nil {
		s.onTable(name)
	}
	for _, q := range ddl {
		if _, err := s.x.db.ExecContext(ctx, fmt.Sprintf(q, s.x.d.Quote(name))); err != nil {
			return "", fmt.Errorf("creating scratch table %s: %w", name, err)
		}
	}
	return name, nil
}

// drop drops the named scratch table, or all of them for "". It runs on
// its own context: it must also run after an interrupt cancelled the run.
func (s *scratch) drop(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	keep := s.created[:0]
	for _, t := range s.created {
		if name != "" && t != name {
			keep = append(keep, t)
			continue
		}
		if _, err := s.x.db.ExecContext(ctx, "DROP TABLE IF EXISTS "+s.x.d.Quote(t)); err != nil {
			errs = append(errs, fmt.Errorf("dropping scratch table %s: %w", t, err))
			keep = append(keep, t)
		}
	}
	s.created = keep
	return errors.Join(errs...)
}

// Run runs cfg's workload with each of its strategies, one after the
// other, each on its own scratch table, and reports on each. Bad input and
// an unreachable database return a *UsageError. The scratch tables are
// dropped before Run returns, also when ctx is cancelled, unless cfg.Keep.
func Run(ctx context.Context, cfg Config) (reports []Report, err error) {
	cfg, err = cfg.normalize()
	if err != nil {
		return nil, err
	}
	x, err := openDatabase(ctx, cfg.DSN, false)
	if err != nil {
		return nil, err
	}
	defer x.db.Close()
	iso := x.iso
	if cfg.Isolation != "" && x.kind != "sqlite" {
		l, _ := isolationLevel(cfg.Isolation)
		iso = isolationName(l)
	}
	sc := newScratch(x)
	sc.onTable = cfg.onTable
	defer func() {
		if cfg.Keep {
			return
		}
		// A drop that fails is reported with whatever ended the run.
		err = errors.Join(err, sc.drop(""))
	}()
	pin, err := sc.table(ctx, "pin", true)
	if err != nil {
		return nil, err
	}
	for i, strategy := range cfg.Strategies {
		// getorcreate refuses a table without the unique index (it is
		// what makes get-or-create safe), so NoUnique spares its table.
		table, err := sc.table(ctx, strategy, !cfg.NoUnique || strategy == GetOrCreate)
		if err != nil {
			return reports, err
		}
		sr := strategyRun{DSN: cfg.DSN, Strategy: strategy, Workload: cfg.Workload, Table: table, Pin: pin,
			Isolation: cfg.Isolation, InTx: cfg.InTx, Seed: cfg.Seed, MySQLPaths: cfg.mysqlPaths}
		for w := range cfg.Workers {
			sr.Workers = append(sr.Workers, w)
		}
		progress := func(f float64) {
			if cfg.Progress != nil {
				cfg.Progress(Progress{Workload: cfg.Workload, Strategy: strategy, StrategyIndex: i, Strategies: len(cfg.Strategies), Fraction: f})
			}
		}
		st, elapsed, err := runStrategy(ctx, cfg, x, sr, progress)
		if err != nil {
			return reports, fmt.Errorf("%s: %w", strategy, err)
		}
		rep := Report{Strategy: strategy, Workload: cfg.Workload, DB: x.name, Workers: cfg.Workers, Procs: cfg.Procs,
			Isolation: iso, InTx: cfg.InTx, Attempted: st.Attempted, OK: st.OK, Errors: st.Errors, Retries: st.Retries,
			Samples: st.Samples, Elapsed: elapsed, NoUnique: cfg.NoUnique && strategy != GetOrCreate, Table: table}
		if elapsed > 0 {
			rep.OpsPerSec = round(float64(st.OK)/elapsed.Seconds(), 1)
		}
		rep.P50ms, rep.P99ms = round(percentile(st.LatMS, 0.50), 3), round(percentile(st.LatMS, 0.99), 3)
		if err := check(ctx, x, table, cfg.Workload == Counter, st, &rep); err != nil {
			return reports, fmt.Errorf("%s: checking the table: %w", strategy, err)
		}
		reports = append(reports, rep)
		if !cfg.Keep {
			if err := sc.drop(table); err != nil {
				return reports, err
			}
		}
	}
	return reports, nil
}

// runStrategy runs the rounds of one strategy and returns what the workers
// saw and the time the rounds took.
func runStrategy(ctx context.Context, cfg Config, x *database, sr strategyRun, progress func(float64)) (stats, time.Duration, error) {
	var g group
	lead := time.Millisecond
	if cfg.Procs > 1 {
		rm, err := startRemote(ctx, cfg.WorkerCommand, sr, cfg.Procs)
		if err != nil {
			return stats{}, 0, err
		}
		g, lead = rm, barrierLead
	} else {
		e, err := openEnv(ctx, x.db, x.kind, sr)
		if err != nil {
			return stats{}, 0, err
		}
		g = newLocal(e, sr)
	}
	defer g.close()
	var elapsed time.Duration
	for r := 0; ; r++ {
		if cfg.Rounds > 0 && r >= cfg.Rounds || cfg.Duration > 0 && r > 0 && elapsed >= cfg.Duration {
			break
		}
		start := time.Now().Add(lead)
		if err := g.round(ctx, r, start); err != nil {
			return stats{}, 0, err
		}
		elapsed += time.Since(start)
		if cfg.Rounds > 0 {
			progress(float64(r+1) / float64(cfg.Rounds))
		} else {
			progress(min(1, float64(elapsed)/float64(cfg.Duration)))
		}
	}
	st, err := g.finish(ctx)
	return st, elapsed, err
}

// check reads the table back and fills the report's invariants.
func check(ctx context.Context, x *database, table string, counter bool, st stats, rep *Report) error {
	t, name, count := x.d.Quote(table), x.d.Quote("name"), x.d.Quote("count")
	// Rows beyond one per key. With the unique index this is always 0; it
	// is checked anyway, because that is the claim.
	q := fmt.Sprintf("SELECT COUNT(*) - COUNT(DISTINCT %s) FROM %s", name, t)
	if err := x.db.QueryRowContext(ctx, q).Scan(&rep.Duplicates); err != nil {
		return err
	}
	if counter {
		var stored int64
		q := fmt.Sprintf("SELECT COALESCE(SUM(%s), 0) FROM %s", count, t)
		if err := x.db.QueryRowContext(ctx, q).Scan(&stored); err != nil {
			return err
		}
		// Every successful operation was one increment (a new row
		// starts at 1).
		rep.LostUpdates = st.OK - stored
	}
	rows, err := x.db.QueryContext(ctx, fmt.Sprintf("SELECT %s FROM %s", name, t))
	if err != nil {
		return err
	}
	defer rows.Close()
	stored := map[string]bool{}
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return err
		}
		stored[k] = true
	}
	if err := rows.Err(); err != nil {
		return err
	}
	// A key is wrong when its row exists and no caller, or several, were
	// told they created it, or when a caller was told it created a row
	// that is not there.
	for k := range stored {
		if st.Created[k] != 1 {
			rep.CreatedFlagErrors++
		}
	}
	for k, n := range st.Created {
		if n > 0 && !stored[k] {
			rep.CreatedFlagErrors++
		}
	}
	return nil
}

// round rounds f to n decimals: microseconds are the clock's honest
// precision here, and JSON readers need no more.
func round(f float64, n int) float64 {
	p := math.Pow(10, float64(n))
	return math.Round(f*p) / p
}

// percentile is the nearest-rank percentile of ms, sorting it.
func percentile(ms []float64, p float64) float64 {
	if len(ms) == 0 {
		return 0
	}
	slices.Sort(ms)
	i := int(float64(len(ms))*p+0.5) - 1
	return ms[max(0, min(i, len(ms)-1))]
}
