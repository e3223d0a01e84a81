package loadgen_test

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/getorcreate/getorcreate/cmd/internal/loadgen"
	"github.com/getorcreate/getorcreate/cmd/internal/tagd"
	"github.com/getorcreate/getorcreate/internal/dsn"
)

// TestRun runs a tiny load on a SQLite file: every acknowledged submission
// must be in the stored counts, none may fail, and the tables must be gone
// afterwards.
func TestRun(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "load.db")
	var errs bytes.Buffer
	res, err := loadgen.Run(ctx, loadgen.Config{
		DSN: "sqlite:" + path, Clients: 4, Duration: 300 * time.Millisecond, Keys: 20, Rounds: 2,
		Errors: &errs,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.ServeErr != nil {
		t.Errorf("tagd: %v", res.ServeErr)
	}
	if len(res.Ratios) != 2 {
		t.Errorf("%d ratios, want 2", len(res.Ratios))
	}
	for _, p := range []loadgen.Phase{res.Library, res.HTTP} {
		t.Logf("%s: %d ok, %d failed, %.0f/s, p50 %v, p99 %v: %s", p.Name, p.OK, p.Failed, p.Rate(), p.Percentile(0.5), p.Percentile(0.99), p.Check())
		if p.OK == 0 || p.Failed != 0 || len(p.Latencies) != p.OK {
			t.Errorf("%s: %d ok, %d failed, %d latencies", p.Name, p.OK, p.Failed, len(p.Latencies))
		}
		if !p.Checked || p.CheckErr != nil || p.Stored != int64(p.OK) {
			t.Errorf("%s: stored %d, acknowledged %d, check error %v (checked %v)", p.Name, p.Stored, p.OK, p.CheckErr, p.Checked)
		}
		if p.Check() != "counts == acknowledged" {
			t.Errorf("%s: check %q", p.Name, p.Check())
		}
	}
	if errs.Len() > 0 {
		t.Errorf("failures reported:\n%s", errs.String())
	}

	db, _, err := dsn.Open(ctx, "sqlite:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var left int
	if err := db.QueryRow("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name LIKE 'tagload_%'").Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d tagload tables left after the run", left)
	}
}

func TestPhasePercentile(t *testing.T) {
	var p loadgen.Phase
	if p.Percentile(0.5) != 0 {
		t.Error("percentile of no latencies is not 0")
	}
	for i := range 100 {
		p.Latencies = append(p.Latencies, time.Duration(i+1)*time.Millisecond)
	}
	if got := p.Percentile(0.50); got != 51*time.Millisecond {
		t.Errorf("p50 %v", got)
	}
	if got := p.Percentile(0.99); got != 100*time.Millisecond {
		t.Errorf("p99 %v", got)
	}
	if got := p.Percentile(1); got != 100*time.Millisecond {
		t.Errorf("p100 %v", got)
	}
}

// TestRunURLChecked loads a tagd of its own at a URL, as a benchmark of two
// tagd processes does: with the tagd's table prefix its counts are checked
// (as their rise over the run, on a table that already holds counts), and
// with HTTPOnly no library phase runs.
func TestRunURLChecked(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := "sqlite:" + filepath.Join(t.TempDir(), "url.db")
	ready := make(chan string, 1)
	served := make(chan error, 1)
	go func() {
		served <- tagd.Run(ctx, tagd.Config{DSN: d, Addr: "127.0.0.1:0", TablePrefix: "srv_",
			Ready: func(a net.Addr) { ready <- a.String() }})
	}()
	var url string
	select {
	case a := <-ready:
		url = "http://" + a
	case err := <-served:
		t.Fatal(err)
	}
	cfg := loadgen.Config{DSN: d, Clients: 4, Duration: 200 * time.Millisecond, Keys: 10, Rounds: 2,
		URL: url, TablePrefix: "srv_", HTTPOnly: true}
	for run := range 2 { // the second run starts from the first one's counts
		res, err := loadgen.Run(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if res.Library.OK != 0 || len(res.Ratios) != 0 || res.Ratio() != 0 {
			t.Errorf("run %d: a library phase ran: %d ok, ratios %v", run, res.Library.OK, res.Ratios)
		}
		p := res.HTTP
		if p.OK == 0 || p.Failed != 0 || p.Check() != "counts == acknowledged" {
			t.Errorf("run %d: %d ok, %d failed: %s", run, p.OK, p.Failed, p.Check())
		}
	}
	if _, err := loadgen.Run(ctx, loadgen.Config{DSN: d, Clients: 1, Duration: time.Millisecond, Keys: 1, Rounds: 1, TablePrefix: "srv_"}); err == nil {
		t.Error("a table prefix without a URL was accepted")
	}
	cancel()
	if err := <-served; err != nil {
		t.Errorf("tagd: %v", err)
	}
}
