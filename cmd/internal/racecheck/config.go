package racecheck

import (
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Workload names.
const (
	Storm   = "storm"   // every worker onto the same brand-new key, round after round
	Keys    = "keys"    // every worker over the same 1,000 new keys, each in its own random order
	Counter = "counter" // increments on names from a skewed distribution plus one hot key
)

// Workloads lists the workload names.
var Workloads = []string{Storm, Keys, Counter}

// Strategy names.
const (
	Naive           = "naive"             // SELECT, then INSERT if nothing was found
	NaiveTx         = "naive-tx"          // the same inside BEGIN ... COMMIT
	InsertCatch     = "insert-catch"      // Django's get_or_create: INSERT in a savepoint, on duplicate key one SELECT, else re-raise
	ReadModifyWrite = "read-modify-write" // the ORM counter: SELECT count, UPDATE count = read + 1
	GetOrCreate     = "getorcreate"       // this library
)

// Strategies lists every strategy, in the order reports show them.
var Strategies = []string{Naive, NaiveTx, InsertCatch, ReadModifyWrite, GetOrCreate}

// DefaultStrategies returns the strategies a workload runs when none are
// named: read-modify-write is a counter strategy, so storm and keys leave it
// out.
func DefaultStrategies(workload string) []string {
	if workload == Counter {
		return slices.Clone(Strategies)
	}
	return []string{Naive, NaiveTx, InsertCatch, GetOrCreate}
}

// Config says what Run runs.
type Config struct {
	// DSN is the database, in the project's forms: sqlite:PATH,
	// postgres://..., mysql://... (MariaDB too).
	DSN string
	// Workload is Storm, Keys or Counter.
	Workload string
	// Strategies to run, one after the other, each on its own scratch
	// table. Empty means DefaultStrategies(Workload).
	Strategies []string
	// Workers is the number of concurrent workers (at least 1), spread
	// over Procs processes. DefaultWorkers is a good start.
	Workers int
	// Procs is the number of OS processes the workers run in; 1 (or 0)
	// runs them as goroutines of this process.
	Procs int
	// Rounds of the workload; zero means the workload's default. A round
	// releases all workers together through a barrier.
	Rounds int
	// Duration, when positive, runs rounds until it has passed instead of
	// a fixed number of rounds.
	Duration time.Duration
	// Isolation is "rc", "rr", "serializable" or "" for the database's
	// default. It applies to every transaction the strategies open: the
	// caller's with InTx, else naive-tx's and insert-catch's own
	// (getorcreate's own transactions are the library's business). SQLite
	// ignores it.
	Isolation string
	// InTx runs each operation inside a caller-owned transaction at
	// Isolation, whose snapshot a first SELECT pins, as a web framework
	// with one transaction per request does.
	InTx bool
	// NoUnique creates the tables of every strategy but getorcreate
	// without a unique index on the key, as many real tables are: the
	// naive strategies' race then leaves duplicate rows rather than
	// duplicate-key errors. getorcreate's table keeps its index, without
	// which getorcreate refuses to run.
	NoUnique bool
	// Keep leaves the scratch tables in place for inspection.
	Keep bool
	// Seed makes the key orders and counter draws reproducible; zero picks
	// one from the clock.
	Seed int64
	// Progress, when set, is called after every round.
	Progress func(Progress)
	// WorkerCommand, when set, returns the command that starts one worker
	// process; it defaults to this executable with the worker environment
	// variable set (see WorkerMain).
	WorkerCommand func() ([]string, error)

	// mysqlPaths runs getorcreate with the MySQL dialect's statements
	// (no RETURNING) on a MariaDB server: tests use it, as the library's
	// own suite does, to race the paths real MySQL takes.
	mysqlPaths bool

	// onTable, when set, is told the name of every scratch table before
	// it is created: tests use it to check that none is left behind.
	onTable func(string)
}

// Progress says how far a run is.
type Progress struct {
	Workload, Strategy string
	StrategyIndex      int     // 0-based position of Strategy in the run
	Strategies         int     // how many strategies the run has
	Fraction           float64 // of this strategy's rounds or duration, 0..1
}

// UsageError is bad input: a flag value, a DSN, a missing table or column.
// Commands exit 2 on it.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

func usagef(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

// IsUsage reports whether err is bad input or an unreachable database:
// the caller's to fix, not a finding.
func IsUsage(err error) bool {
	var u *UsageError
	return errors.As(err, &u)
}

// defaultRounds are chosen so that each naive strategy fails on every run
// on this project's 2-core machine (see docs/RACECHECK.md), yet a whole run
// of every strategy stays within seconds.
func defaultRounds(workload string) int {
	switch workload {
	case Storm:
		return 40
	case Keys:
		return 1
	default:
		return 20
	}
}

// DefaultWorkers is the number of workers the command runs by default:
// enough for the naive strategies to show the race on every run on this
// project's 2-core machine, few enough for a small server's connection
// limit (PostgreSQL's default is 100).
const DefaultWorkers = 16

// counterOpsPerRound is how many increments each worker makes per counter
// round.
const counterOpsPerRound = 10

// keysPerRound is the size of the keys workload's key set.
const keysPerRound = 1000

// normalize validates c and fills its defaults.
func (c Config) normalize() (Config, error) {
	if c.DSN == "" {
		return c, usagef("no database: give --db sqlite:PATH, postgres://... or mysql://...")
	}
	if c.Workload == "" {
		c.Workload = Storm
	}
	if !slices.Contains(Workloads, c.Workload) {
		return c, usagef("unknown workload %q: want one of %s", c.Workload, strings.Join(Workloads, ", "))
	}
	if len(c.Strategies) == 0 {
		c.Strategies = DefaultStrategies(c.Workload)
	}
	seen := map[string]bool{}
	for _, s := range c.Strategies {
		if !slices.Contains(Strategies, s) {
			return c, usagef("unknown strategy %q: want some of %s", s, strings.Join(Strategies, ","))
		}
		if seen[s] {
			return c, usagef("strategy %q named twice", s)
		}
		seen[s] = true
	}
	if c.Workers < 1 {
		return c, usagef("--workers must be at least 1, got %d", c.Workers)
	}
	if c.Procs <= 0 {
		c.Procs = 1
	}
	if c.Procs > c.Workers {
		return c, usagef("--procs %d is more than --workers %d: every process needs a worker", c.Procs, c.Workers)
	}
	if c.Rounds < 0 {
		return c, usagef("--rounds must not be negative, got %d", c.Rounds)
	}
	if c.Duration < 0 {
		return c, usagef("--duration must not be negative, got %s", c.Duration)
	}
	if c.Rounds > 0 && c.Duration > 0 {
		return c, usagef("give --rounds or --duration, not both")
	}
	if c.Rounds == 0 && c.Duration == 0 {
		c.Rounds = defaultRounds(c.Workload)
	}
	if _, err := isolationLevel(c.Isolation); err != nil {
		return c, err
	}
	if c.Seed == 0 {
		c.Seed = time.Now().UnixNano()
	}
	return c, nil
}

// isolationLevel maps the flag's names to database/sql's levels.
func isolationLevel(s string) (sql.IsolationLevel, error) {
	switch strings.ToLower(s) {
	case "":
		return sql.LevelDefault, nil
	case "rc", "read-committed", "read committed":
		return sql.LevelReadCommitted, nil
	case "rr", "repeatable-read", "repeatable read":
		return sql.LevelRepeatableRead, nil
	case "serializable", "s":
		return sql.LevelSerializable, nil
	}
	return 0, usagef("unknown isolation %q: want rc, rr or serializable", s)
}

// isolationName is the short name reports use.
func isolationName(l sql.IsolationLevel) string {
	switch l {
	case sql.LevelReadCommitted:
		return "rc"
	case sql.LevelRepeatableRead:
		return "rr"
	case sql.LevelSerializable:
		return "serializable"
	case sql.LevelReadUncommitted:
		return "ru"
	}
	return "default"
}
