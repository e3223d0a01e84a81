package tagd_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/getorcreate/getorcreate/cmd/internal/tagd"
	"github.com/getorcreate/getorcreate/internal/testdb"
)

// The test binary doubles as a tagd process: re-executed with
// TAGD_TEST_CHILD set, it runs tagd.Run (what cmd/tagd runs) until SIGTERM.
func TestMain(m *testing.M) {
	if os.Getenv("TAGD_TEST_CHILD") != "" {
		os.Exit(child())
	}
	os.Exit(m.Run())
}

func child() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cfg := tagd.Config{
		DSN:         os.Getenv("TAGD_TEST_DSN"),
		Addr:        "127.0.0.1:0",
		TablePrefix: os.Getenv("TAGD_TEST_PREFIX"),
		MaxConns:    12, // 3 processes stay well under the servers' connection limits
		DrainTime:   drainTime,
		Ready:       func(a net.Addr) { fmt.Printf("LISTENING %s\n", a) },
	}
	// The tests count answers, not latency: SQLite's three processes
	// queue for one writer, and on a loaded machine a stampede's last
	// transactions waited past the 5-s default (CI at 13:17Z: four PUTs
	// answered 503 after 5.0 s).
	cfg.DBTimeout = 30 * time.Second
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := tagd.Run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	fmt.Fprintln(os.Stderr, "child: clean shutdown")
	return 0
}

// drainTime is the child processes' drain on SIGTERM.
const drainTime = time.Second

type proc struct {
	cmd  *exec.Cmd
	url  string
	done chan struct{} // closed when the process has exited, with err set
	err  error
	log  string
}

// startProc starts a tagd process on dsn and waits until it listens.
func startProc(t *testing.T, dsn, pfx string) *proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "tagd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "TAGD_TEST_CHILD=1", "TAGD_TEST_DSN="+dsn, "TAGD_TEST_PREFIX="+pfx)
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{}), log: logPath}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "LISTENING "); ok {
				addr <- a
			}
		}
		io.Copy(io.Discard, out)
	}()
	go func() { p.err = cmd.Wait(); logf.Close(); close(p.done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Errorf("tagd process %d did not exit 10 s after SIGKILL", cmd.Process.Pid)
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("tagd process %d log:\n%s", cmd.Process.Pid, b)
		}
	})
	select {
	case a := <-addr:
		p.url = "http://" + a
	case <-p.done:
		b, _ := os.ReadFile(logPath)
		t.Fatalf("tagd process exited before listening: %v\n%s", p.err, b)
	case <-time.After(60 * time.Second):
		t.Fatal("tagd process did not start listening within 60s")
	}
	return p
}

func client(conns int) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}}
}

// rowsOf reads every tag of the prefix straight from the database.
func rowsOf(t *testing.T, d *testdb.DB, pfx string) map[string]tagd.Tag {
	t.Helper()
	rows, err := d.SQL.Query("SELECT id, tag_key, name, count FROM " + pfx + "tags")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]tagd.Tag{}
	for rows.Next() {
		var tg tagd.Tag
		if err := rows.Scan(&tg.ID, &tg.Key, &tg.Name, &tg.Count); err != nil {
			t.Fatal(err)
		}
		if _, dup := out[tg.Key]; dup {
			t.Fatalf("two rows for key %q", tg.Key)
		}
		out[tg.Key] = tg
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func dropTables(d *testdb.DB, pfx string) {
	for _, tb := range tagd.TableNames(pfx) {
		d.SQL.Exec("DROP TABLE IF EXISTS " + tb)
	}
}

// TestProcessesStampede runs 3 tagd processes on one PostgreSQL database
// (and one MariaDB database, and one SQLite file), started together so they
// also race on the migration, and sends 64 clients at them at once with the
// same new tags in different spellings, then the same item tags. Every tag
// must have exactly one row, exactly one 201, and a count equal to the
// number of 2xx answers.
func TestProcessesStampede(t *testing.T) {
	testdb.EachOf(t, []string{"sqlite", "postgres", "mysql"}, func(t *testing.T, d *testdb.DB) {
		pfx := prefix()
		t.Cleanup(func() { dropTables(d, pfx) })
		procs := make([]*proc, 3)
		var wg sync.WaitGroup
		for i := range procs {
			wg.Go(func() { procs[i] = startProc(t, d.DSN, pfx) })
		}
		wg.Wait()
		for _, p := range procs {
			if p == nil {
				t.FailNow()
			}
		}

		const clients = 64
		tags := 6
		if testing.Short() {
			tags = 3
		}
		run := fmt.Sprintf("%x", time.Now().UnixNano())
		key := func(i int) string { return fmt.Sprintf("stampede %s %d", run, i) }
		spell := func(i, c int) string {
			switch c % 3 {
			case 0:
				return strings.ToUpper(key(i))
			case 1:
				return "  " + strings.ReplaceAll(key(i), " ", "   ") + " "
			}
			return key(i)
		}
		var (
			mu      sync.Mutex
			ok      = map[string]int{}   // 2xx answers per key
			created = map[string]int{}   // 201 answers per key
			ids     = map[string]int64{} // the id every answer must agree on
			other   []string
		)
		hc := client(clients)
		start := make(chan struct{})
		for c := range clients {
			wg.Go(func() {
				base := procs[c%len(procs)].url
				// Open the connection before the barrier, so the POSTs
				// leave together instead of behind 64 TCP handshakes.
				if res, err := hc.Get(base + "/healthz"); err == nil {
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
				}
				<-start
				for i := range tags {
					b, _ := json.Marshal(map[string]string{"name": spell(i, c)})
					res, err := hc.Post(base+"/api/tags", "application/json", strings.NewReader(string(b)))
					if err != nil {
						mu.Lock()
						other = append(other, err.Error())
						mu.Unlock()
						continue
					}
					var a tagd.TagAnswer
					json.NewDecoder(res.Body).Decode(&a)
					res.Body.Close()
					mu.Lock()
					switch {
					case res.StatusCode == 200 || res.StatusCode == 201:
						ok[a.Key]++
						if res.StatusCode == 201 {
							created[a.Key]++
						}
						if id, seen := ids[a.Key]; seen && id != a.ID {
							other = append(other, fmt.Sprintf("key %q answered with ids %d and %d", a.Key, id, a.ID))
						}
						ids[a.Key] = a.ID
					default:
						other = append(other, fmt.Sprintf("status %d", res.StatusCode))
					}
					mu.Unlock()
				}
			})
		}
		close(start)
		wg.Wait()

		// putAll has every client PUT tags to item(c), all at once, and
		// counts per key the answers that attached and that created it.
		putAll := func(item func(c int) string, tags []string) (attached, created map[string]int) {
			body, _ := json.Marshal(map[string][]string{"tags": tags})
			attached, created = map[string]int{}, map[string]int{}
			start := make(chan struct{})
			for c := range clients {
				wg.Go(func() {
					base := procs[c%len(procs)].url
					<-start
					req, _ := http.NewRequest("PUT", base+"/api/items/"+item(c)+"/tags", strings.NewReader(string(body)))
					req.Header.Set("Content-Type", "application/json")
					res, err := hc.Do(req)
					if err != nil {
						mu.Lock()
						other = append(other, err.Error())
						mu.Unlock()
						return
					}
					var a tagd.ItemAnswer
					json.NewDecoder(res.Body).Decode(&a)
					res.Body.Close()
					mu.Lock()
					defer mu.Unlock()
					if res.StatusCode != 200 {
						other = append(other, fmt.Sprintf("PUT status %d", res.StatusCode))
						return
					}
					for _, tg := range a.Tags {
						if tg.Attached {
							attached[tg.Key]++
						}
						if tg.Created {
							created[tg.Key]++
						}
					}
				})
			}
			close(start)
			wg.Wait()
			return attached, created
		}
		// All clients attach the same tags to one item: two new tags and two
		// from above. Each tag must count once, whoever wins.
		itemTags := []string{"fresh " + run + " a", "FRESH " + run + " b", key(0), strings.ToUpper(key(1))}
		attached, putCreated := putAll(func(int) string { return "item-" + run }, itemTags)
		// Every client attaches the same tags to an item of its own: the
		// transactions overlap on the tag rows in every order the database
		// allows, and each must count once.
		perItem := []string{key(2), "fresh " + run + " c", strings.ToUpper(key(0))}
		attachedEach, createdEach := putAll(func(c int) string { return fmt.Sprintf("item-%s-%d", run, c) }, perItem)

		if len(other) > 0 {
			t.Errorf("%d requests failed, e.g. %q", len(other), other[0])
		}
		got := rowsOf(t, d, pfx)
		if len(got) != tags+3 {
			t.Errorf("%d rows, want %d (one per tag)", len(got), tags+3)
		}
		for i := range tags {
			k := key(i)
			want := int64(ok[k])
			switch i {
			case 0:
				want += 1 + clients // the shared item, and every client's own
			case 1:
				want++ // the shared item
			case 2:
				want += clients // every client's own item
			}
			if got[k].Count != want || created[k] != 1 {
				t.Errorf("tag %q: count %d, want %d (2xx answers %d); 201 answers %d, want 1", k, got[k].Count, want, ok[k], created[k])
			}
		}
		for _, name := range itemTags {
			k := strings.ToLower(name)
			if attached[k] != 1 {
				t.Errorf("tag %q attached by %d answers, want 1", k, attached[k])
			}
		}
		for _, k := range []string{"fresh " + run + " a", "fresh " + run + " b"} {
			if got[k].Count != 1 || putCreated[k] != 1 {
				t.Errorf("new item tag %q: count %d, created by %d answers; want 1 and 1", k, got[k].Count, putCreated[k])
			}
		}
		for _, name := range perItem {
			k := strings.ToLower(name)
			if attachedEach[k] != clients {
				t.Errorf("tag %q attached to %d of the %d own items", k, attachedEach[k], clients)
			}
		}
		if k := "fresh " + run + " c"; got[k].Count != clients || createdEach[k] != 1 {
			t.Errorf("tag %q: count %d, created by %d answers; want %d and 1", k, got[k].Count, createdEach[k], clients)
		}
		// Each tag's minutes add up to its count: the history was written in
		// the same transactions as the counts.
		minuteSums := map[int64]int64{}
		mrows, err := d.SQL.Query("SELECT tag_id, count FROM " + pfx + "tag_minutes")
		if err != nil {
			t.Fatal(err)
		}
		for mrows.Next() {
			var id, c int64
			mrows.Scan(&id, &c)
			minuteSums[id] += c
		}
		mrows.Close()
		for k, tg := range got {
			if minuteSums[tg.ID] != tg.Count {
				t.Errorf("tag %q: count %d, but its minutes add up to %d", k, tg.Count, minuteSums[tg.ID])
			}
		}
		// Each process counted its own creations; together, one per tag.
		var createdTotal, retried float64
		for _, p := range procs {
			fams := scrape(t, p.url)
			createdTotal += sample(t, fams, "tagd_getorcreate_total", map[string]string{"outcome": "created"})
			retried += sample(t, fams, "tagd_getorcreate_retried_total", nil)
		}
		// Links are not tags: only tag creations count here.
		if createdTotal != float64(tags+3) {
			t.Errorf("the processes' metrics count %v creations, want %d", createdTotal, tags+3)
		}
		t.Logf("%d clients, 3 processes: %d submissions per tag, all exact; %v calls retried", clients, ok[key(0)], retried)
	})
}

// TestShutdownLosesNothing sends SIGTERM to a tagd process under 20
// keep-alive clients: it must exit cleanly, tell the clients to close
// (Connection: close on the answers after the signal), finish the requests
// in flight, and reset none without an answer, so that every submission is
// either acknowledged and counted or was refused a connection (never sent).
func TestShutdownLosesNothing(t *testing.T) {
	testdb.Each(t, func(t *testing.T, d *testdb.DB) {
		pfx := prefix()
		t.Cleanup(func() { dropTables(d, pfx) })
		p := startProc(t, d.DSN, pfx)
		const clients = 20
		var acked [4]atomic.Int64
		var refused, sigterm, ackedLate, toldClose atomic.Int64
		var mu sync.Mutex
		var lost []string // requests that got no answer although they reached the server
		var wg sync.WaitGroup
		hc := client(clients)
		stop := make(chan struct{})
		// The row the test locks below must exist before the load starts.
		if a := postTag(t, p.url, "shutdown 0"); a.Status != 201 {
			t.Fatalf("%d %s", a.Status, a.Body)
		}
		acked[0].Add(1)
		for c := range clients {
			wg.Go(func() {
				for n := 0; ; n++ {
					select {
					case <-stop:
						return
					default:
					}
					// Half the clients submit the tag held locked below, and
					// are in flight across the signal; the others keep their
					// connections busy, and idle between answers.
					tag := 0
					if c%2 == 1 {
						tag = 1 + (c+n)%3
					}
					var reused atomic.Bool
					req, _ := http.NewRequest("POST", p.url+"/api/tags", strings.NewReader(fmt.Sprintf(`{"name":"shutdown %d"}`, tag)))
					req.Header.Set("Content-Type", "application/json")
					req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
						GotConn: func(ci httptrace.GotConnInfo) { reused.Store(ci.Reused) },
					}))
					res, err := hc.Do(req)
					if err != nil {
						at := sigterm.Load()
						afterDrain := at != 0 && time.Now().UnixNano() > at+int64(drainTime-50*time.Millisecond)
						switch {
						case errors.Is(err, syscall.ECONNREFUSED):
							refused.Add(1) // never reached the server
						case afterDrain && !reused.Load() && errors.Is(err, syscall.ECONNRESET):
							// A new connection still in the kernel's accept
							// queue when tagd closed its listener at the end
							// of the drain: the kernel resets it, and tagd
							// never saw the request (the counts below prove
							// it stored nothing unacknowledged).
							refused.Add(1)
						default:
							mu.Lock()
							lost = append(lost, err.Error())
							mu.Unlock()
						}
						time.Sleep(5 * time.Millisecond)
						continue
					}
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if res.StatusCode/100 == 2 {
						acked[tag].Add(1)
						if at := sigterm.Load(); at != 0 && time.Now().UnixNano() > at+int64(200*time.Millisecond) {
							ackedLate.Add(1)
						}
					}
					if sigterm.Load() != 0 && res.Close {
						toldClose.Add(1)
					}
				}
			})
		}
		time.Sleep(300 * time.Millisecond)
		// Hold a lock the submissions of "shutdown 0" need (on SQLite, the
		// write lock), so some are surely in flight when SIGTERM arrives;
		// they must finish and be answered after it.
		tx, err := d.SQL.Begin()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec("UPDATE " + pfx + "tags SET count = count WHERE tag_key = 'shutdown 0'"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		sigterm.Store(time.Now().UnixNano())
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		tx.Rollback()
		select {
		case <-p.done:
			if p.err != nil {
				b, _ := os.ReadFile(p.log)
				t.Fatalf("tagd did not exit cleanly after SIGTERM: %v\n%s", p.err, b)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("tagd still running 30s after SIGTERM")
		}
		close(stop)
		wg.Wait()
		if len(lost) > 0 {
			t.Errorf("%d requests reached tagd and got no answer, e.g. %q", len(lost), lost[0])
		}
		got := rowsOf(t, d, pfx)
		var total int64
		for i := range 4 {
			k := fmt.Sprintf("shutdown %d", i)
			a := acked[i].Load()
			total += a
			if got[k].Count != a {
				t.Errorf("tag %q: count %d, but %d acknowledged", k, got[k].Count, a)
			}
		}
		if total < 20 {
			t.Fatalf("only %d acknowledged submissions: the load did not run", total)
		}
		if ackedLate.Load() == 0 {
			t.Fatal("no request held across SIGTERM was answered: in-flight requests were not finished")
		}
		if toldClose.Load() == 0 {
			t.Fatal("no answer after SIGTERM said Connection: close")
		}
		b, _ := os.ReadFile(p.log)
		if !strings.Contains(string(b), "clean shutdown") {
			t.Fatalf("no clean shutdown in the log:\n%s", b)
		}
		t.Logf("%d clients: %d acknowledged submissions, all counted; %d answered >200ms after SIGTERM, %d told to close; %d refused a connection after the drain; %d reset",
			clients, total, ackedLate.Load(), toldClose.Load(), refused.Load(), len(lost))
	})
}
