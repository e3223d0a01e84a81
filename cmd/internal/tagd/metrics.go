package tagd

import (
	"database/sql"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// latencyBuckets are the histogram's upper bounds in seconds.
var latencyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Label values come from fixed sets, so no request can add a series: a
// client choosing the method or path would otherwise grow the registry (and
// /metrics) without limit.
const (
	otherMethod = "OTHER" // any method not in knownMethods
	otherRoute  = "other" // a request no route pattern matched
	otherStatus = "other" // a status tagd does not send
)

var knownMethods = map[string]bool{
	"GET": true, "HEAD": true, "POST": true, "PUT": true, "DELETE": true,
	"PATCH": true, "OPTIONS": true, "CONNECT": true, "TRACE": true,
}

func methodLabel(m string) string {
	if knownMethods[m] {
		return m
	}
	return otherMethod
}

var knownStatuses = map[int]string{}

func init() {
	for _, c := range []int{200, 201, 400, 401, 404, 405, 408, 409, 413, 415, 422, 429, 500, 503} {
		knownStatuses[c] = strconv.Itoa(c)
	}
}

func statusLabel(code int) string {
	if s, ok := knownStatuses[code]; ok {
		return s
	}
	return otherStatus
}

// metrics is one Server's Prometheus registry: no package-level state, so
// several servers in one process (the tests, tagload) keep their own counts.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	limited  prometheus.Counter
	routes   map[string]bool // the registered patterns: the route label's values
	calls    *callMetrics
}

func newMetrics(db *sql.DB, lib *libraryTracer) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tagd_http_requests_total",
			Help: "HTTP requests answered, by route pattern, method and status.",
		}, []string{"route", "method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tagd_http_request_duration_seconds",
			Help:    "Time to answer HTTP requests, by route pattern, method and status.",
			Buckets: latencyBuckets,
		}, []string{"route", "method", "status"}),
		limited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tagd_rate_limited_total",
			Help: "Requests refused by the per-client rate limit.",
		}),
		routes: map[string]bool{},
		calls:  newCallMetrics(),
	}
	m.reg.MustRegister(lib.collectors()...)
	m.reg.MustRegister(m.requests, m.duration, m.limited, m.calls.outcomes, m.calls.retried, m.calls.raced,
		collectors.NewDBStatsCollector(db, "tagd"),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// observe counts one answered request. route is the matched pattern, or ""
// when none matched.
func (m *metrics) observe(route, method string, status int, d time.Duration) {
	if !m.routes[route] {
		route = otherRoute
	}
	l := prometheus.Labels{"route": route, "method": methodLabel(method), "status": statusLabel(status)}
	m.requests.With(l).Inc()
	m.duration.With(l).Observe(d.Seconds())
}

func (m *metrics) handler(log *slog.Logger) http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// callMetrics counts tag submissions found or created, those whose
// transaction was retried, and those that lost the race for a new tag to
// another request (the library's Tracer says so: see libraryTracer).
type callMetrics struct {
	outcomes *prometheus.CounterVec
	retried  prometheus.Counter
	raced    prometheus.Counter
}

func newCallMetrics() *callMetrics {
	m := &callMetrics{
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tagd_getorcreate_total",
			Help: "Tags looked up or created, by outcome.",
		}, []string{"outcome"}),
		retried: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tagd_getorcreate_retried_total",
			Help: "Submissions whose transaction ran again after a serialization failure, deadlock, busy database or lost connection.",
		}),
		raced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tagd_getorcreate_lost_races_total",
			Help: "Submissions that found their new tag created by another request between their lookup and their insert.",
		}),
	}
	// Both outcomes are exported from the start, at zero.
	m.outcomes.WithLabelValues("created")
	m.outcomes.WithLabelValues("existing")
	return m
}

// observe counts one committed submission's outcome.
func (m *callMetrics) observe(o Outcome) {
	if o.Created {
		m.outcomes.WithLabelValues("created").Inc()
	} else {
		m.outcomes.WithLabelValues("existing").Inc()
	}
	if o.Attempts > 1 {
		m.retried.Inc()
	}
	if o.Raced {
		m.raced.Inc()
	}
}
