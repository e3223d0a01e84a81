package bench

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRun runs every contender briefly on every workload and checks the
// correctness columns: getorcreate never duplicates, loses an update or
// returns an error; the floor never errs where nothing races. SQLite always
// runs; PostgreSQL and MariaDB run when GETORCREATE_POSTGRES and
// GETORCREATE_MYSQL are set. Throughput is printed, never asserted.
func TestRun(t *testing.T) {
	dsns := map[string]string{
		"sqlite":   "sqlite:" + filepath.Join(t.TempDir(), "bench.db"),
		"postgres": os.Getenv("GETORCREATE_POSTGRES"),
		"mysql":    os.Getenv("GETORCREATE_MYSQL"),
	}
	for _, kind := range []string{"sqlite", "postgres", "mysql"} {
		t.Run(kind, func(t *testing.T) {
			if dsns[kind] == "" {
				t.Skipf("set GETORCREATE_%s to run it", strings.ToUpper(map[string]string{"postgres": "postgres", "mysql": "mysql"}[kind]))
			}
			ctx := context.Background()
			e, err := OpenEnv(ctx, dsns[kind])
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			cfg := Config{Workloads: Workloads, Workers: []int{8}, Duration: 200 * time.Millisecond, Rounds: 2, FreshRows: 2000}
			if kind == "sqlite" {
				cfg.Workers = []int{1, 8}
			}
			rs, err := Run(ctx, e, cfg)
			if err != nil {
				t.Fatal(err)
			}
			want := 0
			for _, w := range Workloads {
				for _, c := range Contenders() {
					if selected(c, kind, w, nil) {
						want += len(cfg.Workers)
					}
				}
			}
			if len(rs) != want {
				t.Fatalf("%d results, want %d", len(rs), want)
			}
			for _, r := range rs {
				t.Logf("%-8s %2d %-22s %8.0f ops/s ×%.2f p50 %.2fms p99 %.2fms dup %d flag %s lost %s err %d %s %s", r.Workload, r.Workers, r.Contender, r.OpsPerSec(), r.Ratio,
					ms(r.P50), ms(r.P99), r.Dup, count(r.Flag, r.FlagKnown), count(r.Lost, r.LostKnown), r.Errors, serverLine(r), r.Missing)
				if r.Missing != "" {
					t.Logf("%s did not run: %s", r.Contender, r.Missing)
					continue
				}
				if r.Ops == 0 {
					t.Errorf("%s %s %d: no successful call (%s)", r.Contender, r.Workload, r.Workers, r.ErrSample)
				}
				switch r.Contender {
				case "getorcreate", "getorcreate-pgx", "getorcreate-coalesced":
					if r.Errors != 0 || r.Dup != 0 || r.Flag != 0 || !r.FlagKnown || r.Lost != 0 || (r.Workload == Hot || r.Workload == Zipf) && !r.LostKnown {
						t.Errorf("%s %s %d workers: dup %d flag %d lost %d err %d (%s)", r.Contender, r.Workload, r.Workers, r.Dup, r.Flag, r.Lost, r.Errors, r.ErrSample)
					}
					if r.P50 <= 0 || r.P99 < r.P50 {
						t.Errorf("%s %s %d workers: latency p50 %v p99 %v", r.Contender, r.Workload, r.Workers, r.P50, r.P99)
					}
					if r.Ratio <= 0 {
						t.Errorf("%s %s %d workers: no ratio to the floor", r.Contender, r.Workload, r.Workers)
					}
				case "pgbench":
					if r.Errors != 0 || r.Lost != 0 || !r.LostKnown || r.P99 <= 0 {
						t.Errorf("pgbench %s %d workers: lost %d err %d p99 %v (%s)", r.Workload, r.Workers, r.Lost, r.Errors, r.P99, r.ErrSample)
					}
				case "floor", "floor-pgx":
					if r.Errors != 0 || r.Lost != 0 {
						t.Errorf("floor %s %d workers: lost %d err %d (%s)", r.Workload, r.Workers, r.Lost, r.Errors, r.ErrSample)
					}
				}
			}
			var buf bytes.Buffer
			WriteMarkdown(&buf, rs)
			if !strings.Contains(buf.String(), "| 8 | **getorcreate** |") || !strings.Contains(buf.String(), "### Targets for getorcreate") {
				t.Errorf("markdown lacks the getorcreate rows or the targets:\n%s", buf.String())
			}
		})
	}
}
