package racecheck

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/getorcreate/getorcreate"
	"github.com/getorcreate/getorcreate/dialect"
	"github.com/getorcreate/getorcreate/dialect/mysql"
)

// stats is what the workers of one process saw.
type stats struct {
	Attempted int64
	OK        int64
	Retries   int64
	Errors    map[string]int64
	Samples   map[string]string // the first message of each error kind
	LatMS     []float64
	Created   map[string]int64 // key -> callers told created=true
}

func newStats() stats {
	return stats{Errors: map[string]int64{}, Samples: map[string]string{}, Created: map[string]int64{}}
}

func (s *stats) merge(o stats) {
	s.Attempted += o.Attempted
	s.OK += o.OK
	s.Retries += o.Retries
	for k, v := range o.Errors {
		s.Errors[k] += v
	}
	for k, v := range o.Samples {
		if _, ok := s.Samples[k]; !ok {
			s.Samples[k] = v
		}
	}
	s.LatMS = append(s.LatMS, o.LatMS...)
	for k, v := range o.Created {
		s.Created[k] += v
	}
}

// group runs rounds on a set of workers, here or in other processes.
type group interface {
	// round releases every worker at start onto round r and returns when
	// all have finished it.
	round(ctx context.Context, r int, start time.Time) error
	// finish collects the workers' stats.
	finish(ctx context.Context) (stats, error)
	close()
}

// strategyRun is what a process needs to know to run its workers.
type strategyRun struct {
	DSN       string
	Strategy  string
	Workload  string
	Table     string
	Pin       string
	Workers   []int // global worker numbers
	Isolation string
	InTx      bool
	Seed      int64
	// MySQLPaths: see Config.mysqlPaths.
	MySQLPaths bool `json:",omitempty"`
}

// local runs workers as goroutines of this process.
type local struct {
	e  *env
	sr strategyRun
	st []stats
}

// openEnv prepares db for sr's workers: a pool with a warm connection per
// worker, so that the first round does not measure connection setup, and
// the getorcreate table handle.
func openEnv(ctx context.Context, db *sql.DB, kind string, sr strategyRun) (*env, error) {
	d, ok := dialect.ForDriver(db.Driver())
	if !ok {
		return nil, fmt.Errorf("no getorcreate dialect for driver %T", db.Driver())
	}
	iso, err := isolationLevel(sr.Isolation)
	if err != nil {
		return nil, err
	}
	n := len(sr.Workers) + 2
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	conns := make([]*sql.Conn, 0, len(sr.Workers))
	for range sr.Workers {
		c, err := db.Conn(ctx)
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return nil, fmt.Errorf("opening %d connections: %w", len(sr.Workers), err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Close()
	}
	e := &env{db: db, kind: kind, d: d, iso: iso, inTx: sr.InTx, q: newStatements(d, kind, sr.Table, sr.Pin)}
	if sr.Strategy == GetOrCreate {
		cfg := getorcreate.Config{Table: sr.Table, Key: []string{"name"}, Retry: retryPolicy}
		if sr.MySQLPaths {
			cfg.Dialect = mysql.NoReturning
		}
		if e.tbl, err = getorcreate.OpenConfig[row](ctx, db, cfg); err != nil {
			return nil, err
		}
	}
	return e, nil
}

func newLocal(e *env, sr strategyRun) *local {
	l := &local{e: e, sr: sr, st: make([]stats, len(sr.Workers))}
	for i := range l.st {
		l.st[i] = newStats()
	}
	return l
}

func (l *local) round(ctx context.Context, r int, start time.Time) error {
	release := make(chan struct{})
	var wg sync.WaitGroup
	for i, w := range l.sr.Workers {
		keys, incr := ops(l.sr.Workload, l.sr.Seed, w, r)
		st := &l.st[i]
		wg.Go(func() {
			<-release
			for _, k := range keys {
				if ctx.Err() != nil {
					return
				}
				l.do(ctx, st, k, incr)
			}
		})
	}
	// Every goroutine is parked on release before it closes; the start
	// time lines up the processes (see remote.round).
	sleepUntil(ctx, start)
	close(release)
	wg.Wait()
	return ctx.Err()
}

func (l *local) do(ctx context.Context, st *stats, key string, incr bool) {
	t0 := time.Now()
	created, retries, err := l.e.op(ctx, l.sr.Strategy, key, incr)
	if ctx.Err() != nil {
		return // interrupted: neither a success nor the database's error
	}
	st.LatMS = append(st.LatMS, float64(time.Since(t0))/float64(time.Millisecond))
	st.Attempted++
	st.Retries += int64(retries)
	if err != nil {
		k := errorKind(err)
		st.Errors[k]++
		if _, ok := st.Samples[k]; !ok {
			st.Samples[k] = oneLine(err.Error())
		}
		return
	}
	st.OK++
	if created {
		st.Created[key]++
	}
}

func (l *local) finish(context.Context) (stats, error) {
	all := newStats()
	for _, s := range l.st {
		all.merge(s)
	}
	return all, nil
}

func (l *local) close() {}

func sleepUntil(ctx context.Context, t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-timer.C:
	}
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
