package tagd_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/getorcreate/getorcreate/cmd/internal/tagd"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/getorcreate/getorcreate/internal/dsn"
	"github.com/getorcreate/getorcreate/internal/testdb"
)

// prefix returns fresh table-name prefix, so tests share databases safely.
func prefix() string {
	b := make([]byte, 4)
	rand.Read(b)
	return "tagd_" + hex.EncodeToString(b) + "_"
}

// openDB opens a pool of its own on d (tests close it to make the database
// unavailable), and drops the prefix's tables when t ends.
func openDB(t testing.TB, d *testdb.DB, pfx string) *sql.DB {
	t.Helper()
	return openDSN(t, d, d.DSN, pfx)
}

// openDSN opens a pool on dsnStr, which reaches d (through a fault proxy,
// say), for a test of its own.
func openDSN(t testing.TB, d *testdb.DB, dsnStr, pfx string) *sql.DB {
	t.Helper()
	db, _, err := dsn.Open(context.Background(), dsnStr)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(8)
	t.Cleanup(func() {
		dropTables(d, pfx)
		db.Close()
	})
	return db
}

// quietLogger keeps the per-request log lines out of test output; failures
// still show.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startServer migrates a fresh schema on d and serves it.
func startServer(t testing.TB, d *testdb.DB, opts tagd.Options) (*httptest.Server, *tagd.Store) {
	t.Helper()
	return startServerDSN(t, d, d.DSN, opts)
}

// startServerDSN is startServer on a DSN that reaches d another way.
func startServerDSN(t testing.TB, d *testdb.DB, dsnStr string, opts tagd.Options) (*httptest.Server, *tagd.Store) {
	t.Helper()
	pfx := prefix()
	db := openDSN(t, d, dsnStr, pfx)
	store, err := tagd.OpenStore(context.Background(), db, d.Kind, pfx)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	h, err := tagd.NewServer(store, opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, store
}

type answer struct {
	Status int
	Header http.Header
	Body   []byte
}

// json decodes the body into v or fails.
func (a answer) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(a.Body, v); err != nil {
		t.Fatalf("answer %d is not JSON: %v\n%s", a.Status, err, a.Body)
	}
}

func (a answer) tag(t testing.TB) tagd.TagAnswer {
	t.Helper()
	var v tagd.TagAnswer
	a.json(t, &v)
	return v
}

// do sends a request; ctype "" sends no Content-Type.
func do(t testing.TB, c *http.Client, method, url, ctype, body string, hdr ...string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if c == nil {
		c = http.DefaultClient
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{res.StatusCode, res.Header, b}
}

func postTag(t testing.TB, base, name string, hdr ...string) answer {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"name": name})
	return do(t, nil, "POST", base+"/api/tags", "application/json", string(b), hdr...)
}

// wantError checks a JSON error answer of the given status and code.
func wantError(t testing.TB, a answer, status int, code string) {
	t.Helper()
	if a.Status != status {
		t.Fatalf("status %d, want %d; body %s", a.Status, status, a.Body)
	}
	if ct := a.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("error answer has Content-Type %q, want JSON", ct)
	}
	var e struct {
		Error struct{ Code, Message string }
	}
	dec := json.NewDecoder(bytes.NewReader(a.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("error body %s: %v", a.Body, err)
	}
	if e.Error.Code != code || e.Error.Message == "" {
		t.Fatalf("error code %q message %q, want code %q and a message", e.Error.Code, e.Error.Message, code)
	}
}

// scrape reads /metrics at base with Prometheus's own text parser, so the
// exposition is checked as a scraper reads it.
func scrape(t testing.TB, base string, hdr ...string) map[string]*dto.MetricFamily {
	t.Helper()
	a := do(t, nil, "GET", base+"/metrics", "", "", hdr...)
	if a.Status != 200 {
		t.Fatalf("GET /metrics: %d %s", a.Status, a.Body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(a.Body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return fams
}

// sample returns the value of family's sample with exactly these labels
// (a histogram's count), failing when there is none.
func sample(t testing.TB, fams map[string]*dto.MetricFamily, family string, labels map[string]string) float64 {
	t.Helper()
	f := fams[family]
	if f == nil {
		t.Fatalf("no metric family %s", family)
	}
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		if !maps.Equal(got, labels) && !(len(got) == 0 && len(labels) == 0) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		case m.Untyped != nil:
			return m.Untyped.GetValue()
		}
	}
	t.Fatalf("no sample %s%v", family, labels)
	return 0
}
