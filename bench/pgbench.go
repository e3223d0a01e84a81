package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// pgbench runs the floor's upsert from PostgreSQL's own load generator:
// C clients, no Go, no database/sql, no pgx. It takes its turn in the
// rounds like every other contender, one pgbench process per round.
func init() {
	extraContenders = append(extraContenders, Contender{
		Name: "pgbench", Kinds: []string{"postgres"}, Workloads: []string{Zipf, Hot}, Open: openPgbench,
		Note: "PostgreSQL's pgbench running the floor's upsert from a script file: -c WORKERS -j 2 -T SECONDS -M prepared, the same table layout and key choice (random_zipfian(0, 9999, 1.1) for zipf); its rounds last whole seconds (at least 1 s), and its p50/p99 come from its per-transaction log (-l)",
	})
}

// PgbenchPath finds pgbench: $GOC_PGBENCH, then $PATH, then the
// PostgreSQL server packages' directories. Empty when there is none.
func PgbenchPath() string {
	if p := os.Getenv("GOC_PGBENCH"); p != "" {
		return p
	}
	if p, err := exec.LookPath("pgbench"); err == nil {
		return p
	}
	ms, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pgbench")
	if len(ms) > 0 {
		return ms[len(ms)-1]
	}
	return ""
}

func openPgbench(ctx context.Context, e *Env, table string) (Ops, error) {
	bin := PgbenchPath()
	if bin == "" {
		return Ops{Missing: "pgbench not found (set GOC_PGBENCH, or install the postgresql server package)"}, nil
	}
	dir, err := os.MkdirTemp("", "goc-pgbench")
	if err != nil {
		return Ops{}, err
	}
	// The floor's upsert, with the key as pgbench's prepared parameter
	// (zipf) or a literal (hot; the floor sends it as a parameter).
	upsert := "INSERT INTO " + table + " AS t (name, count) VALUES (%s, 1) ON CONFLICT (name) DO UPDATE SET count = t.count + 1 RETURNING id, name, count;\n"
	scripts := map[string]string{
		Zipf: fmt.Sprintf("\\set k random_zipfian(0, %d, %.1f)\n", NumKeys-1, ZipfS) + fmt.Sprintf(upsert, "'z' || :k::text"),
		Hot:  fmt.Sprintf(upsert, "'hot'"),
	}
	for w, s := range scripts {
		if err := os.WriteFile(filepath.Join(dir, w+".sql"), []byte(s), 0o644); err != nil {
			os.RemoveAll(dir)
			return Ops{}, err
		}
	}
	run := func(ctx context.Context, workload string, n int, d time.Duration) (Slice, error) {
		return runPgbench(ctx, bin, e.DataSource, dir, filepath.Join(dir, workload+".sql"), n, d)
	}
	return Ops{Slice: run, Close: func() { os.RemoveAll(dir) }}, nil
}

var (
	pgbProcessed = regexp.MustCompile(`(?m)^number of transactions actually processed: (\d+)`)
	pgbFailed    = regexp.MustCompile(`(?m)^number of failed transactions: (\d+)`)
	pgbTPS       = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \(without initial connection time\)`)
	pgbAborted   = regexp.MustCompile(`(?m)^.*client \d+ aborted.*$`)
)

// runPgbench runs one pgbench process of n clients for d rounded to whole
// seconds (at least one) and parses its summary and per-transaction log.
func runPgbench(ctx context.Context, bin, dsn, dir, script string, n int, d time.Duration) (Slice, error) {
	secs := max(1, int(math.Round(d.Seconds())))
	logs, err := os.MkdirTemp(dir, "log")
	if err != nil {
		return Slice{}, err
	}
	defer os.RemoveAll(logs)
	cmd := exec.CommandContext(ctx, bin, "-n", "-c", strconv.Itoa(n), "-j", strconv.Itoa(min(2, n)), "-T", strconv.Itoa(secs),
		"-M", "prepared", "-f", script, "-l", "--log-prefix", filepath.Join(logs, "tx"), dsn)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	out := stdout.String()
	var s Slice
	if m := pgbProcessed.FindStringSubmatch(out); m != nil {
		s.Ops, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := pgbFailed.FindStringSubmatch(out); m != nil {
		s.Errors, _ = strconv.ParseInt(m[1], 10, 64)
	}
	aborted := pgbAborted.FindAllString(stderr.String(), -1)
	s.Errors += int64(len(aborted))
	if len(aborted) > 0 {
		s.ErrSample = strings.TrimSpace(aborted[0])
	}
	m := pgbTPS.FindStringSubmatch(out)
	if m == nil {
		msg := strings.TrimSpace(stderr.String())
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:]
		}
		return s, fmt.Errorf("pgbench printed no tps (%v): %s", runErr, msg)
	}
	tps, _ := strconv.ParseFloat(m[1], 64)
	if tps > 0 {
		s.Elapsed = time.Duration(float64(s.Ops) / tps * float64(time.Second))
	}
	// Each log line: client_id transaction_no latency_us script_no epoch us.
	files, _ := filepath.Glob(filepath.Join(logs, "tx*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) < 3 {
				continue
			}
			if us, err := strconv.ParseInt(fs[2], 10, 64); err == nil {
				s.Latencies = append(s.Latencies, time.Duration(us)*time.Microsecond)
			}
		}
	}
	if runErr != nil && s.ErrSample == "" {
		s.ErrSample = fmt.Sprintf("pgbench: %v: %s", runErr, strings.TrimSpace(stderr.String()))
	}
	return s, nil
}
