package racecheck

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// WriteJSON writes one JSON object per report, one per line, with the
// fields documented on Report.
func WriteJSON(w io.Writer, reports []Report) error {
	enc := json.NewEncoder(w)
	for _, r := range reports {
		if r.Errors == nil {
			r.Errors = map[string]int64{}
		}
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	return nil
}

// WriteTable writes the reports as an aligned table, grouped under a
// heading per workload and setting, followed by a sample message for each
// kind of "other" error so that it can be diagnosed.
func WriteTable(w io.Writer, reports []Report) error {
	var b strings.Builder
	var heading string
	var tw *tabwriter.Writer
	flush := func() {
		if tw != nil {
			tw.Flush()
		}
	}
	for _, r := range reports {
		h := fmt.Sprintf("%s on %s: %d workers in %d process%s, isolation %s%s",
			r.Workload, r.DB, r.Workers, r.Procs, plural(r.Procs, "es"), r.Isolation, inTxNote(r.InTx))
		if h != heading {
			flush()
			if heading != "" {
				b.WriteString("\n")
			}
			heading = h
			b.WriteString(h + "\n")
			tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
			// Right-aligned numbers; the name and verdict are padded
			// to a fixed width so they read left-aligned, and the
			// errors trail unaligned.
			fmt.Fprintf(tw, "%-18s\tattempted\tok\tops/s\tp50 ms\tp99 ms\tdup rows\tlost upd\tcreated-flag err\tretries\t %-7s\t errors\n", "strategy", "verdict")
		}
		verdict := "held"
		if !r.Held() {
			verdict = "BROKE"
		}
		name := r.Strategy
		if r.NoUnique {
			name += "*"
		}
		fmt.Fprintf(tw, "%-18s\t%d\t%d\t%.0f\t%.2f\t%.2f\t%d\t%d\t%d\t%d\t %-7s\t %s\n",
			name, r.Attempted, r.OK, r.OpsPerSec, r.P50ms, r.P99ms, r.Duplicates, r.LostUpdates, r.CreatedFlagErrors, r.Retries, verdict, errorsCell(r.Errors))
	}
	flush()
	var notes []string
	if slices.ContainsFunc(reports, func(r Report) bool { return r.NoUnique }) {
		notes = append(notes, "  * table without a unique index on the key (--no-unique)")
	}
	for _, r := range reports {
		if msg, ok := r.Samples["other"]; ok {
			notes = append(notes, fmt.Sprintf("  %s/%s other error, e.g.: %s", r.Workload, r.Strategy, msg))
		}
	}
	if len(notes) > 0 {
		b.WriteString("\n" + strings.Join(notes, "\n") + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func errorsCell(m map[string]int64) string {
	var parts []string
	for _, k := range ErrorKinds {
		if m[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
		}
	}
	var rest []string
	for k, v := range m {
		if !slices.Contains(ErrorKinds, k) && v > 0 {
			rest = append(rest, fmt.Sprintf("%s=%d", k, v))
		}
	}
	slices.Sort(rest)
	parts = append(parts, rest...)
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

func inTxNote(inTx bool) string {
	if inTx {
		return ", each operation inside a caller's transaction (--in-tx)"
	}
	return ""
}

func plural(n int, suffix string) string {
	if n == 1 {
		return ""
	}
	return suffix
}
