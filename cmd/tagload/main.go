// Command tagload measures what tagd's HTTP layer costs: it runs the
// library's own UpdateOrCreate at N concurrent callers, then POST /api/tags
// at N concurrent HTTP clients against a tagd started in this process (or
// at --url), on the same database, and prints submissions/s, p50 and p99 of
// both and their ratio. Each phase gets fresh tables, dropped at the end,
// and its counts are checked against the acknowledged submissions.
//
//	go run ./cmd/tagload --db 'postgres://postgres@127.0.0.1:5432/test?sslmode=disable' --clients 64 --duration 10s
package main

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/getorcreate/getorcreate"
	"github.com/getorcreate/getorcreate/dsn"
	"github.com/getorcreate/getorcreate/tagd"
)

type result struct {
	name    string
	ok      int
	failed  int
	elapsed time.Duration
	cpu     time.Duration // this process's user+system CPU time
	lat     []time.Duration
}

// cpuTime is the CPU time this process has used. Unlike wall-clock rates
// it does not move with other work on a shared machine; it leaves out the
// database server's CPU, so it compares phases, not databases.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (r result) rate() float64 { return float64(r.ok) / r.elapsed.Seconds() }

func (r result) pct(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	return r.lat[min(len(r.lat)-1, int(p*float64(len(r.lat))))]
}

// drive runs op from clients goroutines for d and collects latencies.
func drive(name string, clients int, d time.Duration, op func(ctx context.Context, rng *rand.Rand) error) result {
	var mu sync.Mutex
	res := result{name: name}
	var wg sync.WaitGroup
	start, cpu0 := time.Now(), cpuTime()
	deadline := start.Add(d)
	for c := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), uint64(start.UnixNano())))
			var lat []time.Duration
			failed := 0
			for time.Now().Before(deadline) {
				t0 := time.Now()
				if err := op(context.Background(), rng); err != nil {
					failed++
					if failed == 1 {
						fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
					}
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			res.lat = append(res.lat, lat...)
			res.failed += failed
			mu.Unlock()
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.cpu = cpuTime() - cpu0
	res.ok = len(res.lat)
	slices.Sort(res.lat)
	return res
}

func main() {
	var (
		dbDSN      = flag.String("db", "sqlite:tagload.db", "database DSN: sqlite:PATH, postgres://..., mysql://...")
		clients    = flag.Int("clients", 64, "concurrent callers in each phase")
		duration   = flag.Duration("duration", 5*time.Second, "length of each phase in each round")
		keys       = flag.Int("keys", 1000, "distinct tags the submissions pick from, uniformly")
		url        = flag.String("url", "", "tagd to load instead of one started here (it must use --db's database)")
		keep       = flag.Bool("keep", false, "keep the tables")
		libTimeout = flag.Duration("lib-timeout", 0, "give each library call a context with this timeout, as tagd gives its calls (0: context.Background)")
		rounds     = flag.Int("rounds", 3, "rounds of both phases, alternating")
		cpuprof    = flag.String("cpuprofile", "", "write a CPU profile of the HTTP phase to this file")
	)
	flag.Parse()
	ctx := context.Background()
	db, parsed, err := dsn.Open(ctx, *dbDSN)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tagload:", err)
		os.Exit(1)
	}
	defer db.Close()
	b := make([]byte, 3)
	crand.Read(b)
	run := "tagload_" + hex.EncodeToString(b)
	var tables []string // to drop at the end
	defer func() {
		if *keep {
			return
		}
		for _, t := range tables {
			db.Exec("DROP TABLE IF EXISTS " + t)
		}
	}()
	name := func(rng *rand.Rand) string { return fmt.Sprintf("tag-%d", rng.IntN(*keys)) }

	// The library phase works straight on tables of its own.
	lib, err := tagd.OpenStore(ctx, db, parsed.Kind, run+"_lib_")
	if err != nil {
		fmt.Fprintln(os.Stderr, "tagload:", err)
		os.Exit(1)
	}
	tables = append(tables, lib.Tables()...)
	table, err := getorcreate.Open[tagd.Tag](ctx, db, run+"_lib_tags", "tag_key")
	if err != nil {
		fmt.Fprintln(os.Stderr, "tagload:", err)
		os.Exit(1)
	}
	// The HTTP phase loads a tagd with tables of its own too.
	base := *url
	pfx := run + "_http_"
	if base == "" {
		tables = append(tables, pfx+"item_tags", pfx+"tags", pfx+"tagd_schema")
	}
	var stop context.CancelFunc
	var served chan error
	if base == "" {
		var sctx context.Context
		sctx, stop = context.WithCancel(ctx)
		ready := make(chan string, 1)
		served = make(chan error, 1)
		go func() {
			served <- tagd.Run(sctx, tagd.Config{
				DSN: *dbDSN, Addr: "127.0.0.1:0", TablePrefix: pfx,
				Ready:   func(a net.Addr) { ready <- a.String() },
				Options: tagd.Options{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))},
			})
		}()
		select {
		case a := <-ready:
			base = "http://" + a
		case err := <-served:
			fmt.Fprintln(os.Stderr, "tagload: tagd:", err)
			os.Exit(1)
		}
	} else {
		fmt.Fprintln(os.Stderr, "tagload: --url given: counts are not checked (the server's tables are unknown here)")
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: *clients, MaxConnsPerHost: *clients}}
	libPhase := func() result {
		return drive("library UpdateOrCreate", *clients, *duration, func(ctx context.Context, rng *rand.Rand) error {
			n := name(rng)
			if *libTimeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, *libTimeout)
				defer cancel()
			}
			now := time.Now().UTC()
			_, err := table.UpdateOrCreate(ctx, tagd.Tag{Key: n, Name: n, Count: 1, CreatedAt: now, UpdatedAt: now},
				getorcreate.Add("count", 1), getorcreate.Set("updated_at", now))
			return err
		})
	}

	httpPhase := func() result {
		return drive("tagd POST /api/tags", *clients, *duration, func(ctx context.Context, rng *rand.Rand) error {
			body := []byte(`{"name":"` + name(rng) + `"}`)
			res, err := hc.Post(base+"/api/tags", "application/json", bytes.NewReader(body))
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
	var libRes, httpRes result
	var ratios []float64
	for r := range *rounds {
		l := libPhase()
		if r == 0 && *cpuprof != "" {
			if f, err := os.Create(*cpuprof); err == nil {
				pprof.StartCPUProfile(f)
				defer f.Close()
			}
		}
		h := httpPhase()
		if r == 0 {
			pprof.StopCPUProfile()
		}
		ratios = append(ratios, h.rate()/l.rate())
		libRes, httpRes = merge(libRes, l), merge(httpRes, h)
	}
	slices.Sort(ratios)
	if stop != nil {
		stop()
		if err := <-served; err != nil {
			fmt.Fprintln(os.Stderr, "tagload: tagd:", err)
		}
	}

	check := func(tbl string, want int) string {
		var sum int64
		if err := db.QueryRow("SELECT COALESCE(SUM(count), 0) FROM " + tbl).Scan(&sum); err != nil {
			return "check failed: " + err.Error()
		}
		if sum != int64(want) {
			return fmt.Sprintf("MISMATCH: counts sum to %d, %d acknowledged", sum, want)
		}
		return "counts == acknowledged"
	}
	fmt.Printf("tagload %s, db %s, %d clients, %d rounds of %v per phase, %d keys, GOMAXPROCS=%d\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), parsed.Kind, *clients, *rounds, *duration, *keys, runtimeProcs())
	fmt.Printf("%-24s %10s %9s %9s %10s %7s  %s\n", "phase", "subm/s", "p50", "p99", "cpu/subm", "errors", "check")
	libCheck := check(run+"_lib_tags", libRes.ok)
	httpCheck := "not checked"
	if *url == "" {
		httpCheck = check(pfx+"tags", httpRes.ok)
	}
	for _, r := range []struct {
		result
		check string
	}{{libRes, libCheck}, {httpRes, httpCheck}} {
		fmt.Printf("%-24s %10.0f %9s %9s %10s %7d  %s\n", r.name, r.rate(), r.pct(0.50).Round(10*time.Microsecond), r.pct(0.99).Round(10*time.Microsecond),
			(r.cpu / time.Duration(max(1, r.ok))).Round(time.Microsecond), r.failed, r.check)
	}
	fmt.Printf("ratio tagd/library: %.2f (median of %d rounds: %.2f)\n", ratios[len(ratios)/2], len(ratios), ratios)
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }

// merge pools two runs of a phase.
func merge(a, b result) result {
	a.name = b.name
	a.ok += b.ok
	a.failed += b.failed
	a.elapsed += b.elapsed
	a.cpu += b.cpu
	a.lat = append(a.lat, b.lat...)
	slices.Sort(a.lat)
	return a
}
