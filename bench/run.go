// Package bench compares getorcreate with the alternatives on SQLite,
// PostgreSQL and MariaDB: the plain SQL floor, GORM's FirstOrCreate and
// OnConflict, and a port of Django's get_or_create/update_or_create. Each
// cell runs one contender, one workload and one number of workers for a
// bounded time, then checks the table for duplicates and lost updates, so
// that throughput and correctness are read side by side.
package bench

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gsqlite "github.com/glebarez/sqlite"
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/getorcreate/getorcreate/internal/dsn"
)

// Workloads, in report order.
const (
	Existing = "existing" // get-or-create of keys that all exist
	New      = "new"      // get-or-create of keys that are all new
	Zipf     = "zipf"     // update-or-create count+1 over 10,000 names, Zipf-skewed
	Hot      = "hot"      // update-or-create count+1 on one key
)

// Workloads lists every workload.
var Workloads = []string{Existing, New, Zipf, Hot}

// NumKeys is the number of names of the existing and zipf workloads.
const NumKeys = 10000

// ZipfS is the Zipf exponent of the zipf workload (rank 1 gets about 10%
// of the calls).
const ZipfS = 1.1

// Config selects what to run.
type Config struct {
	DSNs       map[string]string // kind -> DSN; kinds without one are skipped
	Kinds      []string          // databases in order
	Workloads  []string
	Contenders []string // names; empty means all
	Workers    []int
	Duration   time.Duration // per cell, not counting warm-up
	Rounds     int           // slices each cell's duration is cut into; contenders take turns
	Log        io.Writer     // progress, one line per cell; nil for none
}

// Result is one cell.
type Result struct {
	Kind, Workload, Contender string
	Workers                   int
	Ops                       int64 // successful calls
	Elapsed                   time.Duration
	P50, P99                  time.Duration
	Errors                    int64  // errors returned to the caller
	ErrSample                 string // the first error
	Created                   int64  // calls that said they created the row
	Dup                       int64  // extra creations: duplicate rows, or calls claiming to create a row that existed or that another call created
	DupKnown                  bool
	Lost                      int64 // update workloads: successful increments missing from the table
	LostKnown                 bool
	RatioPrepared             float64 // the same, over floor-prepared's (SQLite and MariaDB)
	Ratio                     float64 // ops/s over the floor's in the same run, database, workload and workers; 0 when there is no floor
}

// OpsPerSec is the throughput of successful calls.
func (r *Result) OpsPerSec() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Ops) / r.Elapsed.Seconds()
}

// OpenEnv opens the database behind a project DSN for the benchmark, with
// GORM on the same pool.
func OpenEnv(ctx context.Context, dsnStr string) (*Env, error) {
	db, p, err := dsn.Open(ctx, dsnStr)
	if err != nil {
		return nil, err
	}
	e := &Env{Kind: p.Kind, DB: db}
	var d gorm.Dialector
	switch p.Kind {
	case "postgres":
		d = postgres.New(postgres.Config{Conn: db})
	case "mysql":
		d = mysql.New(mysql.Config{Conn: db})
	default:
		d = &gsqlite.Dialector{Conn: db}
	}
	if e.Gorm, err = gorm.Open(d, &gorm.Config{Logger: logger.Discard}); err != nil {
		db.Close()
		return nil, fmt.Errorf("opening GORM on %s: %w", p.Kind, err)
	}
	if p.Kind == "mysql" {
		sep := "?"
		if strings.Contains(dsnStr, "?") {
			sep = "&"
		}
		// tx_isolation is MariaDB 10's name; MySQL 8 and MariaDB 11.1+
		// also accept transaction_isolation.
		rc, _, err := dsn.Open(ctx, dsnStr+sep+"tx_isolation=%27READ-COMMITTED%27")
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("opening a READ COMMITTED pool: %w", err)
		}
		e.ReadCommitted = rc
	}
	if p.Kind == "postgres" {
		if e.Pgx, err = openPgxPool(ctx, p.DataSource); err != nil {
			db.Close()
			return nil, err
		}
	}
	return e, nil
}

// Close closes the environment's pools.
func (e *Env) Close() error {
	if e.Pgx != nil {
		e.Pgx.Close()
	}
	if e.ReadCommitted != nil {
		e.ReadCommitted.Close()
	}
	return e.DB.Close()
}

var existingKeys, zipfKeys = names("k", NumKeys), names("z", NumKeys)

func names(prefix string, n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = prefix + strconv.Itoa(i)
	}
	return s
}

// Run runs every selected cell on one database and returns the results,
// with ratios to the floor filled in.
func Run(ctx context.Context, e *Env, cfg Config) ([]Result, error) {
	var out []Result
	var existing string
	if slices.Contains(cfg.Workloads, Existing) {
		t, err := createTable(ctx, e.DB, e.Kind)
		if err != nil {
			return nil, err
		}
		defer dropTable(e.DB, t)
		if err := fill(ctx, e.DB, t, existingKeys); err != nil {
			return nil, fmt.Errorf("filling %s: %w", t, err)
		}
		existing = t
	}
	for _, w := range cfg.Workloads {
		for _, n := range cfg.Workers {
			if err := warm(ctx, e.DB, n); err != nil {
				return out, err
			}
			if e.ReadCommitted != nil {
				if err := warm(ctx, e.ReadCommitted, n); err != nil {
					return out, err
				}
			}
			if e.Pgx != nil {
				if err := warmPgx(ctx, e.Pgx, n); err != nil {
					return out, err
				}
			}
			var cs []Contender
			for _, c := range Contenders() {
				if selected(c, e.Kind, cfg.Contenders) {
					cs = append(cs, c)
				}
			}
			group, err := runGroup(ctx, e, cs, w, n, cfg, existing)
			if err != nil {
				return out, fmt.Errorf("%s %s %d workers: %w", e.Kind, w, n, err)
			}
			for _, r := range group {
				if cfg.Log != nil {
					fmt.Fprintf(cfg.Log, "%-8s %-8s %2d %-20s %9.0f ops/s ×%.2f p99 %7.2fms created %d dup %s lost %s err %d %s\n",
						r.Kind, r.Workload, r.Workers, r.Contender, r.OpsPerSec(), r.Ratio, ms(r.P99), r.Created,
						count(r.Dup, r.DupKnown), count(r.Lost, r.LostKnown), r.Errors, r.ErrSample)
				}
			}
			out = append(out, group...)
		}
	}
	return out, nil
}

func selected(c Contender, kind string, names []string) bool {
	if c.Kinds != nil && !slices.Contains(c.Kinds, kind) {
		return false
	}
	return len(names) == 0 || slices.Contains(names, c.Name)
}

// setRatios sets each cell's ratio to its floor (floor-pgx for the pgx
// contenders): the median over rounds of the two throughputs measured in
// the same round, which cancels most of the noise of a shared machine.
func setRatios(cells []*cell) {
	byName := map[string]*cell{}
	for _, c := range cells {
		byName[c.res.Contender] = c
	}
	for _, c := range cells {
		floor := "floor"
		if strings.HasSuffix(c.res.Contender, "-pgx") {
			floor = "floor-pgx"
		}
		c.res.Ratio = medianRatio(c, byName[floor])
		if !strings.HasSuffix(c.res.Contender, "-pgx") {
			c.res.RatioPrepared = medianRatio(c, byName["floor-prepared"])
		}
	}
}

// medianRatio is the median over rounds of c's ops/s over f's in the same
// round, or 0 without f.
func medianRatio(c, f *cell) float64 {
	if f == nil || len(f.rate) != len(c.rate) {
		return 0
	}
	var rs []float64
	for i := range c.rate {
		if f.rate[i] > 0 {
			rs = append(rs, c.rate[i]/f.rate[i])
		}
	}
	return median(rs)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	if len(xs)%2 == 1 {
		return xs[len(xs)/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}

// warm opens n connections (as many as the pool allows) so that no cell
// pays for connecting.
func warm(ctx context.Context, db *sql.DB, n int) error {
	var wg sync.WaitGroup
	conns := make([]*sql.Conn, n)
	errs := make([]error, n)
	wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	for i := range n {
		wg.Go(func() {
			c, err := db.Conn(wctx)
			if err != nil {
				return // SQLite's pool is smaller than n: fine
			}
			conns[i] = c
			errs[i] = c.PingContext(ctx)
		})
	}
	wg.Wait()
	for i, c := range conns {
		if c != nil {
			c.Close()
		}
		if errs[i] != nil {
			return errs[i]
		}
	}
	return nil
}

type worker struct {
	lat     []time.Duration
	ops     int64
	errs    int64
	errMsg  string
	created map[string]int
	known   bool
}

// cell is one contender's table and tallies within a group of cells that
// share a database, workload and number of workers.
type cell struct {
	res    Result
	op     OpFunc
	table  string
	seq    atomic.Int64 // the next new key
	lat    []time.Duration
	claims map[string]int
	known  bool
	okAll  int64     // successful calls, warm-up included, for the lost-update check
	rate   []float64 // ops/s of each timed round
	close  func()
}

// runGroup runs every contender on one workload and number of workers. The
// duration is cut into rounds, and each round runs the contenders in turn
// (in a rotated order), so that a noisy neighbour or a checkpoint slows
// them all alike instead of the one that happened to run then. Each
// contender first runs a short untimed warm-up that fills its prepared
// statement caches.
func runGroup(ctx context.Context, e *Env, cs []Contender, workload string, n int, cfg Config, existing string) ([]Result, error) {
	var cells []*cell
	defer func() {
		for _, c := range cells {
			if c.close != nil {
				c.close()
			}
			if c.table != existing {
				dropTable(e.DB, c.table)
			}
		}
	}()
	for _, c := range cs {
		cl := &cell{res: Result{Kind: e.Kind, Workload: workload, Contender: c.Name, Workers: n}, claims: map[string]int{}, known: true, table: existing}
		if workload != Existing {
			t, err := createTable(ctx, e.DB, e.Kind)
			if err != nil {
				return nil, err
			}
			cl.table = t
		}
		cells = append(cells, cl)
		ops, err := c.Open(ctx, e, cl.table)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.Name, err)
		}
		cl.close = ops.Close
		switch workload {
		case Existing:
			cl.op = ops.Existing
		case New:
			cl.op = ops.New
		default:
			cl.op = ops.Update
		}
	}
	rounds := max(cfg.Rounds, 1)
	slice := cfg.Duration / time.Duration(rounds)
	for _, c := range cells {
		runSlice(ctx, c, workload, n, min(slice/4, 200*time.Millisecond), false)
	}
	for r := range rounds {
		for i := range cells {
			runSlice(ctx, cells[(i+r)%len(cells)], workload, n, slice, true)
		}
	}
	var out []Result
	for _, c := range cells {
		slices.Sort(c.lat)
		if len(c.lat) > 0 {
			c.res.P50 = c.lat[len(c.lat)/2]
			c.res.P99 = c.lat[min(len(c.lat)-1, len(c.lat)*99/100)]
		}
		c.lat = nil
		if err := check(ctx, e, c); err != nil {
			return nil, err
		}
	}
	setRatios(cells)
	for _, c := range cells {
		out = append(out, c.res)
	}
	return out, nil
}

// runSlice runs n workers on the cell for d; timed slices count towards
// throughput and latency, every slice towards correctness.
func runSlice(ctx context.Context, c *cell, workload string, n int, d time.Duration, timed bool) {
	next := func(r *rand.Rand, z *rand.Zipf) string {
		switch workload {
		case Existing:
			return existingKeys[r.IntN(NumKeys)]
		case New:
			return "n" + strconv.FormatInt(c.seq.Add(1), 10)
		case Zipf:
			return zipfKeys[z.Uint64()]
		}
		return "hot"
	}
	cctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	ws := make([]*worker, n)
	var stop atomic.Bool
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		w := &worker{lat: make([]time.Duration, 0, 1024), created: map[string]int{}, known: true}
		ws[i] = w
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(i)+1, uint64(time.Now().UnixNano())))
			z := rand.NewZipf(r, ZipfS, 1, NumKeys-1)
			for !stop.Load() {
				k := next(r, z)
				t0 := time.Now()
				out, err := c.op(cctx, k)
				w.lat = append(w.lat, time.Since(t0))
				if err != nil {
					if w.errs == 0 {
						w.errMsg = err.Error()
					}
					w.errs++
					continue
				}
				w.ops++
				if out.Created {
					w.created[k]++
				}
				if !out.Known {
					w.known = false
				}
			}
		})
	}
	time.Sleep(d)
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(start)
	var ops int64
	for _, w := range ws {
		ops += w.ops
	}
	if timed {
		c.res.Elapsed += elapsed
		c.rate = append(c.rate, float64(ops)/elapsed.Seconds())
	}
	for _, w := range ws {
		if timed {
			c.res.Ops += w.ops
			c.lat = append(c.lat, w.lat...)
		}
		c.okAll += w.ops
		c.res.Errors += w.errs
		if c.res.ErrSample == "" {
			c.res.ErrSample = w.errMsg
		}
		c.known = c.known && w.known
		for k, v := range w.created {
			c.claims[k] += v
		}
	}
}

// check reads the table after a cell: rows beyond one per key are
// duplicates; so are creations claimed for a key that existed before, or
// claimed twice; increments the table does not hold are lost updates.
func check(ctx context.Context, e *Env, c *cell) error {
	res, table, claims := &c.res, c.table, c.claims
	res.DupKnown = c.known
	var rows, keys, sum int64
	err := e.DB.QueryRowContext(ctx, "SELECT COUNT(*), COUNT(DISTINCT name), COALESCE(SUM(count), 0) FROM "+table).Scan(&rows, &keys, &sum)
	if err != nil {
		return fmt.Errorf("checking %s: %w", table, err)
	}
	res.Dup = rows - keys
	if res.Workload == Existing {
		res.Dup += rows - NumKeys
	}
	for _, v := range claims {
		res.Created += int64(v)
	}
	if res.DupKnown {
		for _, v := range claims {
			if res.Workload == Existing {
				res.Dup += int64(v)
			} else if v > 1 {
				res.Dup += int64(v - 1)
			}
		}
	}
	// Rows present count as known duplicates even without created flags.
	res.DupKnown = res.DupKnown || res.Dup > 0
	if res.Workload == Zipf || res.Workload == Hot {
		res.Lost = c.okAll - sum
		res.LostKnown = true
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func count(n int64, known bool) string {
	if !known {
		return "–"
	}
	return strconv.FormatInt(n, 10)
}
