package racecheck

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getorcreate/getorcreate/internal/testdb"
)

// TestMain makes the test binary a racecheck worker when Run re-executes it
// for Procs > 1, so the multi-process tests run real OS processes.
func TestMain(m *testing.M) {
	if IsWorker() {
		os.Exit(WorkerMain(context.Background(), os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

// run runs cfg on db, fails the test on error, and checks that every
// scratch table was dropped.
func run(t *testing.T, db *testdb.DB, cfg Config) map[string]Report {
	t.Helper()
	cfg.DSN = db.DSN
	if cfg.Workers == 0 {
		cfg.Workers = DefaultWorkers
	}
	var mu sync.Mutex
	var tables []string
	cfg.onTable = func(name string) {
		mu.Lock()
		defer mu.Unlock()
		tables = append(tables, name)
	}
	reports, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("%s: %v", db.Name, err)
	}
	assertDropped(t, db, tables)
	var b bytes.Buffer
	WriteTable(&b, reports)
	t.Logf("%s:\n%s", db.Name, b.String())
	out := map[string]Report{}
	for _, r := range reports {
		out[r.Strategy] = r
	}
	return out
}

func assertDropped(t *testing.T, db *testdb.DB, tables []string) {
	t.Helper()
	if len(tables) == 0 {
		t.Fatal("no scratch table was reported")
	}
	for _, name := range tables {
		var q string
		switch db.Kind {
		case "sqlite":
			q = "SELECT COUNT(*) FROM sqlite_schema WHERE name = ?"
		case "postgres":
			q = "SELECT COUNT(*) FROM pg_tables WHERE tablename = $1"
		default:
			q = "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?"
		}
		var n int
		if err := db.SQL.QueryRow(q, name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%s: scratch table %s was left behind", db.Name, name)
		}
	}
}

// failed reports whether a get-or-create strategy showed the race: rows
// beyond one per key, or an error a user would have seen.
func failed(r Report) bool {
	return r.Duplicates > 0 || r.errorCount() > 0 || r.CreatedFlagErrors > 0
}

func assertHeld(t *testing.T, db *testdb.DB, r Report) {
	t.Helper()
	if !r.Held() {
		t.Errorf("%s: %s broke an invariant: dup=%d lost=%d created-flag=%d errors=%v samples=%v",
			db.Name, r.Strategy, r.Duplicates, r.LostUpdates, r.CreatedFlagErrors, r.Errors, r.Samples)
	}
	if r.Attempted == 0 {
		t.Errorf("%s: %s ran no operation", db.Name, r.Strategy)
	}
}

// procCounts are the process counts every workload test runs at: in one
// process, and across four OS processes as between servers. -short keeps
// one process, which is where most of the time goes under -race.
func procCounts() []int {
	if testing.Short() {
		return []int{1}
	}
	return []int{1, 4}
}

// TestStorm releases all workers onto one new key per round. The naive
// strategy must show the race on every database; getorcreate must not.
func TestStorm(t *testing.T) {
	testdb.EachOf(t, testdb.Kinds(false), func(t *testing.T, db *testdb.DB) {
		for _, procs := range procCounts() {
			t.Run(fmt.Sprintf("procs=%d", procs), func(t *testing.T) {
				rs := run(t, db, Config{Workload: Storm, Procs: procs, Rounds: 30})
				assertHeld(t, db, rs[GetOrCreate])
				naive := rs[Naive]
				if db.Kind == "sqlite" && procs == 1 {
					// In one process SQLite runs each statement on the
					// calling goroutine, with no I/O between the SELECT and
					// the INSERT, so two workers overlap only while both
					// run on the machine's two cores: a few rounds in 30
					// show the race, on a loaded machine sometimes none.
					// Give naive alone 200 rounds (under a second).
					naive = run(t, db, Config{Workload: Storm, Rounds: 200, Strategies: []string{Naive}})[Naive]
				}
				if !failed(naive) {
					t.Errorf("%s: naive showed no race: %+v", db.Name, naive)
				}
				switch db.Kind {
				case "sqlite":
					// Our SQLite DSN begins every transaction with
					// BEGIN IMMEDIATE, which takes the database's single
					// write lock before the SELECT: naive-tx's SELECT and
					// INSERT cannot interleave with another's, so it
					// cannot fail there.
					assertHeld(t, db, rs[NaiveTx])
				default:
					// A transaction does not make SELECT-then-INSERT
					// atomic on PostgreSQL (READ COMMITTED) or MariaDB
					// (REPEATABLE READ): both SELECTs see no row.
					if !failed(rs[NaiveTx]) {
						t.Errorf("%s: naive-tx showed no race: %+v", db.Name, rs[NaiveTx])
					}
				}
				// Outside a caller's transaction Django's algorithm
				// holds: its second SELECT runs after the winner
				// committed (the INSERT waited for it), in a new snapshot.
				if n := rs[InsertCatch].Errors["not-found-after-duplicate"]; n > 0 {
					t.Errorf("%s: insert-catch outside a transaction: %d not-found-after-duplicate", db.Name, n)
				}
			})
		}
	})
}

// TestCounter increments a hot key and skewed names. read-modify-write must
// lose updates on every database; getorcreate must lose none.
func TestCounter(t *testing.T) {
	testdb.EachOf(t, testdb.Kinds(false), func(t *testing.T, db *testdb.DB) {
		for _, procs := range procCounts() {
			t.Run(fmt.Sprintf("procs=%d", procs), func(t *testing.T) {
				rs := run(t, db, Config{Workload: Counter, Procs: procs, Rounds: 10,
					Strategies: []string{ReadModifyWrite, GetOrCreate}})
				assertHeld(t, db, rs[GetOrCreate])
				if rs[ReadModifyWrite].LostUpdates <= 0 {
					t.Errorf("%s: read-modify-write lost no update: %+v", db.Name, rs[ReadModifyWrite])
				}
			})
		}
	})
}

// TestKeys runs workers over 1,000 keys in their own orders: fewer
// collisions than the storm, so it asserts only that getorcreate holds and
// that every key got exactly one row.
func TestKeys(t *testing.T) {
	testdb.EachOf(t, testdb.Kinds(false), func(t *testing.T, db *testdb.DB) {
		rs := run(t, db, Config{Workload: Keys, Workers: 4, Rounds: 1, Strategies: []string{GetOrCreate}})
		assertHeld(t, db, rs[GetOrCreate])
		if got := rs[GetOrCreate].Attempted; got != 4*keysPerRound {
			t.Errorf("attempted %d, want %d", got, 4*keysPerRound)
		}
	})
}

// TestInTx runs each operation inside a caller's transaction whose snapshot
// a first SELECT pinned, at the isolation where each database is hardest.
func TestInTx(t *testing.T) {
	testdb.EachOf(t, testdb.Kinds(false), func(t *testing.T, db *testdb.DB) {
		iso := map[string]string{"postgres": "serializable", "mysql": "rr", "sqlite": ""}[db.Kind]
		for _, procs := range procCounts() {
			t.Run(fmt.Sprintf("procs=%d", procs), func(t *testing.T) {
				rs := run(t, db, Config{Workload: Storm, Procs: procs, Rounds: 20, InTx: true, Isolation: iso,
					Strategies: []string{Naive, InsertCatch, GetOrCreate}})
				assertHeld(t, db, rs[GetOrCreate])
				switch db.Kind {
				case "sqlite":
					// Every transaction is BEGIN IMMEDIATE: callers run
					// one at a time, and nothing can race.
					assertHeld(t, db, rs[Naive])
					assertHeld(t, db, rs[InsertCatch])
				case "mysql":
					// REPEATABLE READ: the SELECT after the duplicate-key
					// error reads the pinned snapshot and finds nothing
					// (MY-8): Django's algorithm re-raises.
					if rs[InsertCatch].Errors["not-found-after-duplicate"] == 0 {
						t.Errorf("insert-catch at REPEATABLE READ in a transaction did not fail: %+v", rs[InsertCatch])
					}
					if !failed(rs[Naive]) {
						t.Errorf("naive showed no race: %+v", rs[Naive])
					}
				case "postgres":
					// SERIALIZABLE: the losers' INSERTs fail (40001, or
					// 23505 then an empty SELECT); the library returns a
					// retryable error and RunTx retries the transaction.
					if !failed(rs[InsertCatch]) || !failed(rs[Naive]) {
						t.Errorf("naive or insert-catch showed no race: %+v / %+v", rs[Naive], rs[InsertCatch])
					}
					if rs[GetOrCreate].Retries == 0 {
						t.Errorf("getorcreate needed no retry at SERIALIZABLE; the race did not happen: %+v", rs[GetOrCreate])
					}
				}
			})
		}
	})
}

// TestInTxCounter: under MariaDB's REPEATABLE READ a read-modify-write in a
// transaction still loses updates (Hermitage P4); PostgreSQL REPEATABLE
// READ refuses the stale write instead. getorcreate loses nothing on both.
func TestInTxCounter(t *testing.T) {
	testdb.EachOf(t, []string{"postgres", "mysql"}, func(t *testing.T, db *testdb.DB) {
		rs := run(t, db, Config{Workload: Counter, Rounds: 5, InTx: true, Isolation: "rr",
			Strategies: []string{ReadModifyWrite, GetOrCreate}})
		assertHeld(t, db, rs[GetOrCreate])
		rmw := rs[ReadModifyWrite]
		switch db.Kind {
		case "mysql":
			if rmw.LostUpdates <= 0 {
				t.Errorf("read-modify-write at REPEATABLE READ lost no update: %+v", rmw)
			}
		case "postgres":
			if rmw.LostUpdates != 0 || rmw.Errors["serialization"] == 0 {
				t.Errorf("read-modify-write at PostgreSQL REPEATABLE READ: want serialization failures and no lost update, got %+v", rmw)
			}
		}
	})
}

// TestInterrupted cancels a run after its first round: Run must return and
// leave no scratch table behind.
func TestInterrupted(t *testing.T) {
	testdb.EachOf(t, testdb.Kinds(false), func(t *testing.T, db *testdb.DB) {
		for _, procs := range procCounts() {
			t.Run(fmt.Sprintf("procs=%d", procs), func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				var mu sync.Mutex
				var tables []string
				cfg := Config{DSN: db.DSN, Workload: Storm, Workers: 4, Procs: procs, Rounds: 1000,
					Progress: func(Progress) { cancel() },
					onTable: func(name string) {
						mu.Lock()
						defer mu.Unlock()
						tables = append(tables, name)
					}}
				if _, err := Run(ctx, cfg); err == nil {
					t.Fatal("an interrupted run returned no error")
				}
				assertDropped(t, db, tables)
			})
		}
	})
}

func TestBadInput(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no dsn", Config{Workers: 1}, "no database"},
		{"malformed dsn", Config{DSN: "postgres//nope", Workers: 1}, "bad DSN"},
		{"memory sqlite", Config{DSN: "sqlite::memory:", Workers: 1}, "file path"},
		{"unreachable", Config{DSN: "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2", Workers: 1}, "cannot reach"},
		{"zero workers", Config{DSN: "sqlite:x.db", Workers: 0}, "--workers"},
		{"negative duration", Config{DSN: "sqlite:x.db", Workers: 1, Duration: -1}, "--duration"},
		{"both", Config{DSN: "sqlite:x.db", Workers: 1, Duration: 1, Rounds: 1}, "not both"},
		{"procs", Config{DSN: "sqlite:x.db", Workers: 2, Procs: 3}, "--procs"},
		{"workload", Config{DSN: "sqlite:x.db", Workers: 1, Workload: "stampede"}, "workload"},
		{"strategy", Config{DSN: "sqlite:x.db", Workers: 1, Strategies: []string{"naive", "magic"}}, "strategy"},
		{"isolation", Config{DSN: "sqlite:x.db", Workers: 1, Isolation: "snapshot"}, "isolation"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Run(context.Background(), c.cfg)
			if !IsUsage(err) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want a usage error mentioning %q", err, c.want)
			}
			if err != nil && strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestJSONFields(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJSON(&b, []Report{{Strategy: Naive}}); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	want := []string{"strategy", "workload", "db", "workers", "procs", "isolation", "in_tx", "attempted", "ok", "ops_per_sec", "p50_ms", "p99_ms", "duplicates", "lost_updates", "created_flag_errors", "errors"}
	var got []string
	for k := range m {
		got = append(got, k)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("JSON fields %v, want exactly %v", got, want)
	}
	if _, ok := m["errors"].(map[string]any); !ok {
		t.Errorf("errors is %T, want an object", m["errors"])
	}
}

// TestOpsDeterministic: every process must compute the same plan for a
// worker and round, or a storm round would not share its key.
func TestOpsDeterministic(t *testing.T) {
	for _, wl := range Workloads {
		a, _ := ops(wl, 7, 3, 5)
		b, _ := ops(wl, 7, 3, 5)
		if !slices.Equal(a, b) {
			t.Errorf("%s: ops differ between calls", wl)
		}
	}
	s1, _ := ops(Storm, 7, 1, 2)
	s2, _ := ops(Storm, 7, 9, 2)
	if !slices.Equal(s1, s2) {
		t.Error("storm workers of one round got different keys")
	}
}

// TestMySQLPaths races getorcreate's MySQL statements (no RETURNING),
// which real MySQL 8 takes, on MariaDB, in one process and across four, on
// its own and inside REPEATABLE READ transactions.
func TestMySQLPaths(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the MySQL paths race in the full run")
	}
	testdb.EachOf(t, []string{"mysql"}, func(t *testing.T, db *testdb.DB) {
		for _, procs := range procCounts() {
			for _, wl := range []string{Storm, Counter} {
				for _, inTx := range []bool{false, true} {
					t.Run(fmt.Sprintf("%s/procs=%d/in-tx=%v", wl, procs, inTx), func(t *testing.T) {
						rounds := map[string]int{Storm: 15, Counter: 3}[wl]
						rs := run(t, db, Config{Workload: wl, Procs: procs, Rounds: rounds, InTx: inTx, Isolation: "rr",
							Strategies: []string{GetOrCreate}, mysqlPaths: true})
						assertHeld(t, db, rs[GetOrCreate])
					})
				}
			}
		}
	})
}
