package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Targets are the throughput targets for getorcreate, as ratios to
// the floor.
var Targets = map[string]float64{Existing: 0.9, New: 0.9, Zipf: 0.95, Hot: 0.95}

var workloadTitle = map[string]string{
	Fresh:    "get-or-create of new keys into a table analyzed while empty, statements prepared then, growing to the run's row count (floor: plain INSERT ... RETURNING)",
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
	fmt.Fprintln(w, "Columns: ops/s counts successful calls; × floor is the median, over the rounds of the run, of ops/s divided by the floor's ops/s in the same round, database, workload and workers (× floor-pgx for the pgx contenders); p50 and p99 are the latency of one call in milliseconds; dup counts duplicate rows; flag counts created-flag errors (calls that said they created a row that existed or that another call created, and rows no call said it created); lost counts successful increments missing from the table; err counts errors that reached the caller; counters are getorcreate's own (from its Tracer: calls and statements per flight, a flight being a batch or a call that went alone; statements leave out BEGIN and COMMIT) and the server's per successful call (PostgreSQL: the table's row writes from pg_stat_user_tables, warm-up included, and its sequential scans; MariaDB: SHOW GLOBAL STATUS deltas over the timed rounds, Com_insert + Com_update + Com_select and Innodb_row_lock_waits, which include other sessions' statements). – means the contender cannot tell (it does not report what it created, or the workload does not update).")
	fmt.Fprintf(w, "\nContenders:\n\n")
	for _, c := range Contenders() {
		if slices.ContainsFunc(results, func(r Result) bool { return r.Contender == c.Name }) {
			fmt.Fprintf(w, "- **%s**: %s\n", c.Name, c.Note)
		}
	}
	for _, g := range groups {
		fmt.Fprintf(w, "\n### %s: %s\n\n", kindTitle[g.kind], workloadTitle[g.workload])
		fmt.Fprintln(w, "| workers | contender | ops/s | × floor | p50 ms | p99 ms | dup | flag | lost | err | counters |")
		fmt.Fprintln(w, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
		for _, r := range results {
			if r.Kind != g.kind || r.Workload != g.workload {
				continue
			}
			name := r.Contender
			if strings.HasPrefix(name, "getorcreate") {
				name = "**" + name + "**"
			}
			if r.Missing != "" {
				fmt.Fprintf(w, "| %d | %s | %s | – | – | – | – | – | – | – | |\n", r.Workers, name, r.Missing)
				continue
			}
			fmt.Fprintf(w, "| %d | %s | %.0f | %s | %s | %s | %d | %s | %s | %d | %s |\n", r.Workers, name, r.OpsPerSec(), ratio(r.Ratio), msOrDash(r.P50), msOrDash(r.P99),
				r.Dup, count(r.Flag, r.FlagKnown), count(r.Lost, r.LostKnown), r.Errors, counters(r))
		}
	}

	writeCoalescingTargets(w, results)

	fmt.Fprintf(w, "\n### Targets for getorcreate (issue 6)\n\n")
	fmt.Fprintln(w, "Throughput target: at least 0.9× the floor for get-or-create, 0.95× for update-or-create; correctness target: zero dup, lost and err in every cell.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| database | contender | workload | target | 1 | 8 | 32 | 64 | correct |")
	fmt.Fprintln(w, "|---|---|---|---:|---:|---:|---:|---:|---|")
	for _, g := range groups {
		if _, ok := Targets[g.workload]; !ok {
			continue
		}
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
						if !correct1(r) {
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

// correct1 reports whether a cell has no duplicate, created-flag error,
// lost update or error.
func correct1(r Result) bool {
	return r.Errors == 0 && r.Dup == 0 && (!r.FlagKnown || r.Flag == 0) && (!r.LostKnown || r.Lost == 0)
}

func msOrDash(d time.Duration) string {
	if d <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", ms(d))
}

// CoalescingTarget is one of issue 14's targets: Contender's throughput
// over Vs's in the same rounds at least Min; or, with Latency, its p50 and
// p99 over Vs's at most Max, at 1 worker.
type CoalescingTarget struct {
	Kind, Workload, Contender, Vs string
	Min                           float64
	Latency                       bool
	Max                           float64
}

// CoalescingTargets are issue 14's targets.
var CoalescingTargets = []CoalescingTarget{
	{Kind: "postgres", Workload: Hot, Contender: "getorcreate-coalesced", Vs: "floor", Min: 5},
	{Kind: "postgres", Workload: Hot, Contender: "getorcreate-coalesced", Vs: "pgbench", Min: 3},
	{Kind: "postgres", Workload: Zipf, Contender: "getorcreate-coalesced", Vs: "floor", Min: 2},
	{Kind: "mysql", Workload: Hot, Contender: "getorcreate-coalesced", Vs: "floor", Min: 3},
	{Kind: "mysql", Workload: Zipf, Contender: "getorcreate-coalesced", Vs: "floor", Min: 2},
	{Kind: "sqlite", Workload: Hot, Contender: "getorcreate-coalesced", Vs: "floor", Min: 2},
	{Kind: "sqlite", Workload: Zipf, Contender: "getorcreate-coalesced", Vs: "floor", Min: 2},
	{Kind: "postgres", Workload: Hot, Contender: "getorcreate-coalesced", Vs: "getorcreate", Latency: true, Max: 1.1},
	{Kind: "postgres", Workload: Zipf, Contender: "getorcreate-coalesced", Vs: "getorcreate", Latency: true, Max: 1.1},
	{Kind: "mysql", Workload: Hot, Contender: "getorcreate-coalesced", Vs: "getorcreate", Latency: true, Max: 1.1},
	{Kind: "mysql", Workload: Zipf, Contender: "getorcreate-coalesced", Vs: "getorcreate", Latency: true, Max: 1.1},
	{Kind: "sqlite", Workload: Hot, Contender: "getorcreate-coalesced", Vs: "getorcreate", Latency: true, Max: 1.1},
	{Kind: "sqlite", Workload: Zipf, Contender: "getorcreate-coalesced", Vs: "getorcreate", Latency: true, Max: 1.1},
	{Kind: "postgres", Workload: Fresh, Contender: "getorcreate", Vs: "floor", Min: 0.9},
	{Kind: "postgres", Workload: Fresh, Contender: "getorcreate-pgx", Vs: "floor-pgx", Min: 0.9},
	{Kind: "postgres", Workload: Fresh, Contender: "getorcreate-coalesced", Vs: "floor", Min: 0.9},
	{Kind: "mysql", Workload: Fresh, Contender: "getorcreate", Vs: "floor", Min: 0.9},
	{Kind: "sqlite", Workload: Fresh, Contender: "getorcreate", Vs: "floor", Min: 0.9},
}

// writeCoalescingTargets writes issue 14's targets, met or missed, for the
// cells the run has.
func writeCoalescingTargets(w io.Writer, results []Result) {
	var rows []string
	for _, t := range CoalescingTargets {
		var cells []string
		any, correct := false, true
		for _, n := range []int{1, 8, 32, 64} {
			cell := "·"
			for _, r := range results {
				if r.Kind != t.Kind || r.Workload != t.Workload || r.Workers != n || r.Contender != t.Contender {
					continue
				}
				if t.Latency {
					if n != 1 {
						continue
					}
					lv, ok := r.LatVs[t.Vs]
					if !ok {
						continue
					}
					mark := "✓"
					if lv[0] > t.Max || lv[1] > t.Max {
						mark = "✗"
					}
					cell = fmt.Sprintf("p50 %.2f, p99 %.2f %s", lv[0], lv[1], mark)
				} else {
					if n == 1 && t.Workload != Fresh {
						continue
					}
					x, ok := r.Vs[t.Vs]
					if !ok {
						continue
					}
					mark := "✓"
					if x < t.Min {
						mark = "✗"
					}
					cell = ratio(x) + " " + mark
				}
				any = true
				if !correct1(r) {
					correct = false
				}
			}
			cells = append(cells, cell)
		}
		if !any {
			continue
		}
		target := fmt.Sprintf("≥ %.1f× %s", t.Min, t.Vs)
		if t.Latency {
			target = fmt.Sprintf("≤ %.1f× %s's latency", t.Max, t.Vs)
		}
		ok := "yes"
		if !correct {
			ok = "**no**"
		}
		rows = append(rows, fmt.Sprintf("| %s | %s | %s | %s | %s | %s |", kindTitle[t.Kind], t.Workload, t.Contender, target, strings.Join(cells, " | "), ok))
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "\n### Coalescing targets (issue 14)\n\n")
	fmt.Fprintln(w, "Each ratio is the median over the rounds of the two contenders' throughputs (or, at 1 worker, latency percentiles) measured in the same round; correct means zero dup, flag, lost and err in those cells.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| database | workload | contender | target | 1 | 8 | 32 | 64 | correct |")
	fmt.Fprintln(w, "|---|---|---|---|---:|---:|---:|---:|---|")
	fmt.Fprintln(w, strings.Join(rows, "\n"))
}
