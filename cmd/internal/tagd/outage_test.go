package tagd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getorcreate/getorcreate/cmd/internal/tagd"
	"github.com/getorcreate/getorcreate/internal/dsn"
	"github.com/getorcreate/getorcreate/internal/faultproxy"
	"github.com/getorcreate/getorcreate/internal/testdb"
)

// TestOutage: tagd on a database server of the test's own, reached through
// a proxy that cuts every connection every 2.5 s, while the server is
// restarted once (PostgreSQL cleanly, as pg_ctl restart does; MariaDB
// killed and started again). 20 clients send submissions with an
// Idempotency-Key, each resent with its key until it has a definite
// answer: the count stored equals the keys, exactly. 20 clients send
// without a key, once each: the count is at least their 2xx answers and
// at most those plus the in-doubt ones, and no in-doubt answer told the
// client to retry.
func TestOutage(t *testing.T) {
	duration := 30 * time.Second
	if testing.Short() {
		duration = 8 * time.Second
	}
	for _, kind := range []string{"postgres", "mysql"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			server := testdb.OwnServer(t, kind)
			u, _ := url.Parse(server.DSN)
			proxy, err := faultproxy.Start(u.Host)
			if err != nil {
				t.Fatal(err)
			}
			defer proxy.Close()
			u.Host = proxy.Addr()
			db, _, err := dsn.Open(context.Background(), u.String())
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			store, err := tagd.OpenStore(context.Background(), db, kind, "")
			if err != nil {
				t.Fatal(err)
			}
			h, err := tagd.NewServer(store, tagd.Options{Logger: quietLogger(), DBTimeout: 3 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			client := &http.Client{Timeout: 20 * time.Second}

			post := func(name, key string) (int, http.Header, string, error) {
				req, _ := http.NewRequest("POST", srv.URL+"/api/tags", bytes.NewReader([]byte(`{"name":"`+name+`"}`)))
				req.Header.Set("Content-Type", "application/json")
				if key != "" {
					req.Header.Set("Idempotency-Key", key)
				}
				res, err := client.Do(req)
				if err != nil {
					return 0, nil, "", err
				}
				defer res.Body.Close()
				var e struct{ Error struct{ Code string } }
				b, _ := io.ReadAll(res.Body)
				json.Unmarshal(b, &e)
				return res.StatusCode, res.Header, e.Error.Code, nil
			}

			deadline := time.Now().Add(duration)
			var keys, resends, acked, inDoubt, failed atomic.Int64
			var wg sync.WaitGroup
			for c := range 20 {
				wg.Add(2)
				go func() { // with keys, resent until definite
					defer wg.Done()
					for i := 0; time.Now().Before(deadline); i++ {
						key := fmt.Sprintf("c%d-%d", c, i)
						for try := 0; ; try++ {
							status, hdr, code, err := post("keyed", key)
							if err == nil && status/100 == 2 {
								keys.Add(1)
								break
							}
							if err == nil && status != 503 && status != 409 {
								t.Errorf("keyed submission: %d %s", status, code)
								return
							}
							if err == nil && status == 503 && hdr.Get("Retry-After") == "" {
								t.Errorf("503 without Retry-After")
							}
							if try > 200 {
								t.Errorf("submission %s never answered", key)
								return
							}
							resends.Add(1)
							time.Sleep(200 * time.Millisecond)
						}
					}
				}()
				go func() { // without keys, once each
					defer wg.Done()
					for time.Now().Before(deadline) {
						status, hdr, code, err := post("plain", "")
						switch {
						case err == nil && status/100 == 2:
							acked.Add(1)
						case err == nil && status == 500 && code == "outcome_unknown":
							inDoubt.Add(1)
							if hdr.Get("Retry-After") != "" {
								t.Errorf("an in-doubt answer told the client to retry")
							}
						case err == nil && status == 503 && code == "database_unavailable":
							failed.Add(1)
							time.Sleep(100 * time.Millisecond)
						default:
							t.Errorf("submission without a key: %d %s %v", status, code, err)
							return
						}
					}
				}()
			}
			// The faults: a cut of every connection every 2.5 s, and one
			// restart of the server a third of the way through.
			stop := make(chan struct{})
			var restarted time.Duration
			go func() {
				tick := time.NewTicker(2500 * time.Millisecond)
				defer tick.Stop()
				restartAt := time.After(duration / 3)
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
						proxy.CutAll()
					case <-restartAt:
						start := time.Now()
						if kind == "postgres" {
							server.Stop()
						} else {
							server.Kill()
						}
						server.Start()
						restarted = time.Since(start)
					}
				}
			}()
			wg.Wait()
			close(stop)
			if restarted == 0 {
				t.Fatal("the server was never restarted")
			}
			direct, _, err := dsn.Open(context.Background(), server.DSN)
			if err != nil {
				t.Fatal(err)
			}
			defer direct.Close()
			count := func(key string) int64 {
				var n int64
				if err := direct.QueryRow("SELECT count FROM tags WHERE tag_key = '" + key + "'").Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			keyed, plain := count("keyed"), count("plain")
			if keyed != keys.Load() {
				t.Errorf("with keys: %d stored for %d keys", keyed, keys.Load())
			}
			if plain < acked.Load() || plain > acked.Load()+inDoubt.Load() {
				t.Errorf("without keys: %d stored, outside [%d acknowledged, + %d in doubt]", plain, acked.Load(), inDoubt.Load())
			}
			st := proxy.Stats()
			t.Logf("%s restarted in %v, %d connections cut; with keys: %d keys, %d resends, %d stored; without: %d acknowledged, %d in doubt, %d refused (503), %d stored",
				kind, restarted.Round(time.Millisecond), st.CutAll, keys.Load(), resends.Load(), keyed, acked.Load(), inDoubt.Load(), failed.Load(), plain)
		})
	}
}
