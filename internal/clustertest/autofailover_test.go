package clustertest

import (
	"context"
	"os/exec"
	"regexp"
	"testing"
	"time"

	"github.com/getorcreate/getorcreate"
)

const pafHow = "bash .ci/cluster/pgautofailover up"

// TestAutoFailoverOnce is TestFailoverOnce under pg_auto_failover: the
// primary's pg_autoctl and PostgreSQL are killed -9 and the monitor
// promotes the secondary by itself; the callers follow through the
// multi-host DSN. Its replication is synchronous (pg_auto_failover's
// default with a secondary): no acknowledged request may be lost.
func TestAutoFailoverOnce(t *testing.T) {
	multi := env(t, "GETORCREATE_PGAUTOFAILOVER", pafHow)
	bin := env(t, "GETORCREATE_CLUSTER_BIN", pafHow)
	out, err := exec.Command("bash", bin+"/pgautofailover", "status").CombinedOutput()
	if err != nil {
		t.Fatalf("pgautofailover status: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`primary: node([12])`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no primary in:\n%s", out)
	}
	primary := string(m[1])
	db := open(t, multi)
	tags, table := ledgerTable(t, db, "postgres", getorcreate.Config{})
	var killTook time.Duration
	res := failoverRun(t, 20, func(ctx context.Context, id string) error {
		_, err := tags.UpdateOrCreateOnce(ctx, id, tag{Name: "hot", Count: 1}, getorcreate.Add("count", 1))
		return err
	}, nil, func() time.Time {
		killTook = script(t, "pgautofailover", "kill", primary)
		return time.Now()
	})
	lost, stored, count := checkLedger(t, open(t, multi), table, res.acked)
	report(t, "pg_auto_failover 2.0, monitor + 2 nodes, kill -9 of the primary node (pg_autoctl and PostgreSQL), the monitor promotes | 20 callers, UpdateOrCreateOnce with request ids | acknowledged %d (%d before the kill), stored %d, count %d, acknowledged lost %d, applied twice %d | errors to callers: %s; untyped %d | kill %.1fs; recovery (primary dead to the first acknowledgement of a call sent after that) %.1fs; longest gap %.1fs | run %.1fs",
		len(res.acked), res.beforeKill, stored, count, lost, count-stored, res.errs.String(), len(res.untyped), killTook.Seconds(), res.recovery.Seconds(), res.maxGap.Seconds(), res.elapsed.Seconds())
	if len(res.untyped) > 0 {
		t.Errorf("%d errors did not match ErrConnection, first: %v", len(res.untyped), res.untyped[0])
	}
	if lost != 0 || count != stored || stored != len(res.acked) {
		t.Errorf("acknowledged %d, stored %d, count %d, lost %d: want none lost, one increment per stored id", len(res.acked), stored, count, lost)
	}
	if res.recovery == 0 {
		t.Errorf("no call sent after the kill was acknowledged")
	}
	script(t, "pgautofailover", "start", primary)
}
