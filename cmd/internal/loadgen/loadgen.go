// Package loadgen measures what tagd's HTTP layer costs: it runs the
// store's Submit (the library calls POST /api/tags makes: one transaction of
// an UpdateOrCreate on the tag and one on its minute) from N concurrent callers, then POST /api/tags from N concurrent
// HTTP clients against a tagd started in this process (or at Config.URL), on
// the same database, in alternating rounds. Each phase gets fresh tables,
// dropped at the end unless Config.Keep, and its counts are checked against
// the acknowledged submissions. cmd/tagload parses flags into a [Config],
// calls [Run] and prints the [Result].
package loadgen

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/getorcreate/getorcreate/cmd/internal/tagd"
	"github.com/getorcreate/getorcreate/internal/dsn"
)

// Config is one load run. DSN, Clients, Duration, Keys and Rounds are
// required; the rest may be left zero.
type Config struct {
	// DSN is the database: sqlite:PATH, postgres://..., mysql://...
	DSN string
	// Clients is the number of concurrent callers in each phase.
	Clients int
	// Duration is the length of each phase in each round.
	Duration time.Duration
	// Keys is the number of distinct tags the submissions pick from,
	// uniformly.
	Keys int
	// Rounds is the number of rounds of both phases, alternating.
	Rounds int
	// URL, when set, is a tagd to load instead of one started here; it must
	// use DSN's database. Its counts are not checked (its tables are unknown
	// here), unless TablePrefix names them.
	URL string
	// TablePrefix, with URL, is the table prefix of the tagd at URL (its
	// --table-prefix): its counts are then checked, as the rise of the sum
	// of its tags' counts over the run against the submissions
	// acknowledged, so nothing else may submit to it meanwhile.
	TablePrefix string
	// HTTPOnly skips the library phase: only POST /api/tags is measured,
	// and Result.Ratios stays empty.
	HTTPOnly bool
	// Keep keeps the tables instead of dropping them at the end.
	Keep bool
	// LibTimeout, when positive, gives each library call a context with this
	// timeout, as tagd gives its calls; zero uses Run's context as is.
	LibTimeout time.Duration
	// CPUProfile, when set, is a file to write a CPU profile of the first
	// round's HTTP phase to. A file that cannot be created is skipped.
	CPUProfile string
	// Logger is the in-process tagd's logger; nil discards its output.
	Logger *slog.Logger
	// Errors receives, for each client of a phase, its first failure as
	// "PHASE: ERROR"; nil discards them.
	Errors io.Writer
}

// Phase is one phase's results, pooled over the rounds.
type Phase struct {
	Name    string
	OK      int           // acknowledged submissions
	Failed  int           // failed submissions
	Elapsed time.Duration // wall-clock time
	CPU     time.Duration // this process's user+system CPU time
	// Latencies are those of the acknowledged submissions, sorted.
	Latencies []time.Duration

	// Checked reports whether the stored counts were read back: false for
	// an HTTP phase against Config.URL.
	Checked bool
	// Stored is the sum of the phase's tags' counts, when Checked and
	// CheckErr is nil; it should equal OK.
	Stored int64
	// CheckErr is the error reading the counts back, if any.
	CheckErr error
}

// Rate is the acknowledged submissions per second of wall-clock time.
func (p Phase) Rate() float64 { return float64(p.OK) / p.Elapsed.Seconds() }

// Percentile returns the q-quantile (0 ≤ q ≤ 1) of the latencies, or 0 when
// there are none.
func (p Phase) Percentile(q float64) time.Duration {
	if len(p.Latencies) == 0 {
		return 0
	}
	return p.Latencies[min(len(p.Latencies)-1, int(q*float64(len(p.Latencies))))]
}

// CPUPerSubmission is the CPU time per acknowledged submission. Unlike the
// rate it does not move with other work on a shared machine; it leaves out
// the database server's CPU, so it compares phases, not databases.
func (p Phase) CPUPerSubmission() time.Duration {
	return p.CPU / time.Duration(max(1, p.OK))
}

// Check describes the count check in a few words: "counts ==
// acknowledged", a mismatch, a failed check or "not checked".
func (p Phase) Check() string {
	switch {
	case !p.Checked:
		return "not checked"
	case p.CheckErr != nil:
		return "check failed: " + p.CheckErr.Error()
	case p.Stored != int64(p.OK):
		return fmt.Sprintf("MISMATCH: counts sum to %d, %d acknowledged", p.Stored, p.OK)
	}
	return "counts == acknowledged"
}

// Result is a run's outcome.
type Result struct {
	Kind    string // database kind: "sqlite", "postgres" or "mysql"
	Library Phase  // the store's Submit, on the library
	HTTP    Phase  // tagd's POST /api/tags
	// Ratios are the rounds' HTTP/library rate ratios, sorted.
	Ratios []float64
	// ServeErr is the in-process tagd's error at shutdown, if any; the
	// results stand regardless.
	ServeErr error
}

// Ratio is the median of the rounds' ratios: on a shared machine, load from
// others hits both phases alike. It is 0 without a library phase.
func (r Result) Ratio() float64 {
	if len(r.Ratios) == 0 {
		return 0
	}
	return r.Ratios[len(r.Ratios)/2]
}

// Run opens the database, runs Config.Rounds rounds of the library phase
// then the HTTP phase, checks the counts, drops the tables (unless
// Config.Keep) and returns the results. Tables are named
// tagload_HEX_lib_* and tagload_HEX_http_*, HEX random per run.
func Run(ctx context.Context, cfg Config) (res Result, err error) {
	switch {
	case cfg.DSN == "":
		return res, errors.New("no database DSN")
	case cfg.Clients < 1, cfg.Keys < 1, cfg.Rounds < 1:
		return res, fmt.Errorf("clients (%d), keys (%d) and rounds (%d) must be at least 1", cfg.Clients, cfg.Keys, cfg.Rounds)
	case cfg.Duration <= 0:
		return res, fmt.Errorf("duration %v: must be positive", cfg.Duration)
	case cfg.TablePrefix != "" && cfg.URL == "":
		return res, errors.New("a table prefix names the tables of the tagd at URL: give URL too")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Errors == nil {
		cfg.Errors = io.Discard
	}
	db, parsed, err := dsn.Open(ctx, cfg.DSN)
	if err != nil {
		return res, err
	}
	defer db.Close()
	res.Kind = parsed.Kind
	b := make([]byte, 3)
	crand.Read(b)
	run := "tagload_" + hex.EncodeToString(b)
	var tables []string // to drop at the end
	defer func() {
		if cfg.Keep {
			return
		}
		for _, t := range tables {
			db.Exec("DROP TABLE IF EXISTS " + t)
		}
	}()
	name := func(rng *rand.Rand) string { return fmt.Sprintf("tag-%d", rng.IntN(cfg.Keys)) }

	// The library phase works straight on tables of its own.
	var lib *tagd.Store
	if !cfg.HTTPOnly {
		if lib, err = tagd.OpenStore(ctx, db, parsed.Kind, run+"_lib_"); err != nil {
			return res, err
		}
		tables = append(tables, lib.Tables()...)
	}
	// The tagd at URL: its counts before the run, to check the rise.
	var urlBase int64
	sumOf := func(tbl string) (n int64, err error) {
		err = db.QueryRowContext(ctx, "SELECT COALESCE(SUM(count), 0) FROM "+tbl).Scan(&n)
		return n, err
	}
	if cfg.TablePrefix != "" {
		if urlBase, err = sumOf(cfg.TablePrefix + "tags"); err != nil {
			return res, fmt.Errorf("reading the counts of the tagd at %s: %w", cfg.URL, err)
		}
	}
	// The HTTP phase loads a tagd with tables of its own too.
	base := cfg.URL
	pfx := run + "_http_"
	var stop context.CancelFunc
	var served chan error
	if base == "" {
		tables = append(tables, tagd.TableNames(pfx)...)
		var sctx context.Context
		sctx, stop = context.WithCancel(ctx)
		defer stop()
		ready := make(chan string, 1)
		served = make(chan error, 1)
		go func() {
			served <- tagd.Run(sctx, tagd.Config{
				DSN: cfg.DSN, Addr: "127.0.0.1:0", TablePrefix: pfx,
				Ready:   func(a net.Addr) { ready <- a.String() },
				Options: tagd.Options{Logger: cfg.Logger},
			})
		}()
		select {
		case a := <-ready:
			base = "http://" + a
		case err := <-served:
			return res, fmt.Errorf("tagd: %w", err)
		}
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Clients, MaxConnsPerHost: cfg.Clients}}
	defer hc.CloseIdleConnections()
	libPhase := func() Phase {
		return drive(ctx, "library Submit", cfg.Clients, cfg.Duration, cfg.Errors, func(ctx context.Context, rng *rand.Rand) error {
			n := name(rng)
			if cfg.LibTimeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, cfg.LibTimeout)
				defer cancel()
			}
			_, _, err := lib.Submit(ctx, n)
			return err
		})
	}
	httpPhase := func() Phase {
		return drive(ctx, "tagd POST /api/tags", cfg.Clients, cfg.Duration, cfg.Errors, func(ctx context.Context, rng *rand.Rand) error {
			body := []byte(`{"name":"` + name(rng) + `"}`)
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/tags", bytes.NewReader(body))
			if err != nil {
				return err
			}
			req.Header.Set("Content-Type", "application/json")
			res, err := hc.Do(req)
			if err != nil {
				return err
			}
			defer res.Body.Close()
			io.Copy(io.Discard, res.Body)
			if res.StatusCode/100 != 2 {
				return fmt.Errorf("status %d", res.StatusCode)
			}
			return nil
		})
	}

	// Rounds alternate the phases, and the ratio is the median of the
	// rounds' ratios: on a shared machine, load from others then hits both
	// phases alike.
	for r := range cfg.Rounds {
		var l Phase
		if !cfg.HTTPOnly {
			l = libPhase()
		}
		if r == 0 && cfg.CPUProfile != "" {
			if f, err := os.Create(cfg.CPUProfile); err == nil {
				pprof.StartCPUProfile(f)
				defer f.Close()
			}
		}
		h := httpPhase()
		if r == 0 {
			pprof.StopCPUProfile()
		}
		if !cfg.HTTPOnly {
			res.Ratios = append(res.Ratios, h.Rate()/l.Rate())
		}
		res.Library, res.HTTP = merge(res.Library, l), merge(res.HTTP, h)
	}
	slices.Sort(res.Ratios)
	if stop != nil {
		stop()
		res.ServeErr = <-served
	}

	check := func(p *Phase, tbl string, base int64) {
		p.Checked = true
		p.Stored, p.CheckErr = sumOf(tbl)
		p.Stored -= base
	}
	if !cfg.HTTPOnly {
		check(&res.Library, run+"_lib_tags", 0)
	}
	switch {
	case cfg.URL == "":
		check(&res.HTTP, pfx+"tags", 0)
	case cfg.TablePrefix != "":
		check(&res.HTTP, cfg.TablePrefix+"tags", urlBase)
	}
	return res, nil
}

// cpuTime is the CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// drive runs op from clients goroutines for d (or until ctx is done) and
// collects latencies. Each client's first failure goes to errs.
func drive(ctx context.Context, name string, clients int, d time.Duration, errs io.Writer, op func(ctx context.Context, rng *rand.Rand) error) Phase {
	var mu sync.Mutex
	res := Phase{Name: name}
	var wg sync.WaitGroup
	start, cpu0 := time.Now(), cpuTime()
	deadline := start.Add(d)
	for c := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), uint64(start.UnixNano())))
			var lat []time.Duration
			failed := 0
			for time.Now().Before(deadline) && ctx.Err() == nil {
				t0 := time.Now()
				if err := op(ctx, rng); err != nil {
					failed++
					if failed == 1 {
						mu.Lock()
						fmt.Fprintf(errs, "%s: %v\n", name, err)
						mu.Unlock()
					}
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			res.Latencies = append(res.Latencies, lat...)
			res.Failed += failed
			mu.Unlock()
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.CPU = cpuTime() - cpu0
	res.OK = len(res.Latencies)
	slices.Sort(res.Latencies)
	return res
}

// merge pools two runs of a phase.
func merge(a, b Phase) Phase {
	a.Name = b.Name
	a.OK += b.OK
	a.Failed += b.Failed
	a.Elapsed += b.Elapsed
	a.CPU += b.CPU
	a.Latencies = append(a.Latencies, b.Latencies...)
	slices.Sort(a.Latencies)
	return a
}
