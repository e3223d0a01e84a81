package tagd

import (
	"context"
	"strings"
	"sync"

	"github.com/getorcreate/getorcreate"
	"github.com/prometheus/client_golang/prometheus"
)

// libraryTracer is the library's Tracer for the store's tables: it counts
// every call by table, operation and path, the statements they sent and
// why calls were retried, and it hands the outcome of a submission's tag
// call to the request that made it (see withCallRecord), so the
// submission metrics count what the committed transaction did.
type libraryTracer struct {
	prefix     string
	calls      *prometheus.CounterVec
	statements *prometheus.CounterVec
	retries    *prometheus.CounterVec
}

// Label values of the library metrics, from fixed sets like the HTTP ones.
var (
	libraryTables = []string{"tags", "item_tags", "tag_minutes", "tagd_requests"}
	libraryOps    = []string{"GetOrCreate", "UpdateOrCreate", "GetOrCreateMany", "UpdateOrCreateMany", "UpdateOrCreateOnce"}
	libraryPaths  = []getorcreate.Path{getorcreate.PathExisting, getorcreate.PathCreated, getorcreate.PathUpdated, getorcreate.PathRaced, getorcreate.PathBulk, getorcreate.PathFailed}
	retryKinds    = map[error]string{
		getorcreate.ErrSerialization: "serialization", getorcreate.ErrDeadlock: "deadlock", getorcreate.ErrBusy: "busy",
		getorcreate.ErrLostRace: "lost_race", getorcreate.ErrConnection: "connection", getorcreate.ErrIndeterminate: "indeterminate",
	}
)

func newLibraryTracer(prefix string) *libraryTracer {
	return &libraryTracer{
		prefix: prefix,
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tagd_library_calls_total",
			Help: "getorcreate calls on the store's tables, by table, operation and path (existing, created, updated, raced, bulk, failed).",
		}, []string{"table", "op", "path"}),
		statements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tagd_library_statements_total",
			Help: "Statements the getorcreate calls sent, by table and operation.",
		}, []string{"table", "op"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tagd_library_retries_total",
			Help: "Retries inside getorcreate calls, by table and the kind of error retried.",
		}, []string{"table", "kind"}),
	}
}

func (l *libraryTracer) collectors() []prometheus.Collector {
	return []prometheus.Collector{l.calls, l.statements, l.retries}
}

func oneOf[S ~string](v S, set []S) string {
	for _, s := range set {
		if v == s {
			return string(v)
		}
	}
	return "other"
}

func (l *libraryTracer) TraceCallStart(ctx context.Context, _ getorcreate.TraceCallStartData) context.Context {
	return ctx
}

func (l *libraryTracer) TraceCallEnd(ctx context.Context, d getorcreate.TraceCallEndData) {
	table := oneOf(strings.TrimPrefix(d.Table, l.prefix), libraryTables)
	op := oneOf(d.Op, libraryOps)
	l.calls.WithLabelValues(table, op, oneOf(d.Path, libraryPaths)).Inc()
	l.statements.WithLabelValues(table, op).Add(float64(d.Statements))
	for _, k := range d.Retries {
		kind, ok := retryKinds[k]
		if !ok {
			kind = "other"
		}
		l.retries.WithLabelValues(table, kind).Inc()
	}
	if rec, ok := ctx.Value(callRecordKey{}).(*callRecord); ok && table == "tags" && d.Err == nil {
		rec.mu.Lock()
		rec.path = d.Path
		rec.mu.Unlock()
	}
}

// callRecord keeps what the library's tracer said of a request's tag call.
type callRecord struct {
	mu   sync.Mutex
	path getorcreate.Path
}

type callRecordKey struct{}

// withCallRecord returns a context whose tag calls the tracer reports to
// the returned record.
func withCallRecord(ctx context.Context) (context.Context, *callRecord) {
	rec := &callRecord{}
	return context.WithValue(ctx, callRecordKey{}, rec), rec
}

// raced reports whether the tag call returned a row another request
// created between its lookup and its insert.
func (r *callRecord) raced() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.path == getorcreate.PathRaced
}

var _ getorcreate.Tracer = (*libraryTracer)(nil)
