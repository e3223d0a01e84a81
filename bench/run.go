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
	// Fresh is get-or-create of new keys into a table that was created and
	// analyzed empty, with the statements prepared while it was, growing
	// to Config.FreshRows rows: the generic-plan trap of issue 14.
	Fresh = "fresh"
)

// Workloads lists every workload.
var Workloads = []string{Existing, New, Zipf, Hot, Fresh}

// DefaultFreshRows is the number of rows the fresh workload grows each
// contender's table to.
const DefaultFreshRows = 100000

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
	// FreshRows is the number of rows the fresh workload's timed rounds
	// insert into each contender's table; zero means DefaultFreshRows.
	FreshRows int
	// FreshWorkers are the numbers of workers the fresh workload runs at
	// instead of Workers; nil means Workers. (Growing a table to 100,000
	// rows one call at a time takes about a minute per contender.)
	FreshWorkers []int
	// DSN is the database's DSN as given to OpenEnv, for contenders that
	// run an external program (pgbench).
	DSN string
	Log io.Writer // progress, one line per cell; nil for none
}

// Result is one cell.
type Result struct {
	Kind, Workload, Contender string
	Workers                   int
	Ops                       int64 // successful calls in the timed rounds
	Calls                     int64 // successful calls, warm-up included
	Elapsed                   time.Duration
	P50, P99                  time.Duration // of one call, over the timed rounds; 0 when unknown
	Errors                    int64         // errors returned to the caller
	ErrSample                 string        // the first error
	Created                   int64         // calls that said they created the row
	Dup                       int64         // duplicate rows: rows beyond one per key
	// Flag counts created-flag errors: calls that said they created a row
	// that existed before or that another call created, and rows that no
	// successful call said it created. FlagKnown is false for contenders
	// that cannot tell (the raw upsert, pgbench).
	Flag      int64
	FlagKnown bool
	Lost      int64 // update workloads: successful increments missing from the table
	LostKnown bool
	// Ratio is the median over rounds of ops/s over the floor's in the
	// same round (floor-pgx for the pgx contenders); 0 when there is no
	// floor. RatioPrepared is the same over floor-prepared's (SQLite and
	// MariaDB).
	Ratio, RatioPrepared float64
	// Vs holds the same median of per-round ratios to every other
	// contender of the group, by name.
	Vs map[string]float64
	// LatVs holds, by contender name, the medians over rounds of this
	// cell's per-round p50 and p99 over the other's in the same round.
	LatVs map[string][2]float64
	// Server holds the server's counters over the cell, by name (see
	// serverStats); nil when none were read.
	Server map[string]int64
	// Client holds the contender's own counts (see Ops.Counters), warm-up
	// included; nil when it keeps none.
	Client map[string]int64
	// Missing, when set, says why the contender did not run (pgbench not
	// installed).
	Missing string
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
	e := &Env{Kind: p.Kind, DataSource: p.DataSource, DB: db}
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
		workers := cfg.Workers
		if w == Fresh && cfg.FreshWorkers != nil {
			workers = cfg.FreshWorkers
		}
		for _, n := range workers {
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
				if selected(c, e.Kind, w, cfg.Contenders) {
					cs = append(cs, c)
				}
			}
			group, err := runGroup(ctx, e, cs, w, n, cfg, existing)
			if err != nil {
				return out, fmt.Errorf("%s %s %d workers: %w", e.Kind, w, n, err)
			}
			for _, r := range group {
				if cfg.Log != nil {
					fmt.Fprintf(cfg.Log, "%-8s %-8s %2d %-22s %9.0f ops/s ×%.2f p50 %6.2fms p99 %7.2fms created %d dup %d flag %s lost %s err %d %s %s\n",
						r.Kind, r.Workload, r.Workers, r.Contender, r.OpsPerSec(), r.Ratio, ms(r.P50), ms(r.P99), r.Created,
						r.Dup, count(r.Flag, r.FlagKnown), count(r.Lost, r.LostKnown), r.Errors, serverLine(r), r.ErrSample)
				}
			}
			out = append(out, group...)
		}
	}
	return out, nil
}

func selected(c Contender, kind, workload string, names []string) bool {
	if c.Kinds != nil && !slices.Contains(c.Kinds, kind) {
		return false
	}
	if c.Workloads != nil && !slices.Contains(c.Workloads, workload) {
		return false
	}
	return len(names) == 0 || slices.Contains(names, c.Name)
}

// setRatios sets each cell's ratios to the others of its group: the median
// over rounds of the two throughputs (and latencies) measured in the same
// round, which cancels most of the noise of a shared machine. Ratio is to
// the floor (floor-pgx for the pgx contenders).
func setRatios(cells []*cell) {
	byName := map[string]*cell{}
	for _, c := range cells {
		byName[c.res.Contender] = c
	}
	for _, c := range cells {
		c.res.Vs = map[string]float64{}
		c.res.LatVs = map[string][2]float64{}
		for _, o := range cells {
			if o == c {
				continue
			}
			if r := medianRatio(c.rate, o.rate); r > 0 {
				c.res.Vs[o.res.Contender] = r
			}
			p50, p99 := medianRatio(c.p50, o.p50), medianRatio(c.p99, o.p99)
			if p50 > 0 && p99 > 0 {
				c.res.LatVs[o.res.Contender] = [2]float64{p50, p99}
			}
		}
		floor := "floor"
		if strings.HasSuffix(c.res.Contender, "-pgx") {
			floor = "floor-pgx"
		}
		if byName[floor] != nil {
			c.res.Ratio = medianRatio(c.rate, byName[floor].rate)
		}
		if f := byName["floor-prepared"]; f != nil && !strings.HasSuffix(c.res.Contender, "-pgx") {
			c.res.RatioPrepared = medianRatio(c.rate, f.rate)
		}
	}
}

// medianRatio is the median over rounds of xs[i]/ys[i], or 0 when the
// rounds do not match or none has both.
func medianRatio(xs, ys []float64) float64 {
	if len(xs) != len(ys) {
		return 0
	}
	var rs []float64
	for i := range xs {
		if xs[i] > 0 && ys[i] > 0 {
			rs = append(rs, xs[i]/ys[i])
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
	ext    SliceFunc // instead of op, for a contender that runs a program
	table  string
	seq    atomic.Int64 // the last new key handed out
	lat    []time.Duration
	claims map[string]int
	known  bool
	okAll  int64     // successful calls, warm-up included, for the lost-update check
	rate   []float64 // ops/s of each timed round
	p50    []float64 // latency percentiles of each timed round, in seconds
	p99    []float64
	close  func()
	counts func() map[string]int64
}

// runGroup runs every contender on one workload and number of workers. The
// duration is cut into rounds, and each round runs the contenders in turn
// (in a rotated order), so that a noisy neighbour or a checkpoint slows
// them all alike instead of the one that happened to run then. Each
// contender first runs a short untimed warm-up that fills its prepared
// statement caches. The fresh workload's rounds end by count instead:
// each round inserts a share of Config.FreshRows into every contender's
// table, so that the contenders' tables grow alike.
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
	// A group of one contender can be charged the database's commits.
	var xact0 int64 = -1
	if e.Kind == "postgres" && len(cs) == 1 && workload != Existing {
		xact0 = dbCommits(ctx, e.DB)
	}
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
		if workload == Fresh {
			if err := analyzeEmpty(ctx, e, cl.table); err != nil {
				return nil, err
			}
		}
		ops, err := c.Open(ctx, e, cl.table)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.Name, err)
		}
		cl.close = ops.Close
		cl.ext = ops.Slice
		cl.counts = ops.Counters
		if ops.Missing != "" {
			cl.res.Missing = ops.Missing
			continue
		}
		switch workload {
		case Existing:
			cl.op = ops.Existing
		case New, Fresh:
			cl.op = ops.New
		default:
			cl.op = ops.Update
		}
		if cl.op == nil && cl.ext == nil {
			return nil, fmt.Errorf("%s has no call for the %s workload", c.Name, workload)
		}
	}
	rounds := max(cfg.Rounds, 1)
	slice := cfg.Duration / time.Duration(rounds)
	freshRows := int64(cfg.FreshRows)
	if freshRows <= 0 {
		freshRows = DefaultFreshRows
	}
	// The fresh workload's warm-up is a few calls per worker: enough for
	// every connection to run each statement past PostgreSQL's five
	// custom plans while the table is still nearly empty.
	const freshWarm = 16
	for _, c := range cells {
		if c.ext != nil {
			continue // an external program prepares its own statements
		}
		if workload == Fresh {
			runSlice(ctx, c, workload, n, time.Minute, int64(freshWarm*n), false)
		} else {
			runSlice(ctx, c, workload, n, min(slice/4, 200*time.Millisecond), 0, false)
		}
	}
	stats := serverStats(e)
	if workload == Existing {
		stats = nil // the contenders share one table, filled beforehand
	}
	for r := range rounds {
		for i := range cells {
			c := cells[(i+r)%len(cells)]
			before, _ := stats.read(ctx, c.table)
			if workload == Fresh {
				until := int64(freshWarm*n) + freshRows*int64(r+1)/int64(rounds)
				runSlice(ctx, c, workload, n, 5*time.Minute, until, true)
			} else {
				runSlice(ctx, c, workload, n, slice, 0, true)
			}
			if after, err := stats.read(ctx, c.table); err == nil && before != nil && !stats.atEnd {
				c.res.Server = addDelta(c.res.Server, before, after)
			}
		}
	}
	if stats != nil && stats.atEnd {
		stats.flush(ctx, e)
		for _, c := range cells {
			if s, err := stats.read(ctx, c.table); err == nil {
				c.res.Server = s
				if xact0 >= 0 {
					s["xact_commit"] = dbCommits(ctx, e.DB) - xact0
				}
			}
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
		if c.counts != nil {
			c.res.Client = c.counts()
		}
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

// analyzeEmpty makes a fresh table's statistics say it is empty, as a
// migration that creates a table (or a test setup that truncates one)
// leaves it. On PostgreSQL autovacuum is turned off for the table, so that
// an autoanalyze, which comes at a time of the launcher's choosing, does
// not end the trap in the middle of a run: the run measures the worst
// case, a table that grows faster than autoanalyze notices.
func analyzeEmpty(ctx context.Context, e *Env, table string) error {
	var qs []string
	switch e.Kind {
	case "postgres":
		qs = []string{"ALTER TABLE " + table + " SET (autovacuum_enabled = false)", "ANALYZE " + table}
	case "mysql":
		qs = []string{"ANALYZE TABLE " + table}
	default:
		qs = []string{"ANALYZE " + table}
	}
	for _, q := range qs {
		if _, err := e.DB.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return nil
}

// runSlice runs n workers on the cell for d, or, when until is positive,
// until the cell has handed out that many new keys (d is then a bound);
// timed slices count towards throughput and latency, every slice towards
// correctness.
func runSlice(ctx context.Context, c *cell, workload string, n int, d time.Duration, until int64, timed bool) {
	if c.res.Missing != "" {
		return
	}
	if c.ext != nil {
		runExternal(ctx, c, workload, n, d, timed)
		return
	}
	next := func(r *rand.Rand, z *rand.Zipf) (string, bool) {
		switch workload {
		case Existing:
			return existingKeys[r.IntN(NumKeys)], true
		case New:
			return "n" + strconv.FormatInt(c.seq.Add(1), 10), true
		case Fresh:
			i := c.seq.Add(1)
			return "f" + strconv.FormatInt(i, 10), until <= 0 || i <= until
		case Zipf:
			return zipfKeys[z.Uint64()], true
		}
		return "hot", true
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
				k, ok := next(r, z)
				if !ok {
					if workload == Fresh {
						c.seq.Add(-1) // not handed out after all
					}
					return
				}
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
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
	stop.Store(true)
	<-done
	elapsed := time.Since(start)
	var ops int64
	var lat []time.Duration
	for _, w := range ws {
		ops += w.ops
		if timed {
			lat = append(lat, w.lat...)
		}
	}
	if timed {
		c.res.Elapsed += elapsed
		c.rate = append(c.rate, float64(ops)/elapsed.Seconds())
		c.addRoundLatencies(lat)
	}
	for _, w := range ws {
		if timed {
			c.res.Ops += w.ops
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

// addRoundLatencies records one timed round's call latencies: its p50 and
// p99, for the per-round latency ratios, and the calls themselves for the
// cell's overall percentiles. lat is sorted in place.
func (c *cell) addRoundLatencies(lat []time.Duration) {
	if len(lat) == 0 {
		c.p50, c.p99 = append(c.p50, 0), append(c.p99, 0)
		return
	}
	slices.Sort(lat)
	c.p50 = append(c.p50, lat[len(lat)/2].Seconds())
	c.p99 = append(c.p99, lat[min(len(lat)-1, len(lat)*99/100)].Seconds())
	c.lat = append(c.lat, lat...)
}

// runExternal runs one slice of a contender that is a program of its own
// (pgbench): it reports its calls, errors and latencies, which count as a
// worker's would.
func runExternal(ctx context.Context, c *cell, workload string, n int, d time.Duration, timed bool) {
	s, err := c.ext(ctx, workload, n, d)
	if err != nil {
		c.res.Errors++
		if c.res.ErrSample == "" {
			c.res.ErrSample = err.Error()
		}
	}
	c.known = false
	c.okAll += s.Ops
	c.res.Errors += s.Errors
	if c.res.ErrSample == "" {
		c.res.ErrSample = s.ErrSample
	}
	if !timed {
		return
	}
	c.res.Ops += s.Ops
	c.res.Elapsed += s.Elapsed
	rate := 0.0
	if s.Elapsed > 0 {
		rate = float64(s.Ops) / s.Elapsed.Seconds()
	}
	c.rate = append(c.rate, rate)
	c.addRoundLatencies(s.Latencies)
}

// check reads the table after a cell: rows beyond one per key are
// duplicates; a creation claimed for a key that existed before, or claimed
// twice, or a row nobody claimed to create, is a created-flag error;
// increments the table does not hold are lost updates.
func check(ctx context.Context, e *Env, c *cell) error {
	res, table, claims := &c.res, c.table, c.claims
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
	res.FlagKnown = c.known
	if res.FlagKnown {
		present := map[string]bool{}
		if res.Workload != Existing {
			rs, err := e.DB.QueryContext(ctx, "SELECT DISTINCT name FROM "+table)
			if err != nil {
				return fmt.Errorf("checking %s: %w", table, err)
			}
			for rs.Next() {
				var k string
				if err := rs.Scan(&k); err != nil {
					rs.Close()
					return fmt.Errorf("checking %s: %w", table, err)
				}
				present[k] = true
			}
			rs.Close()
			if err := rs.Err(); err != nil {
				return fmt.Errorf("checking %s: %w", table, err)
			}
		}
		for k, v := range claims {
			if !present[k] || v > 1 {
				// Every claim for a key that existed before or is not in
				// the table is false; of several claims, all but one.
				res.Flag += int64(v)
				if present[k] {
					res.Flag--
				}
			}
		}
		for k := range present {
			if claims[k] == 0 {
				res.Flag++ // created, and no call said so
			}
		}
	}
	res.Calls = c.okAll
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
