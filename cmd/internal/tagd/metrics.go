package tagd

import (
	"database/sql"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// latencyBuckets are the histogram's upper bounds in seconds.
var latencyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

type histogram struct {
	counts []uint64 // per bucket, not cumulative; the last is +Inf
	sum    float64
	n      uint64
}

type routeStatus struct{ route, method, status string }

// metrics is the service's Prometheus registry, written out by hand in the
// text exposition format (version 0.0.4).
type metrics struct {
	mu       sync.Mutex
	requests map[routeStatus]*histogram
	outcomes map[string]uint64 // "created", "existing"
	retried  uint64            // calls that needed more than one attempt
	limited  uint64
}

func newMetrics() *metrics {
	return &metrics{requests: map[routeStatus]*histogram{}, outcomes: map[string]uint64{}}
}

func (m *metrics) observe(route, method string, status int, d time.Duration) {
	k := routeStatus{route, method, strconv.Itoa(status)}
	s := d.Seconds()
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.requests[k]
	if h == nil {
		h = &histogram{counts: make([]uint64, len(latencyBuckets)+1)}
		m.requests[k] = h
	}
	i, _ := slices.BinarySearch(latencyBuckets, s)
	h.counts[i]++
	h.sum += s
	h.n++
}

func (m *metrics) outcome(o Outcome) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if o.Created {
		m.outcomes["created"]++
	} else {
		m.outcomes["existing"]++
	}
	if o.Attempts > 1 {
		m.retried++
	}
}

func (m *metrics) rateLimited() {
	m.mu.Lock()
	m.limited++
	m.mu.Unlock()
}

func labels(kv ...string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(kv[i])
		b.WriteString(`="`)
		b.WriteString(strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(kv[i+1]))
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// write renders every metric, sorted so the output is stable.
func (m *metrics) write(w io.Writer, db *sql.DB) {
	m.mu.Lock()
	keys := make([]routeStatus, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b routeStatus) int {
		return strings.Compare(a.route+" "+a.method+" "+a.status, b.route+" "+b.method+" "+b.status)
	})
	var b strings.Builder
	b.WriteString("# HELP tagd_http_requests_total HTTP requests answered, by route pattern, method and status.\n# TYPE tagd_http_requests_total counter\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "tagd_http_requests_total%s %d\n", labels("route", k.route, "method", k.method, "status", k.status), m.requests[k].n)
	}
	b.WriteString("# HELP tagd_http_request_duration_seconds Time to answer HTTP requests, by route pattern, method and status.\n# TYPE tagd_http_request_duration_seconds histogram\n")
	for _, k := range keys {
		h := m.requests[k]
		var cum uint64
		for i, c := range h.counts {
			cum += c
			le := "+Inf"
			if i < len(latencyBuckets) {
				le = fmtFloat(latencyBuckets[i])
			}
			fmt.Fprintf(&b, "tagd_http_request_duration_seconds_bucket%s %d\n", labels("route", k.route, "method", k.method, "status", k.status, "le", le), cum)
		}
		l := labels("route", k.route, "method", k.method, "status", k.status)
		fmt.Fprintf(&b, "tagd_http_request_duration_seconds_sum%s %s\n", l, fmtFloat(h.sum))
		fmt.Fprintf(&b, "tagd_http_request_duration_seconds_count%s %d\n", l, h.n)
	}
	b.WriteString("# HELP tagd_getorcreate_total Tags looked up or created, by outcome.\n# TYPE tagd_getorcreate_total counter\n")
	for _, o := range []string{"created", "existing"} {
		fmt.Fprintf(&b, "tagd_getorcreate_total%s %d\n", labels("outcome", o), m.outcomes[o])
	}
	b.WriteString("# HELP tagd_getorcreate_retried_total Get-or-create calls that retried after a serialization failure, deadlock or busy database.\n# TYPE tagd_getorcreate_retried_total counter\n")
	fmt.Fprintf(&b, "tagd_getorcreate_retried_total %d\n", m.retried)
	b.WriteString("# HELP tagd_rate_limited_total Requests refused by the per-client rate limit.\n# TYPE tagd_rate_limited_total counter\n")
	fmt.Fprintf(&b, "tagd_rate_limited_total %d\n", m.limited)
	m.mu.Unlock()

	st := db.Stats()
	gauge := func(name, help string, v int) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n%s %d\n", name, help, name, name, v)
	}
	counter := func(name, help string, v string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s counter\n%s %s\n", name, help, name, name, v)
	}
	gauge("tagd_db_max_open_connections", "Maximum open database connections.", st.MaxOpenConnections)
	gauge("tagd_db_open_connections", "Open database connections.", st.OpenConnections)
	gauge("tagd_db_in_use_connections", "Database connections in use.", st.InUse)
	gauge("tagd_db_idle_connections", "Idle database connections.", st.Idle)
	counter("tagd_db_wait_count_total", "Times a request waited for a database connection.", strconv.FormatInt(st.WaitCount, 10))
	counter("tagd_db_wait_duration_seconds_total", "Time spent waiting for database connections.", fmtFloat(st.WaitDuration.Seconds()))
	counter("tagd_db_max_idle_closed_total", "Connections closed for exceeding the idle limit.", strconv.FormatInt(st.MaxIdleClosed, 10))
	counter("tagd_db_max_lifetime_closed_total", "Connections closed for exceeding their lifetime.", strconv.FormatInt(st.MaxLifetimeClosed, 10))
	io.WriteString(w, b.String())
}
