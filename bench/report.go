package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// Targets are the throughput targets for getorcreate, as ratios to
// the floor.
var Targets = map[string]float64{Existing: 0.9, New: 0.9, Zipf: 0.95, Hot: 0.95}

var workloadTitle = map[string]string{
	Existing: "get-or-create, keys that all exist (floor: plain SELECT)",
	New:      "get-or-create, keys that are all new (floor: plain INSERT ... RETURNING)",
	Zipf:     fmt.Sprintf("update-or-create count = count + 1, Zipf(s=%.1f) over %d names (floor: one raw upsert)", ZipfS, NumKeys),
	Hot:      "update-or-create count = count + 1, one hot key (floor: one raw upsert)",
}

var kindTitle = map[string]string{"sqlite": "SQLite", "postgres": "PostgreSQL", "mysql": "MariaDB"}

// WriteMarkdown writes the results as Markdown: one table per database and
// workload, then the targets of getorcreate, then the first error of each
// contender that returned errors.
func WriteMarkdown(w io.Writer, results []Result) {
	type group struct{ kind, workload string }
	var groups []group
	for _, r := range results {
		g := group{r.Kind, r.Workload}
		if !slices.Contains(groups, g) {
			groups = append(groups, g)
		}
	}
	fmt.Fprintln(w, "Columns: ops/s counts successful calls; × floor is the median, over the rounds of the run, of ops/s divided by the floor's ops/s in the same round, database, workload and workers; p99 is the latency of one call in milliseconds; dup counts extra creations (duplicate rows, or calls that said they created a row that existed or that another call created); lost counts successful increments missing from the table; err counts errors that reached the caller. – means the contender cannot tell (it does not report what it created, or the workload does not update).")
	fmt.Fprintf(w, "\nContenders:\n\n")
	for _, c := range Contenders() {
		if slices.ContainsFunc(results, func(r Result) bool { return r.Contender == c.Name }) {
			fmt.Fprintf(w, "- **%s**: %s\n", c.Name, c.Note)
		}
	}
	for _, g := range groups {
		fmt.Fprintf(w, "\n### %s: %s\n\n", kindTitle[g.kind], workloadTitle[g.workload])
		fmt.Fprintln(w, "| workers | contender | ops/s | × floor | p99 ms | dup | lost | err |")
		fmt.Fprintln(w, "|---:|---|---:|---:|---:|---:|---:|---:|")
		for _, r := range results {
			if r.Kind != g.kind || r.Workload != g.workload {
				continue
			}
			name := r.Contender
			if name == "getorcreate" || name == "getorcreate-pgx" {
				name = "**" + name + "**"
			}
			fmt.Fprintf(w, "| %d | %s | %.0f | %s | %.2f | %s | %s | %d |\n", r.Workers, name, r.OpsPerSec(), ratio(r.Ratio), ms(r.P99),
				count(r.Dup, r.DupKnown), count(r.Lost, r.LostKnown), r.Errors)
		}
	}

	fmt.Fprintf(w, "\n### Targets for getorcreate\n\n")
	fmt.Fprintln(w, "Throughput target: at least 0.9× the floor for get-or-create, 0.95× for update-or-create; correctness target: zero dup, lost and err in every cell.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| database | contender | workload | target | 1 | 8 | 32 | 64 | correct |")
	fmt.Fprintln(w, "|---|---|---|---:|---:|---:|---:|---:|---|")
	for _, g := range groups {
		for _, name := range []string{"getorcreate", "getorcreate-pgx", "getorcreate vs floor-prepared"} {
			var cells []string
			var any, correct = false, true
			for _, n := range []int{1, 8, 32, 64} {
				cell := "·"
				for _, r := range results {
					vsPrepared := name == "getorcreate vs floor-prepared"
					if r.Kind == g.kind && r.Workload == g.workload && r.Workers == n &&
						(r.Contender == name || vsPrepared && r.Contender == "getorcreate" && r.RatioPrepared > 0) {
						any = true
						x := r.Ratio
						if vsPrepared {
							x = r.RatioPrepared
						}
						mark := "✓"
						if x < Targets[g.workload] {
							mark = "✗"
						}
						cell = ratio(x) + " " + mark
						if r.Errors != 0 || (r.DupKnown && r.Dup != 0) || (r.LostKnown && r.Lost != 0) {
							correct = false
						}
					}
				}
				cells = append(cells, cell)
			}
			if !any {
				continue
			}
			ok := "yes"
			if !correct {
				ok = "**no**"
			}
			fmt.Fprintf(w, "| %s | %s | %s | %.2f× | %s | %s |\n", kindTitle[g.kind], name, g.workload, Targets[g.workload], strings.Join(cells, " | "), ok)
		}
	}

	type errKey struct{ kind, contender string }
	seen := map[errKey]bool{}
	var lines []string
	for _, r := range results {
		k := errKey{r.Kind, r.Contender}
		if r.ErrSample == "" || seen[k] {
			continue
		}
		seen[k] = true
		msg := r.ErrSample
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		lines = append(lines, fmt.Sprintf("- %s, %s (first seen: %s, %d workers): `%s`", kindTitle[r.Kind], r.Contender, r.Workload, r.Workers, strings.ReplaceAll(msg, "`", "'")))
	}
	if len(lines) > 0 {
		fmt.Fprintf(w, "\n### Errors that reached the caller (first of each)\n\n%s\n", strings.Join(lines, "\n"))
	}
}

func ratio(f float64) string {
	if f == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", f)
}
