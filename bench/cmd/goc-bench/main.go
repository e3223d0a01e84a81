// Command goc-bench runs the getorcreate benchmark against the floor, GORM
// and a port of Django on SQLite, PostgreSQL and MariaDB, and writes a
// Markdown table. See docs/BENCHMARKS.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/getorcreate/getorcreate/bench"
)

func main() {
	dbs := flag.String("db", "sqlite,postgres,mysql", "databases to run, comma-separated")
	workloads := flag.String("workload", strings.Join(bench.Workloads, ","), "workloads to run, comma-separated")
	contenders := flag.String("contender", "", "contenders to run, comma-separated (default all; the floor is needed for ratios)")
	workers := flag.String("workers", "1,8,32,64", "numbers of concurrent workers, comma-separated")
	freshWorkers := flag.String("fresh-workers", "8,32,64", "numbers of workers of the fresh workload, comma-separated")
	freshRows := flag.Int("fresh-rows", bench.DefaultFreshRows, "rows the fresh workload grows each contender's table to, over all rounds")
	dur := flag.Duration("d", 2*time.Second, "duration of each cell, not counting a short warm-up")
	rounds := flag.Int("rounds", 8, "rounds each cell is cut into; the contenders take turns within a round")
	out := flag.String("o", "", "write the Markdown table to this file (default stdout)")
	pg := flag.String("postgres", envOr("GETORCREATE_POSTGRES", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"), "PostgreSQL DSN")
	my := flag.String("mysql", envOr("GETORCREATE_MYSQL", "mysql://root@127.0.0.1:3306/test"), "MariaDB/MySQL DSN")
	sqlitePath := flag.String("sqlite", "", "SQLite file (default a fresh temporary file)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run (client side) to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fail(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fail(err)
		}
		defer pprof.StopCPUProfile()
	}

	cfg := bench.Config{
		Workloads:  split(*workloads),
		Contenders: split(*contenders),
		Duration:   *dur,
		Rounds:     *rounds,
		FreshRows:  *freshRows,
		Log:        os.Stderr,
	}
	cfg.Workers = ints("workers", *workers)
	cfg.FreshWorkers = ints("fresh-workers", *freshWorkers)
	ctx := context.Background()
	start := time.Now()
	var all []bench.Result
	for _, kind := range split(*dbs) {
		var d string
		switch kind {
		case "sqlite":
			d = *sqlitePath
			if d == "" {
				dir, err := os.MkdirTemp("", "goc-bench")
				if err != nil {
					fail(err)
				}
				defer os.RemoveAll(dir)
				d = filepath.Join(dir, "bench.db")
			}
			d = "sqlite:" + d
		case "postgres":
			d = *pg
		case "mysql", "mariadb":
			d = *my
		default:
			fail(fmt.Errorf("unknown database %q", kind))
		}
		e, err := bench.OpenEnv(ctx, d)
		if err != nil {
			fail(err)
		}
		rs, err := bench.Run(ctx, e, cfg)
		e.Close()
		all = append(all, rs...)
		if err != nil {
			fail(err)
		}
	}
	w := os.Stdout
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			fail(err)
		}
		defer f.Close()
		w = f
	}
	fmt.Fprintf(w, "Run %s UTC, %s, %d cells of %s each, %s in all.\n\n", start.UTC().Format("2006-01-02 15:04"), "goc-bench "+strings.Join(os.Args[1:], " "), len(all), *dur, time.Since(start).Round(time.Second))
	bench.WriteMarkdown(w, all)
}

// ints parses a comma-separated list of positive numbers.
func ints(name, s string) []int {
	var out []int
	for _, p := range split(s) {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 {
			fail(fmt.Errorf("bad -%s value %q", name, p))
		}
		out = append(out, n)
	}
	return out
}

func split(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func fail(err error) {
	pprof.StopCPUProfile()
	fmt.Fprintln(os.Stderr, "goc-bench:", err)
	os.Exit(1)
}
