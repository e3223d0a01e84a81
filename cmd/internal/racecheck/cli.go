package racecheck

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const usage = `usage:
  racecheck                  demo: storm and counter on a temporary SQLite database
  racecheck run --db DSN [--workload storm|keys|counter] [--strategy LIST] [--workers N] [--procs P]
                [--duration D | --rounds R] [--isolation rc|rr|serializable] [--in-tx] [--json] [--keep] [--no-unique]
  racecheck doctor --db DSN --table T --key col[,col...] [--where PREDICATE] [--json]
DSN: sqlite:PATH, postgres://user@host:port/db?..., mysql://user:pass@host:port/db?... (MariaDB too)
exit status: 0 getorcreate held (doctor: nothing unsafe), 1 it did not, 2 bad usage or unreachable database`

// Main runs the racecheck command line with args (without the program
// name) and returns its exit status: 0 when getorcreate held every
// invariant (doctor: nothing unsafe), 1 when not, 2 on bad usage or an
// unreachable database.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		return demo(ctx, stdout, stderr)
	}
	switch args[0] {
	case "run":
		return runCmd(ctx, args[1:], stdout, stderr)
	case "doctor":
		return doctorCmd(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return 0
	}
	return fail(stderr, &UsageError{Msg: fmt.Sprintf("unknown command %q: want run or doctor (racecheck -h)", args[0])})
}

// fail prints err as one line and returns the exit status it calls for.
func fail(stderr io.Writer, err error) int {
	if errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "racecheck: interrupted (%s)\n", strings.Join(strings.Fields(err.Error()), " "))
		return 2
	}
	fmt.Fprintf(stderr, "racecheck: %s\n", strings.Join(strings.Fields(err.Error()), " "))
	if IsUsage(err) {
		return 2
	}
	return 1
}

// parse parses flags, reporting a bad one in one line.
func parse(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (int, bool) {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stdout, usage)
			return 0, false
		}
		return fail(stderr, &UsageError{Msg: err.Error() + " (racecheck -h)"}), false
	}
	if fs.NArg() > 0 {
		return fail(stderr, &UsageError{Msg: fmt.Sprintf("unexpected argument %q (racecheck -h)", fs.Arg(0))}), false
	}
	return 0, true
}

func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var cfg Config
	var strategies string
	var asJSON bool
	fs.StringVar(&cfg.DSN, "db", "", "database DSN")
	fs.StringVar(&cfg.Workload, "workload", Storm, "storm, keys or counter")
	fs.StringVar(&strategies, "strategy", "", "comma-separated strategies (default: all that fit the workload)")
	fs.IntVar(&cfg.Workers, "workers", DefaultWorkers, "concurrent workers")
	fs.IntVar(&cfg.Procs, "procs", 1, "OS processes the workers run in")
	fs.DurationVar(&cfg.Duration, "duration", 0, "run rounds for this long")
	fs.IntVar(&cfg.Rounds, "rounds", 0, "rounds (default per workload)")
	fs.StringVar(&cfg.Isolation, "isolation", "", "rc, rr or serializable (default: the database's)")
	fs.BoolVar(&cfg.InTx, "in-tx", false, "run each operation inside a caller's transaction")
	fs.BoolVar(&cfg.Keep, "keep", false, "keep the scratch tables")
	fs.BoolVar(&cfg.NoUnique, "no-unique", false, "no unique index on the key, except for getorcreate: naive races leave duplicate rows")
	fs.Int64Var(&cfg.Seed, "seed", 0, "seed for key orders and counter draws")
	fs.BoolVar(&asJSON, "json", false, "one JSON object per strategy per line")
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	for _, s := range strings.Split(strategies, ",") {
		if s = strings.TrimSpace(s); s != "" {
			cfg.Strategies = append(cfg.Strategies, s)
		}
	}
	if !asJSON {
		cfg.Progress = progressBar(stdout, stderr)
	}
	reports, err := Run(ctx, cfg)
	clearProgress(stdout, stderr)
	if err != nil {
		return fail(stderr, err)
	}
	if cfg.Keep && len(reports) > 0 {
		r := reports[0]
		prefix := strings.TrimSuffix(r.Table, "_"+strings.ReplaceAll(r.Strategy, "-", "_"))
		fmt.Fprintf(stderr, "racecheck: kept the scratch tables %s_* (one per strategy, and _pin); drop them when done\n", prefix)
	}
	return finish(stdout, stderr, reports, asJSON)
}

func finish(stdout, stderr io.Writer, reports []Report, asJSON bool) int {
	var err error
	if asJSON {
		err = WriteJSON(stdout, reports)
	} else {
		err = WriteTable(stdout, reports)
	}
	if err != nil {
		// Not a finding: exit 1 is kept for "getorcreate broke".
		fail(stderr, err)
		return 2
	}
	if !Held(reports) {
		fmt.Fprintln(stderr, "racecheck: getorcreate broke an invariant (see the BROKE rows)")
		return 1
	}
	return 0
}

// demo runs storm and counter with every strategy on a temporary SQLite
// database that it removes afterwards.
func demo(ctx context.Context, stdout, stderr io.Writer) int {
	dir, err := os.MkdirTemp("", "racecheck-demo-")
	if err != nil {
		return fail(stderr, err)
	}
	defer os.RemoveAll(dir)
	fmt.Fprintf(stdout, "racecheck demo on a temporary SQLite database (%s), %s\n\n", dir, time.Now().UTC().Format("2006-01-02"))
	var all []Report
	for _, wl := range []string{Storm, Counter} {
		reports, err := Run(ctx, Config{
			DSN:      "sqlite:" + filepath.Join(dir, "db"),
			Workload: wl,
			Workers:  DefaultWorkers,
			Progress: progressBar(stdout, stderr),
		})
		clearProgress(stdout, stderr)
		if err != nil {
			return fail(stderr, err)
		}
		all = append(all, reports...)
	}
	code := finish(stdout, stderr, all, false)
	fmt.Fprintln(stdout, `
naive, naive-tx, insert-catch and read-modify-write are the code people write (docs/RACECHECK.md
says what each models); BROKE means a caller saw an error or the table ended up wrong. SQLite
serialises transactions (BEGIN IMMEDIATE), so only code outside one races here; on a server
naive-tx fails too, and insert-catch inside a caller's transaction (--in-tx):
racecheck run --db postgres://... or mysql://... (racecheck -h).`)
	return code
}

// isTerminal reports whether w is a terminal: only then is a progress bar
// drawn, so that pipes and CI logs get the table alone.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func progressBar(stdout, stderr io.Writer) func(Progress) {
	if !isTerminal(stdout) || !isTerminal(stderr) {
		return nil
	}
	return func(p Progress) {
		const width = 30
		done := (float64(p.StrategyIndex) + p.Fraction) / float64(p.Strategies)
		n := int(done * width)
		fmt.Fprintf(stderr, "\r[%s%s] %3.0f%% %s: %-17s", strings.Repeat("#", n), strings.Repeat(" ", width-n), done*100, p.Workload, p.Strategy)
	}
}

func clearProgress(stdout, stderr io.Writer) {
	if isTerminal(stdout) && isTerminal(stderr) {
		fmt.Fprintf(stderr, "\r%s\r", strings.Repeat(" ", 70))
	}
}

func doctorCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	var db, table, key, where string
	var asJSON bool
	fs.StringVar(&db, "db", "", "database DSN")
	fs.StringVar(&table, "table", "", "table to inspect")
	fs.StringVar(&key, "key", "", "comma-separated key columns")
	fs.StringVar(&where, "where", "", "the predicate of a partial unique index the key is unique under (soft deletes), as getorcreate.Config.Where")
	fs.BoolVar(&asJSON, "json", false, "print the findings as one JSON object")
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	var cols []string
	for _, c := range strings.Split(key, ",") {
		if c = strings.TrimSpace(c); c != "" {
			cols = append(cols, c)
		}
	}
	d, err := DoctorWhere(ctx, db, table, cols, where)
	if err != nil {
		return fail(stderr, err)
	}
	if asJSON {
		err = WriteDiagnosisJSON(stdout, d)
	} else {
		err = WriteDiagnosis(stdout, d)
	}
	if err != nil {
		return fail(stderr, err)
	}
	if !d.Safe() {
		return 1
	}
	return 0
}
