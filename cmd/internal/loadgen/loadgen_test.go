package loadgen_test

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/getorcreate/getorcreate/cmd/internal/loadgen"
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
