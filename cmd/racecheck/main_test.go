package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/getorcreate/getorcreate/internal/dsn"
)

// bin is the racecheck binary, built once: the tests run it as users do,
// and its --procs workers are real re-executed processes.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "racecheck-bin-")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "racecheck")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		panic("building racecheck: " + err.Error() + "\n" + string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func runBin(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), out.String(), errb.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, out.String(), errb.String()
}

// TestDemo: no arguments runs storm and counter on a temporary SQLite
// database within a minute and exits 0 because getorcreate held.
func TestDemo(t *testing.T) {
	start := time.Now()
	code, out, errs := runBin(t)
	t.Logf("demo took %s:\n%s%s", time.Since(start), out, errs)
	if code != 0 {
		t.Fatalf("exit %d, want 0", code)
	}
	if d := time.Since(start); d > time.Minute {
		t.Errorf("demo took %s, want under a minute", d)
	}
	for _, want := range []string{"storm on sqlite", "counter on sqlite", "read-modify-write", "getorcreate"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
}

// TestBadInput: one line on stderr, exit 2, no stack trace.
func TestBadInput(t *testing.T) {
	db := "sqlite:" + filepath.Join(t.TempDir(), "x.db")
	for _, args := range [][]string{
		{"run", "--db", "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2"},
		{"run", "--db", "mysql://root@127.0.0.1:1/test"},
		{"run", "--db", "nonsense"},
		{"run", "--db", "sqlite:"},
		{"run", "--db", db, "--workers", "0"},
		{"run", "--db", db, "--duration", "-5s"},
		{"run", "--db", db, "--strategy", "naive,magic"},
		{"run", "--db", db, "--isolation", "snapshot"},
		{"run", "--db", db, "--bogus-flag"},
		{"run"},
		{"doctor", "--db", db, "--table", "missing", "--key", "name"},
		{"doctor", "--db", db, "--table", "t"},
		{"frobnicate"},
	} {
		code, _, errs := runBin(t, args...)
		if code != 2 || strings.Count(errs, "\n") != 1 || !strings.HasPrefix(errs, "racecheck: ") || strings.Contains(errs, "goroutine") {
			t.Errorf("racecheck %s: exit %d, stderr %q; want exit 2 and one line", strings.Join(args, " "), code, errs)
		}
	}
}

// TestRunJSONProcs runs the binary with workers in two re-executed
// processes and checks the JSON lines.
func TestRunJSONProcs(t *testing.T) {
	db := "sqlite:" + filepath.Join(t.TempDir(), "x.db")
	code, out, errs := runBin(t, "run", "--db", db, "--procs", "2", "--workers", "4", "--rounds", "5", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 {
		t.Fatalf("want 4 JSON lines (one per storm strategy), got %d:\n%s", len(lines), out)
	}
	for _, l := range lines {
		var r struct {
			Strategy  string           `json:"strategy"`
			Procs     int              `json:"procs"`
			Attempted int64            `json:"attempted"`
			Errors    map[string]int64 `json:"errors"`
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		if r.Procs != 2 || r.Attempted != 4*5 || r.Errors == nil {
			t.Errorf("unexpected line %s", l)
		}
	}
	assertNoScratch(t, db)
}

// TestInterrupt sends SIGINT mid-run: the scratch tables must be dropped.
func TestInterrupt(t *testing.T) {
	db := "sqlite:" + filepath.Join(t.TempDir(), "x.db")
	for _, procs := range []string{"1", "2"} {
		cmd := exec.Command(bin, "run", "--db", db, "--procs", procs, "--workers", "4", "--duration", "30s", "--workload", "counter")
		var errb bytes.Buffer
		cmd.Stderr = &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitForScratch(t, db)
		cmd.Process.Signal(syscall.SIGINT)
		err := cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("procs %s: interrupted run: %v, stderr %q; want exit 2", procs, err, errb.String())
		}
		assertNoScratch(t, db)
	}
}

// TestDoctorExit: 1 for a table without a unique index on the key, 0 with.
func TestDoctorExit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	sdb, _, err := dsn.Open(context.Background(), "sqlite:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer sdb.Close()
	if _, err := sdb.Exec(`CREATE TABLE tags (id INTEGER PRIMARY KEY, name TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runBin(t, "doctor", "--db", "sqlite:"+path, "--table", "tags", "--key", "name")
	if code != 1 || !strings.Contains(out, `CREATE UNIQUE INDEX "tags_name_key" ON "tags" ("name")`) {
		t.Errorf("exit %d, want 1 and the DDL:\n%s", code, out)
	}
	if _, err := sdb.Exec(`CREATE UNIQUE INDEX tags_name_key ON tags (name)`); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := runBin(t, "doctor", "--db", "sqlite:"+path, "--table", "tags", "--key", "name"); code != 0 {
		t.Errorf("exit %d, want 0:\n%s", code, out)
	}
}

func scratchTables(t *testing.T, db string) []string {
	t.Helper()
	sdb, _, err := dsn.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer sdb.Close()
	rows, err := sdb.Query(`SELECT name FROM sqlite_schema WHERE type = 'table' AND name LIKE 'racecheck%'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		names = append(names, n)
	}
	return names
}

func waitForScratch(t *testing.T, db string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if len(scratchTables(t, db)) > 0 {
			time.Sleep(300 * time.Millisecond) // let rounds run
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("racecheck created no scratch table")
}

func assertNoScratch(t *testing.T, db string) {
	t.Helper()
	if n := scratchTables(t, db); len(n) > 0 {
		t.Errorf("scratch tables left behind: %v", n)
	}
}
