// Command tagload measures what tagd's HTTP layer costs: it runs the
// store's Submit (the library calls POST /api/tags makes) at N concurrent
// callers, then POST /api/tags at N concurrent HTTP clients against a tagd started in this process (or
// at --url), on the same database, and prints submissions/s, p50 and p99 of
// both and their ratio. Each phase gets fresh tables, dropped at the end,
// and its counts are checked against the acknowledged submissions. The
// logic is in package tagd/loadgen; this file only wires flags to it and
// prints the results.
//
//	go run ./cmd/tagload --db 'postgres://postgres@127.0.0.1:5432/test?sslmode=disable' --clients 64 --duration 10s
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"time"

	"github.com/getorcreate/getorcreate/cmd/internal/loadgen"
)

func main() {
	var (
		dbDSN      = flag.String("db", "sqlite:tagload.db", "database DSN: sqlite:PATH, postgres://..., mysql://...")
		clients    = flag.Int("clients", 64, "concurrent callers in each phase")
		duration   = flag.Duration("duration", 5*time.Second, "length of each phase in each round")
		keys       = flag.Int("keys", 1000, "distinct tags the submissions pick from, uniformly")
		url        = flag.String("url", "", "tagd to load instead of one started here (it must use --db's database)")
		prefix     = flag.String("table-prefix", "", "with --url: that tagd's --table-prefix, so that its counts are checked (nothing else may submit to it meanwhile)")
		httpOnly   = flag.Bool("http-only", false, "skip the library phase: measure POST /api/tags only")
		keep       = flag.Bool("keep", false, "keep the tables")
		libTimeout = flag.Duration("lib-timeout", 0, "give each library call a context with this timeout, as tagd gives its calls (0: context.Background)")
		rounds     = flag.Int("rounds", 3, "rounds of both phases, alternating")
		cpuprof    = flag.String("cpuprofile", "", "write a CPU profile of the HTTP phase to this file")
	)
	flag.Parse()
	if *url != "" && *prefix == "" {
		fmt.Fprintln(os.Stderr, "tagload: --url given without --table-prefix: counts are not checked (the server's tables are unknown here)")
	}
	res, err := loadgen.Run(context.Background(), loadgen.Config{
		DSN: *dbDSN, Clients: *clients, Duration: *duration, Keys: *keys, Rounds: *rounds,
		URL: *url, TablePrefix: *prefix, HTTPOnly: *httpOnly, Keep: *keep, LibTimeout: *libTimeout, CPUProfile: *cpuprof,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Errors: os.Stderr,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "tagload:", err)
		os.Exit(1)
	}
	if res.ServeErr != nil {
		fmt.Fprintln(os.Stderr, "tagload: tagd:", res.ServeErr)
	}

	fmt.Printf("tagload %s, db %s, %d clients, %d rounds of %v per phase, %d keys, GOMAXPROCS=%d\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), res.Kind, *clients, *rounds, *duration, *keys, runtime.GOMAXPROCS(0))
	fmt.Printf("%-24s %10s %9s %9s %10s %8s %7s  %s\n", "phase", "subm/s", "p50", "p99", "cpu/subm", "acked", "errors", "check")
	phases := []loadgen.Phase{res.Library, res.HTTP}
	if *httpOnly {
		phases = phases[1:]
	}
	for _, p := range phases {
		fmt.Printf("%-24s %10.0f %9s %9s %10s %8d %7d  %s\n", p.Name, p.Rate(), p.Percentile(0.50).Round(10*time.Microsecond), p.Percentile(0.99).Round(10*time.Microsecond),
			p.CPUPerSubmission().Round(time.Microsecond), p.OK, p.Failed, p.Check())
	}
	if !*httpOnly {
		fmt.Printf("ratio tagd/library: %.2f (median of %d rounds: %.2f)\n", res.Ratio(), len(res.Ratios), res.Ratios)
	}
}
