package clustertest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getorcreate/getorcreate"
	"github.com/getorcreate/getorcreate/internal/dsn"
)

// tag is the row every cluster test writes.
type tag struct {
	ID    int64  `db:"id"`
	Name  string `db:"name"`
	Count int64  `db:"count"`
}

var tagDDL = map[string]string{
	"postgres": `CREATE TABLE %s (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE, count BIGINT NOT NULL DEFAULT 0)`,
	"mysql":    `CREATE TABLE %s (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(64) NOT NULL UNIQUE, count BIGINT NOT NULL DEFAULT 0) ENGINE=InnoDB`,
}

// env returns the variable's value or skips t, saying what to run.
func env(t testing.TB, name, how string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		t.Skipf("%s is not set: %s, then eval \"$(bash .ci/cluster/env)\" (see internal/clustertest)", name, how)
	}
	return v
}

// open opens a project DSN, closed when t ends.
func open(t testing.TB, s string) *sql.DB {
	t.Helper()
	db, _, err := dsn.Open(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// newTable creates a fresh table through db (of kind) and drops it when t
// ends.
func newTable(t testing.TB, db *sql.DB, kind string) string {
	t.Helper()
	b := make([]byte, 5)
	rand.Read(b)
	name := "goc_cl_" + hex.EncodeToString(b)
	if _, err := db.Exec(fmt.Sprintf(tagDDL[kind], name)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Exec("DROP TABLE IF EXISTS " + name) })
	return name
}

func openTable(t testing.TB, db *sql.DB, cfg getorcreate.Config) *getorcreate.Table[tag] {
	t.Helper()
	if cfg.Key == nil {
		cfg.Key = []string{"name"}
	}
	tags, err := getorcreate.OpenConfig[tag](context.Background(), db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tags
}

// script runs one of the .ci/cluster scripts and returns how long it took.
func script(t testing.TB, name string, args ...string) time.Duration {
	t.Helper()
	bin := env(t, "GETORCREATE_CLUSTER_BIN", "the scripts' directory")
	start := time.Now()
	cmd := exec.Command("bash", append([]string{bin + "/" + name}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	t.Logf("%s %s: %s", name, strings.Join(args, " "), strings.TrimSpace(string(out)))
	return time.Since(start)
}

// report prints a measurement for docs/SCALING.md.
func report(t testing.TB, format string, args ...any) {
	t.Helper()
	t.Logf("SCALING | %s | "+format, append([]any{time.Now().UTC().Format("2006-01-02 15:04Z")}, args...)...)
}

// retries counts the kinds of errors the library retried, from its Tracer.
type retries struct {
	mu    sync.Mutex
	kinds map[string]int
	calls atomic.Int64
	paths sync.Map // getorcreate.Path -> *atomic.Int64
	stmts atomic.Int64
}

func (r *retries) TraceCallStart(ctx context.Context, _ getorcreate.TraceCallStartData) context.Context {
	return ctx
}

func (r *retries) TraceCallEnd(_ context.Context, d getorcreate.TraceCallEndData) {
	r.calls.Add(1)
	r.stmts.Add(int64(d.Statements))
	v, _ := r.paths.LoadOrStore(d.Path, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
	if len(d.Retries) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.kinds == nil {
		r.kinds = map[string]int{}
	}
	for _, e := range d.Retries {
		r.kinds[fmt.Sprint(e)]++
	}
}

func (r *retries) path(p getorcreate.Path) int64 {
	if v, ok := r.paths.Load(p); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

func (r *retries) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return countsString(r.kinds)
}

// countsString writes counts by name as "a=1, b=2", or "none".
func countsString(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for k, n := range m {
		parts = append(parts, fmt.Sprintf("%s=%d", k, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// errorsSeen counts the errors that reached callers, by kind.
type errorsSeen struct {
	mu    sync.Mutex
	kinds map[string]int
	first error
}

func (e *errorsSeen) add(err error) {
	if err == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.kinds == nil {
		e.kinds = map[string]int{}
	}
	k := "unclassified"
	var he *httpError
	if errors.As(err, &he) {
		k = he.Error()
	} else if kind := getorcreate.Kind(err); kind != nil {
		k = kind.Error()
		if errors.Is(err, getorcreate.ErrIndeterminate) {
			k = "indeterminate"
		} else if errors.Is(err, getorcreate.ErrConnection) {
			k = "connection"
		}
	}
	e.kinds[k]++
	if e.first == nil {
		e.first = err
	}
}

func (e *errorsSeen) total() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, v := range e.kinds {
		n += v
	}
	return n
}

func (e *errorsSeen) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return countsString(e.kinds)
}

// barrier starts n goroutines at once and waits for them all.
func barrier(n int, fn func(i int)) {
	var ready, done sync.WaitGroup
	gate := make(chan struct{})
	ready.Add(n)
	done.Add(n)
	for i := range n {
		go func() {
			defer done.Done()
			ready.Done()
			<-gate
			fn(i)
		}()
	}
	ready.Wait()
	close(gate)
	done.Wait()
}

// ledgerTable creates a table and its ledger through db and opens the
// table with it, for UpdateOrCreateOnce.
func ledgerTable(t testing.TB, db *sql.DB, kind string, cfg getorcreate.Config) (*getorcreate.Table[tag], string) {
	t.Helper()
	table := newTable(t, db, kind)
	ledger, err := getorcreate.CreateLedger(context.Background(), db, table+"_ledger")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Exec("DROP TABLE IF EXISTS " + table + "_ledger") })
	cfg.Table, cfg.Ledger = table, ledger
	return openTable(t, db, cfg), table
}
