package getorcreate_test

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/getorcreate/getorcreate"
	"github.com/getorcreate/getorcreate/dialect/mysql"
	"github.com/getorcreate/getorcreate/internal/dsn"
	"github.com/getorcreate/getorcreate/internal/testdb"
	"github.com/getorcreate/getorcreate/pgxv5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Environment of a worker process in TestStampedeProcesses.
const (
	envWorkerDSN   = "GOC_TEST_WORKER_DSN"
	envWorkerTable = "GOC_TEST_WORKER_TABLE"
	envWorkerMode  = "GOC_TEST_WORKER_MODE" // "get", "update" or "naive"; "coalesce-get", "coalesce-update" on a coalescing table
	envWorkerNoRet = "GOC_TEST_WORKER_NORETURNING"
	envWorkerPgx   = "GOC_TEST_WORKER_PGX"
)

func TestMain(m *testing.M) {
	if os.Getenv(envWorkerDSN) != "" {
		if err := worker(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "worker:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type wireOutcome struct {
	ID      int64  `json:"id"`
	Created bool   `json:"created"`
	Err     string `json:"err,omitempty"`
}

// worker reads one key per line and, for each, releases its goroutines at
// once onto it, writing one JSON line per goroutine and then "done".
func worker(in io.Reader, out io.Writer) error {
	ctx := context.Background()
	db, _, err := dsn.Open(ctx, os.Getenv(envWorkerDSN))
	if err != nil {
		return err
	}
	defer db.Close()
	mode, coalesce := strings.CutPrefix(os.Getenv(envWorkerMode), "coalesce-")
	cfg := getorcreate.Config{Table: os.Getenv(envWorkerTable), Key: []string{"name"}, Coalesce: coalesce}
	if os.Getenv(envWorkerNoRet) != "" {
		cfg.Dialect = mysql.NoReturning
	}
	var tags *getorcreate.Table[Tag]
	if os.Getenv(envWorkerPgx) != "" {
		pool, perr := pgxpool.New(ctx, os.Getenv(envWorkerDSN))
		if perr != nil {
			return perr
		}
		defer pool.Close()
		tags, err = pgxv5.OpenConfig[Tag](ctx, pool, cfg)
	} else {
		tags, err = getorcreate.OpenConfig[Tag](ctx, db, cfg)
	}
	if err != nil {
		return err
	}
	ph := "?"
	if tags.Dialect() == "postgres" {
		ph = "$1"
	}
	op := func(key string) outcome {
		switch mode {
		case "update":
			res, err := tags.UpdateOrCreate(ctx, Tag{Name: key, Count: 1}, getorcreate.Add("count", 1))
			return outcome{res.Row.ID, res.Created, err}
		case "naive":
			var id int64
			err := db.QueryRowContext(ctx, "SELECT id FROM "+cfg.Table+" WHERE name = "+ph, key).Scan(&id)
			if err != sql.ErrNoRows {
				return outcome{id: id, err: err}
			}
			if _, err := db.ExecContext(ctx, "INSERT INTO "+cfg.Table+" (name) VALUES ("+ph+")", key); err != nil {
				return outcome{err: err}
			}
			err = db.QueryRowContext(ctx, "SELECT id FROM "+cfg.Table+" WHERE name = "+ph, key).Scan(&id)
			return outcome{id: id, created: true, err: err}
		}
		res, err := tags.GetOrCreate(ctx, Tag{Name: key})
		return outcome{res.Row.ID, res.Created, err}
	}
	stampede(16, "warm-up", func(string) outcome { return outcome{err: db.PingContext(ctx)} })
	fmt.Fprintln(out, "ready")
	enc := json.NewEncoder(out)
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		for _, o := range stampede(16, sc.Text(), op) {
			w := wireOutcome{ID: o.id, Created: o.created}
			if o.err != nil {
				w.Err = o.err.Error()
			}
			if err := enc.Encode(w); err != nil {
				return err
			}
		}
		fmt.Fprintln(out, "done")
	}
	return sc.Err()
}

type workerProc struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

// runProcesses starts procs copies of the test binary as workers and runs
// the stampede for each key across all of them: every process gets the key
// at the same moment and releases 16 goroutines on it.
func runProcesses(t *testing.T, db *testdb.DB, table, mode string, procs int, keys []string) map[string][]outcome {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ws := make([]*workerProc, procs)
	for i := range ws {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), envWorkerDSN+"="+db.DSN, envWorkerTable+"="+table, envWorkerMode+"="+mode)
		switch db.Name {
		case "mysql-noreturning":
			cmd.Env = append(cmd.Env, envWorkerNoRet+"=1")
		case "postgres-pgx":
			cmd.Env = append(cmd.Env, envWorkerPgx+"=1")
		}
		cmd.Stderr = os.Stderr
		in, _ := cmd.StdinPipe()
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		w := &workerProc{cmd, in, bufio.NewScanner(out)}
		ws[i] = w
		t.Cleanup(func() { w.in.Close(); w.cmd.Wait() })
		if !w.out.Scan() || w.out.Text() != "ready" {
			t.Fatalf("worker %d did not start: %q %v", i, w.out.Text(), w.out.Err())
		}
	}
	res := map[string][]outcome{}
	for _, key := range keys {
		for _, w := range ws {
			fmt.Fprintln(w.in, key)
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, w := range ws {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for w.out.Scan() && w.out.Text() != "done" {
					var o wireOutcome
					if err := json.Unmarshal(w.out.Bytes(), &o); err != nil {
						t.Error(err)
						return
					}
					oc := outcome{id: o.ID, created: o.Created}
					if o.Err != "" {
						oc.err = fmt.Errorf("%s", o.Err)
					}
					mu.Lock()
					res[key] = append(res[key], oc)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	}
	return res
}

// TestStampedeProcesses: the stampede from 4 OS processes at once, as from
// 4 servers, with plain and with coalescing tables (each process's
// batches then race in the database, which keeps one row and one
// creator); the naive way fails across processes too.
func TestStampedeProcesses(t *testing.T) {
	testdb.EachOf(t, []string{"sqlite", "postgres", "mysql", "postgres-pgx", "mysql-noreturning"}, func(t *testing.T, db *testdb.DB) {
		for _, mode := range []string{"get", "update", "coalesce-get", "coalesce-update", "naive"} {
			t.Run(mode, func(t *testing.T) {
				_, table := openTags(t, db)
				keys := make([]string, rounds(t, 10))
				for i := range keys {
					keys[i] = fmt.Sprintf("%s-%d", mode, i)
				}
				var v verdict
				got := runProcesses(t, db, table, mode, 4, keys)
				if len(got) != len(keys) {
					t.Fatalf("outcomes for %d keys, want %d", len(got), len(keys))
				}
				for key, outs := range got {
					if len(outs) != 64 {
						t.Fatalf("key %s: %d outcomes, want 64", key, len(outs))
					}
					v.add(db, t, table, key, outs)
				}
				if mode == "naive" {
					if v.clean() {
						t.Logf("check-then-insert across processes happened to hold in %d rounds on %s", len(keys), db.Name)
					} else {
						t.Logf("check-then-insert across 4 processes: %+v", v)
					}
					return
				}
				if !v.clean() {
					t.Fatalf("%s across 4 processes broke the contract: %+v (first error: %v)", mode, v, v.firstErr)
				}
				if strings.HasSuffix(mode, "update") {
					var sum int64
					db.SQL.QueryRow("SELECT SUM(count) FROM " + table).Scan(&sum)
					if sum != int64(64*len(keys)) {
						t.Fatalf("sum of counts %d, want %d: lost updates", sum, 64*len(keys))
					}
				}
			})
		}
	})
}
