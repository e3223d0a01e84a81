package clustertest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"
)

// tagd processes for the cluster tests: the cmd/tagd binary, built once
// per test binary, started with --db (and --db-replica) of a cluster.

var (
	tagdOnce sync.Once
	tagdBin  string
	tagdErr  error
)

func tagdBinary(t *testing.T) string {
	t.Helper()
	tagdOnce.Do(func() {
		dir, err := os.MkdirTemp("", "goc-tagd-bin")
		if err != nil {
			tagdErr = err
			return
		}
		tagdBin = filepath.Join(dir, "tagd")
		cmd := exec.Command("go", "build", "-o", tagdBin, "./cmd/tagd")
		cmd.Dir = "../.."
		if out, err := cmd.CombinedOutput(); err != nil {
			tagdErr = fmt.Errorf("go build ./cmd/tagd: %v\n%s", err, out)
		}
	})
	if tagdErr != nil {
		t.Fatal(tagdErr)
	}
	return tagdBin
}

// tagdProc is one running tagd.
type tagdProc struct {
	url string
	cmd *exec.Cmd
}

var listening = regexp.MustCompile(`msg="tagd listening" addr=(\S+)`)

// startTagd starts a tagd on the DSN with the table prefix and waits until
// it listens; it is stopped (SIGTERM) when t ends.
func startTagd(t *testing.T, dsn, prefix string, args ...string) *tagdProc {
	t.Helper()
	cmd := exec.Command(tagdBinary(t), append([]string{"--db", dsn, "--addr", "127.0.0.1:0", "--table-prefix", prefix, "--db-max-conns", "16"}, args...)...)
	logPath := filepath.Join(t.TempDir(), "tagd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &tagdProc{cmd: cmd}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, line)
			if m := listening.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		logf.Close()
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("tagd log (%s):\n%s", dsn, lastLines(string(b), 30))
		}
	})
	select {
	case a := <-addr:
		p.url = "http://" + a
	case <-time.After(60 * time.Second):
		b, _ := os.ReadFile(logPath)
		t.Fatalf("tagd did not listen within 60 s:\n%s", b)
	}
	return p
}

func lastLines(s string, n int) string {
	lines := regexp.MustCompile("\n").Split(s, -1)
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var b bytes.Buffer
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	return b.String()
}

// tagdPrefix is a fresh table prefix; its tables are dropped through db
// when t ends (after the processes stopped: cleanups run last-in first-out).
func tagdPrefix(t *testing.T, db func() *sql.DB) string {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	prefix := "goc_t" + hex.EncodeToString(b) + "_"
	t.Cleanup(func() {
		for _, tb := range []string{"tag_minutes", "item_tags", "tags", "tagd_requests", "tagd_schema"} {
			db().Exec("DROP TABLE IF EXISTS " + prefix + tb)
		}
	})
	return prefix
}

// httpError is a tagd answer other than 200 or 201.
type httpError struct {
	status int
	code   string
}

func (e *httpError) Error() string { return fmt.Sprintf("HTTP %d %s", e.status, e.code) }

var httpClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// submit posts a tag, with an Idempotency-Key when key is set, and reports
// whether this request created it.
func (p *tagdProc) submit(ctx context.Context, name, key string) (created bool, count int64, err error) {
	body, _ := json.Marshal(map[string]string{"name": name})
	req, err := http.NewRequestWithContext(ctx, "POST", p.url+"/api/tags", bytes.NewReader(body))
	if err != nil {
		return false, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return false, 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 && resp.StatusCode != 201 {
		var e struct {
			Error struct {
				Code string `json:"code"`
			} `json:"error"`
			Code string `json:"code"`
		}
		json.Unmarshal(b, &e)
		code := e.Error.Code
		if code == "" {
			code = e.Code
		}
		return false, 0, &httpError{resp.StatusCode, code}
	}
	var tg struct {
		Count   int64 `json:"count"`
		Created bool  `json:"created"`
	}
	if err := json.Unmarshal(b, &tg); err != nil {
		return false, 0, fmt.Errorf("tagd answered %d with %q: %w", resp.StatusCode, b, err)
	}
	return resp.StatusCode == 201, tg.Count, nil
}

// resendable: what tagd documents as safe to send again with the same
// Idempotency-Key: 503 database_unavailable and 409 idempotency_key_in_use.
func resendable(err error) bool {
	var he *httpError
	return errors.As(err, &he) && (he.status == 503 || he.status == 409)
}

// TestTagdFailover: two tagd processes on the multi-host DSN (the second
// also with --db-replica on the standby), 20 HTTP clients posting one tag
// with an Idempotency-Key each and resending it until acknowledged, while
// the primary is killed -9 and the standby promoted. The tag's count must
// equal the keys tagd recorded and the acknowledged keys (none lost with
// synchronous replication, none applied twice in either mode), and every
// answer but 200/201 must be one tagd documents as safe to resend.
func TestTagdFailover(t *testing.T) {
	mode := env(t, "GETORCREATE_PGREPL_MODE", pgreplHow)
	multi := env(t, "GETORCREATE_PGREPL", pgreplHow)
	standby := env(t, "GETORCREATE_PGREPL_STANDBY", pgreplHow+" (a standby to promote)")
	env(t, "GETORCREATE_CLUSTER_BIN", pgreplHow)
	var check *sql.DB
	prefix := tagdPrefix(t, func() *sql.DB { return check })
	check = open(t, multi)
	procs := []*tagdProc{startTagd(t, multi, prefix), startTagd(t, multi, prefix, "--db-replica", standby)}
	// The replica's tag lookups: a tag just created is found (on the
	// primary, when the standby has not replayed it yet).
	if _, _, err := procs[0].submit(context.Background(), "warmup", ""); err != nil {
		t.Fatal(err)
	}
	resp, err := httpClient.Get(procs[1].url + "/api/tags/warmup")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET through --db-replica of a tag just created: %v %v", resp, err)
	}
	resp.Body.Close()

	var killTook, promoteTook time.Duration
	res := failoverRun(t, 20, func(ctx context.Context, id string) error {
		p := procs[int(id[2]-'0')%len(procs)] // ids are cNN-SEQ: caller NN's process
		_, _, err := p.submit(ctx, "hot", id)
		return err
	}, resendable, func() time.Time {
		killTook = script(t, "pgrepl", "kill-primary")
		dead := time.Now()
		promoteTook = script(t, "pgrepl", "promote")
		return dead
	})
	check = open(t, multi)
	var count, keys int
	if err := check.QueryRow("SELECT (SELECT count FROM "+prefix+"tags WHERE tag_key = 'hot'), (SELECT COUNT(*) FROM "+prefix+"tagd_requests)").Scan(&count, &keys); err != nil {
		t.Fatal(err)
	}
	lost := len(res.acked) - keys // every key stored was acknowledged (clients resend until it is)
	report(t, "tagd x2 on PostgreSQL 15 primary + %s standby (one with --db-replica), kill -9 of the primary, promote | 20 HTTP clients, POST /api/tags with Idempotency-Key, resent until acknowledged | acknowledged %d (%d before the kill), keys stored %d, count %d, acknowledged lost %d, applied twice %d | answers other than 200/201: %s; not safe to resend %d | kill %.1fs, promote %.1fs; recovery %.1fs; longest gap %.1fs | run %.1fs",
		mode, len(res.acked), res.beforeKill, keys, count, lost, count-keys, res.errs.String(), len(res.untyped), killTook.Seconds(), promoteTook.Seconds(), res.recovery.Seconds(), res.maxGap.Seconds(), res.elapsed.Seconds())
	if len(res.untyped) > 0 {
		t.Errorf("%d answers were not safe to resend; first: %v", len(res.untyped), res.untyped[0])
	}
	if count != keys {
		t.Errorf("count %d, %d keys stored: a submission applied twice or without its key", count, keys)
	}
	if mode == "sync" && lost != 0 {
		t.Errorf("synchronous replication lost %d acknowledged submissions", lost)
	}
	if res.recovery == 0 {
		t.Errorf("no submission sent after the kill was acknowledged")
	}
}

// TestTagdGalera: three tagd processes, one on each Galera node, and 48
// HTTP clients spread over them posting one new tag at once, round after
// round: exactly one 201 per tag, its count 48, no other answer.
func TestTagdGalera(t *testing.T) {
	dsns := galeraNodes(t, "")
	check := checkDB(t)
	prefix := tagdPrefix(t, func() *sql.DB { return check })
	var procs []*tagdProc
	for _, d := range dsns {
		// Coalescing off: with it (tagd's default) one node's coalesced
		// minute calls stalled until their 5-s deadline in every round
		// (2026-12-01 14:58Z and 15:01Z: 79 answers 503, no statement
		// in flight on any node while they waited), a defect not yet
		// understood; see docs/SCALING.md.
		procs = append(procs, startTagd(t, d, prefix, "--coalesce=false"))
	}
	const clients, rounds = 48, 5
	var errs errorsSeen
	start := time.Now()
	for r := range rounds {
		name := fmt.Sprintf("new-%d", r)
		created := make([]bool, clients)
		barrier(clients, func(i int) {
			c, _, err := procs[i%3].submit(context.Background(), name, "")
			if err != nil {
				errs.add(err)
			}
			created[i] = c
		})
		n := 0
		for _, c := range created {
			if c {
				n++
			}
		}
		var count int64
		if err := check.QueryRow("SELECT count FROM "+prefix+"tags WHERE tag_key = ?", name).Scan(&count); err != nil {
			t.Fatal(err)
		}
		if n != 1 || count != clients {
			t.Errorf("%s: %d answers 201, count %d; want 1, %d", name, n, count, clients)
		}
	}
	if errs.total() > 0 {
		t.Errorf("answers other than 200/201: %v (first %v)", errs.String(), errs.first)
	}
	report(t, "tagd x3, one per Galera node | %d HTTP clients on one new tag, %d rounds | one 201 per tag, count %d each; other answers: %s | %.1fs", clients, rounds, clients, errs.String(), time.Since(start).Seconds())
}
