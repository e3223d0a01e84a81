package tagd_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/getorcreate/getorcreate/cmd/internal/tagd"
	"github.com/getorcreate/getorcreate/internal/testdb"
)

// TestIdempotencyKey: a write resent with its Idempotency-Key gets the
// first answer and counts once; the same key with another body is refused;
// a malformed key is refused; the key of one path is not the key of
// another.
func TestIdempotencyKey(t *testing.T) {
	testdb.Each(t, func(t *testing.T, d *testdb.DB) {
		srv, _ := startServer(t, d, tagd.Options{})
		first := postTag(t, srv.URL, "Keyed", "Idempotency-Key", "k-1")
		if first.Status != 201 || first.Header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("first: %d %s", first.Status, first.Body)
		}
		for range 3 {
			again := postTag(t, srv.URL, "Keyed", "Idempotency-Key", `"k-1"`) // the draft's quoted form too
			if again.Status != 201 || string(again.Body) != string(first.Body) || again.Header.Get("Idempotent-Replayed") != "true" ||
				again.Header.Get("Location") != first.Header.Get("Location") {
				t.Fatalf("resend: %d %v %s; want the first answer replayed", again.Status, again.Header, again.Body)
			}
		}
		if a := do(t, nil, "GET", srv.URL+"/api/tags/keyed", "", ""); a.tag(t).Count != 1 {
			t.Fatalf("count %d after one keyed submission sent four times", a.tag(t).Count)
		}
		wantError(t, postTag(t, srv.URL, "Other", "Idempotency-Key", "k-1"), 422, "idempotency_key_reused")
		if a := postTag(t, srv.URL, "Keyed", "Idempotency-Key", "k-2"); a.Status != 200 || a.tag(t).Count != 2 {
			t.Fatalf("a new key: %d %s", a.Status, a.Body)
		}
		// The same key on PUT is another request.
		a := do(t, nil, "PUT", srv.URL+"/api/items/i1/tags", "application/json", `{"tags":["keyed"]}`, "Idempotency-Key", "k-1")
		if a.Status != 200 {
			t.Fatalf("PUT with a key used for POST: %d %s", a.Status, a.Body)
		}
		b := do(t, nil, "PUT", srv.URL+"/api/items/i1/tags", "application/json", `{"tags":["keyed"]}`, "Idempotency-Key", "k-1")
		if b.Status != 200 || string(b.Body) != string(a.Body) || b.Header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("PUT resent: %d %s", b.Status, b.Body)
		}
		for _, bad := range []string{"", strings.Repeat("x", 256), "tab\tinside", "ü", `a"b`} {
			wantError(t, postTag(t, srv.URL, "Keyed", "Idempotency-Key", bad), 400, "invalid_idempotency_key")
		}
		req, _ := http.NewRequest("POST", srv.URL+"/api/tags", strings.NewReader(`{"name":"x"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Add("Idempotency-Key", "a")
		req.Header.Add("Idempotency-Key", "b")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 400 {
			t.Fatalf("two keys: %d", res.StatusCode)
		}
	})
}

// TestIdempotencyKeyStampede: 20 clients send one keyed submission at
// once, and each resends it with the same key until it has an answer that
// is not 409: it counts once, and every answer is the same.
func TestIdempotencyKeyStampede(t *testing.T) {
	testdb.Each(t, func(t *testing.T, d *testdb.DB) {
		srv, _ := startServer(t, d, tagd.Options{})
		for round := range 5 {
			key := fmt.Sprint("stampede-", round)
			name := fmt.Sprint("Stampede ", round)
			var wg sync.WaitGroup
			start := make(chan struct{})
			var mu sync.Mutex
			bodies := map[string]int{}
			conflicts := 0
			for range 20 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					for {
						a := postTag(t, srv.URL, name, "Idempotency-Key", key)
						if a.Status == 409 {
							mu.Lock()
							conflicts++
							mu.Unlock()
							continue
						}
						if a.Status/100 != 2 {
							t.Errorf("%d %s", a.Status, a.Body)
							return
						}
						mu.Lock()
						bodies[string(a.Body)]++
						mu.Unlock()
						return
					}
				}()
			}
			close(start)
			wg.Wait()
			var got tagd.Tag
			json.Unmarshal(do(t, nil, "GET", srv.URL+"/api/tags/"+strings.ToLower(strings.ReplaceAll(name, " ", "%20")), "", "").Body, &got)
			if got.Count != 1 || len(bodies) != 1 {
				t.Fatalf("round %d: count %d, %d distinct answers %v (%d answers 409)", round, got.Count, len(bodies), bodies, conflicts)
			}
		}
	})
}
