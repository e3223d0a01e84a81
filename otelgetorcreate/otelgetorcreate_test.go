package otelgetorcreate_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/getorcreate/getorcreate"
	_ "github.com/getorcreate/getorcreate/dialect/sqlite" // registers the dialect and modernc.org/sqlite
	"github.com/getorcreate/getorcreate/otelgetorcreate"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

type tag struct {
	ID    int64   `db:"id"`
	Name  *string `db:"name"`
	Slug  *string `db:"slug"`
	Count int64   `db:"count"`
}

func str(s string) *string { return &s }

// setup opens a fresh SQLite database in a temporary file, with a tags
// table keyed on name (nullable, so that a NULL key can be tried) and a
// second unique column, slug (so that a conflict can be), and a Tracer
// whose spans go to the returned recorder.
func setup(t *testing.T, opts ...otelgetorcreate.Option) (*getorcreate.Table[tag], *tracetest.SpanRecorder, *sql.DB) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "otel.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(`CREATE TABLE tags (
		id    INTEGER PRIMARY KEY,
		name  TEXT UNIQUE,
		slug  TEXT UNIQUE,
		count INTEGER NOT NULL DEFAULT 0)`); err != nil {
		t.Fatal(err)
	}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	tr := otelgetorcreate.NewTracer(append([]otelgetorcreate.Option{otelgetorcreate.WithTracerProvider(tp)}, opts...)...)
	tags, err := getorcreate.OpenConfig[tag](context.Background(), db, getorcreate.Config{Table: "tags", Key: []string{"name"}, Tracer: tr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tags.Close() })
	return tags, rec, db
}

// lastSpan returns the one span ended since the previous call (n is how
// many have ended before), failing unless exactly one has.
func lastSpan(t *testing.T, rec *tracetest.SpanRecorder, n *int) sdktrace.ReadOnlySpan {
	t.Helper()
	ended := rec.Ended()
	if len(ended) != *n+1 {
		t.Fatalf("%d spans ended, want %d", len(ended), *n+1)
	}
	if len(rec.Started()) != len(ended) {
		t.Fatalf("%d spans started, %d ended", len(rec.Started()), len(ended))
	}
	*n = len(ended)
	return ended[len(ended)-1]
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

// checkAttrs fails for each attribute in want that the span lacks or has
// with another value, and for each attribute in absent that it has.
func checkAttrs(t *testing.T, s sdktrace.ReadOnlySpan, want []attribute.KeyValue, absent ...attribute.Key) {
	t.Helper()
	got := attrs(s)
	for _, kv := range want {
		if v, ok := got[kv.Key]; !ok || v != kv.Value {
			t.Errorf("%s: %s = %v (set: %v), want %v", s.Name(), kv.Key, v.String(), ok, kv.Value.String())
		}
	}
	for _, k := range absent {
		if v, ok := got[k]; ok {
			t.Errorf("%s: %s = %v, want it unset", s.Name(), k, v.String())
		}
	}
}

func call(table, op string, rows int, inTx bool, path getorcreate.Path, created int) []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.String("db.collection.name", table),
		attribute.String("db.operation.name", op),
		attribute.Int("getorcreate.rows", rows),
		attribute.Bool("getorcreate.in_tx", inTx),
		attribute.String("getorcreate.path", string(path)),
		attribute.Int("getorcreate.created", created),
		attribute.Int("getorcreate.attempts", 1),
		attribute.Int("getorcreate.retries", 0),
	}
}

// TestSpans: on a real SQLite database, each call is one ended span, named
// "<op> <table>", internal, with status Unset, the call's path, rows,
// statements, attempts and rows created, and the attributes WithAttributes
// gave; a bulk call also has db.operation.batch.size.
func TestSpans(t *testing.T) {
	tags, rec, _ := setup(t, otelgetorcreate.WithAttributes(attribute.String("db.system.name", "sqlite")))
	ctx := context.Background()
	n := 0
	check := func(name string, want []attribute.KeyValue, absent ...attribute.Key) sdktrace.ReadOnlySpan {
		t.Helper()
		s := lastSpan(t, rec, &n)
		if s.Name() != name {
			t.Errorf("span named %q, want %q", s.Name(), name)
		}
		if s.SpanKind() != trace.SpanKindInternal {
			t.Errorf("%s: kind %v, want internal", name, s.SpanKind())
		}
		if s.Status().Code != codes.Unset || len(s.Events()) != 0 {
			t.Errorf("%s: status %+v, events %v: want unset and none", name, s.Status(), s.Events())
		}
		if st := attrs(s)["getorcreate.statements"].AsInt64(); st < 1 {
			t.Errorf("%s: %d statements", name, st)
		}
		if s.InstrumentationScope().Name != otelgetorcreate.ScopeName {
			t.Errorf("%s: scope %q", name, s.InstrumentationScope().Name)
		}
		checkAttrs(t, s, append(want, attribute.String("db.system.name", "sqlite")), absent...)
		return s
	}

	if r, err := tags.GetOrCreate(ctx, tag{Name: str("go")}); err != nil || !r.Created {
		t.Fatalf("create: %+v, %v", r, err)
	}
	s := check("GetOrCreate tags", call("tags", "GetOrCreate", 1, false, getorcreate.PathCreated, 1), "error.type", "db.operation.batch.size")
	t.Logf("created: %d statements", attrs(s)["getorcreate.statements"].AsInt64())

	if r, err := tags.GetOrCreate(ctx, tag{Name: str("go")}); err != nil || r.Created {
		t.Fatalf("existing: %+v, %v", r, err)
	}
	check("GetOrCreate tags", append(call("tags", "GetOrCreate", 1, false, getorcreate.PathExisting, 0),
		attribute.Int("getorcreate.statements", 1)), "error.type")

	if r, err := tags.UpdateOrCreate(ctx, tag{Name: str("go")}, getorcreate.Add("count", 1)); err != nil || r.Row.Count != 1 {
		t.Fatalf("update: %+v, %v", r, err)
	}
	check("UpdateOrCreate tags", call("tags", "UpdateOrCreate", 1, false, getorcreate.PathUpdated, 0), "error.type")

	if _, err := tags.GetOrCreateMany(ctx, []tag{{Name: str("go")}, {Name: str("sql")}, {Name: str("db")}}); err != nil {
		t.Fatal(err)
	}
	check("GetOrCreateMany tags", append(call("tags", "GetOrCreateMany", 3, false, getorcreate.PathBulk, 2),
		attribute.Int("db.operation.batch.size", 3)), "error.type")

	if _, err := tags.UpdateOrCreateMany(ctx, []tag{{Name: str("go")}}, getorcreate.Add("count", 1)); err != nil {
		t.Fatal(err)
	}
	check("UpdateOrCreateMany tags", call("tags", "UpdateOrCreateMany", 1, false, getorcreate.PathBulk, 0),
		"error.type", "db.operation.batch.size") // one input: not a batch, say the conventions
}

// TestSpanInTx: a ...Tx call, in the caller's transaction, says so.
func TestSpanInTx(t *testing.T) {
	tags, rec, db := setup(t)
	ctx := context.Background()
	err := getorcreate.RunTx(ctx, db, nil, func(tx *sql.Tx) error {
		_, err := tags.GetOrCreateTx(ctx, tx, tag{Name: str("go")})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	s := lastSpan(t, rec, &n)
	checkAttrs(t, s, []attribute.KeyValue{
		attribute.String("db.operation.name", "GetOrCreate"),
		attribute.Bool("getorcreate.in_tx", true),
		attribute.String("getorcreate.path", "created"),
	})
}

// TestSpanErrors: a failed call's span has status Error with the error's
// message, an exception event, path "failed" and error.type naming the
// error's kind.
func TestSpanErrors(t *testing.T) {
	tags, rec, _ := setup(t)
	ctx := context.Background()
	if _, err := tags.GetOrCreate(ctx, tag{Name: str("go"), Slug: str("x")}); err != nil {
		t.Fatal(err)
	}
	n := 1
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	for _, c := range []struct {
		what, errType string
		kind          error
		call          func() error
	}{
		{"unknown column in an update", "invalid_update", getorcreate.ErrInvalidUpdate, func() error {
			_, err := tags.UpdateOrCreate(ctx, tag{Name: str("go")}, getorcreate.Add("nope", 1))
			return err
		}},
		{"NULL key", "null_key", getorcreate.ErrNullKey, func() error {
			_, err := tags.GetOrCreate(ctx, tag{})
			return err
		}},
		{"conflict on another unique column", "conflict", getorcreate.ErrConflict, func() error {
			_, err := tags.GetOrCreate(ctx, tag{Name: str("rust"), Slug: str("x")})
			return err
		}},
		{"NULL key in a batch", "null_key", getorcreate.ErrNullKey, func() error {
			_, err := tags.GetOrCreateMany(ctx, []tag{{Name: str("a")}, {}})
			return err
		}},
		{"cancelled context", "canceled", context.Canceled, func() error {
			_, err := tags.GetOrCreate(cancelled, tag{Name: str("new")})
			return err
		}},
	} {
		err := c.call()
		if !errors.Is(err, c.kind) {
			t.Fatalf("%s: got %v, want %v", c.what, err, c.kind)
		}
		s := lastSpan(t, rec, &n)
		if s.Status().Code != codes.Error || s.Status().Description != err.Error() {
			t.Errorf("%s: status %+v, want Error %q", c.what, s.Status(), err.Error())
		}
		checkAttrs(t, s, []attribute.KeyValue{
			attribute.String("error.type", c.errType),
			attribute.String("getorcreate.path", "failed"),
			attribute.Int("getorcreate.created", 0),
		})
		ev := s.Events()
		if len(ev) != 1 || ev[0].Name != "exception" {
			t.Errorf("%s: events %v, want one exception", c.what, ev)
			continue
		}
		for _, kv := range ev[0].Attributes {
			if kv.Key == "exception.message" && kv.Value.AsString() != err.Error() {
				t.Errorf("%s: exception.message %q", c.what, kv.Value.AsString())
			}
		}
	}
}

// TestSpanParent: the call's span is the child of the caller's span, and
// the context the call runs in carries the call's span, so that a driver's
// spans (here, one a wrapping Tracer starts in that context, as pgx's
// tracer or otelsql would) are its children; TraceCallEnd still ends the
// call's span, not the child that the context carries by then.
func TestSpanParent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "otel.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE tags (id INTEGER PRIMARY KEY, name TEXT UNIQUE, slug TEXT UNIQUE, count INTEGER NOT NULL DEFAULT 0)`); err != nil {
		t.Fatal(err)
	}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	driver := &driverSpans{Tracer: otelgetorcreate.NewTracer(otelgetorcreate.WithTracerProvider(tp)), tr: tp.Tracer("driver")}
	tags, err := getorcreate.OpenConfig[tag](context.Background(), db, getorcreate.Config{Table: "tags", Key: []string{"name"}, Tracer: driver})
	if err != nil {
		t.Fatal(err)
	}
	defer tags.Close()

	ctx, parent := tp.Tracer("app").Start(context.Background(), "handler")
	if _, err := tags.GetOrCreate(ctx, tag{Name: str("go")}); err != nil {
		t.Fatal(err)
	}
	parent.End()

	spans := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		spans[s.Name()] = s
	}
	callSpan, child := spans["GetOrCreate tags"], spans["driver query"]
	if len(spans) != 3 || callSpan == nil || child == nil || driver.inCall == nil {
		t.Fatalf("ended spans %v", spans)
	}
	if callSpan.Parent().SpanID() != parent.SpanContext().SpanID() || callSpan.SpanContext().TraceID() != parent.SpanContext().TraceID() {
		t.Errorf("call span's parent %v, want the handler's %v", callSpan.Parent(), parent.SpanContext())
	}
	if !driver.inCall.SpanContext().Equal(callSpan.SpanContext()) || !driver.recording {
		t.Errorf("the call's context carries span %v, want the recording call span %v", driver.inCall.SpanContext(), callSpan.SpanContext())
	}
	if child.Parent().SpanID() != callSpan.SpanContext().SpanID() {
		t.Errorf("driver span's parent %v, want the call span %v", child.Parent(), callSpan.SpanContext())
	}
	if attrs(callSpan)["getorcreate.path"].AsString() != "created" {
		t.Errorf("call span not ended by TraceCallEnd: %v", callSpan.Attributes())
	}
}

// driverSpans wraps a Tracer as an instrumented driver would sit under it:
// it starts a span in the context the call runs in and puts that in the
// context in turn.
type driverSpans struct {
	*otelgetorcreate.Tracer
	tr        trace.Tracer
	inCall    trace.Span // the span the call's context carried
	recording bool       // and whether it was recording then
}

func (d *driverSpans) TraceCallStart(ctx context.Context, data getorcreate.TraceCallStartData) context.Context {
	ctx = d.Tracer.TraceCallStart(ctx, data)
	d.inCall = trace.SpanFromContext(ctx)
	d.recording = d.inCall.IsRecording()
	ctx, _ = d.tr.Start(ctx, "driver query")
	return ctx
}

func (d *driverSpans) TraceCallEnd(ctx context.Context, data getorcreate.TraceCallEndData) {
	trace.SpanFromContext(ctx).End() // the driver's span
	d.Tracer.TraceCallEnd(ctx, data)
}

// TestRetryEvents: each retry is a "retry" event with its kind and the
// attempt that failed. (SQLite does not make retries on demand, so the
// Tracer is driven directly, as the library drives it.)
func TestRetryEvents(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tr := otelgetorcreate.NewTracer(otelgetorcreate.WithTracerProvider(tp), otelgetorcreate.WithSpanKind(trace.SpanKindClient))
	start := getorcreate.TraceCallStartData{Table: "tags", Op: "UpdateOrCreate", Rows: 1}
	ctx := tr.TraceCallStart(context.Background(), start)
	if s := trace.SpanFromContext(ctx); !s.IsRecording() || len(rec.Started()) != 1 || !s.SpanContext().Equal(rec.Started()[0].SpanContext()) {
		t.Fatalf("TraceCallStart's context carries %v, want the started span", s.SpanContext())
	}
	tr.TraceCallEnd(ctx, getorcreate.TraceCallEndData{
		TraceCallStartData: start, Path: getorcreate.PathUpdated, Statements: 7, Attempts: 3,
		Retries: []error{getorcreate.ErrSerialization, getorcreate.ErrBusy},
	})
	n := 0
	s := lastSpan(t, rec, &n)
	if s.SpanKind() != trace.SpanKindClient {
		t.Errorf("kind %v, want client (WithSpanKind)", s.SpanKind())
	}
	checkAttrs(t, s, []attribute.KeyValue{
		attribute.Int("getorcreate.statements", 7),
		attribute.Int("getorcreate.attempts", 3),
		attribute.Int("getorcreate.retries", 2),
		attribute.String("getorcreate.path", "updated"),
	}, "error.type")
	var got []string
	for _, e := range s.Events() {
		m := map[attribute.Key]attribute.Value{}
		for _, kv := range e.Attributes {
			m[kv.Key] = kv.Value
		}
		got = append(got, fmt.Sprintf("%s %s %d", e.Name, m["getorcreate.retry.kind"].AsString(), m["getorcreate.retry.attempt"].AsInt64()))
	}
	if fmt.Sprint(got) != "[retry serialization 1 retry busy 2]" {
		t.Errorf("events %q", got)
	}
}

// TestErrorType: every sentinel has its own short name, context errors
// theirs, an unclassified error "_OTHER" (the conventions' fallback), and
// a kind newer than this package a name made from its message.
func TestErrorType(t *testing.T) {
	wrap := func(kind error) error {
		return &getorcreate.Error{Op: "GetOrCreate", Table: "tags", Kind: kind, Input: -1, Err: errors.New("driver says no")}
	}
	cases := map[error]string{
		getorcreate.ErrConflict:                        "conflict",
		getorcreate.ErrSerialization:                   "serialization",
		getorcreate.ErrDeadlock:                        "deadlock",
		getorcreate.ErrBusy:                            "busy",
		getorcreate.ErrLostRace:                        "lost_race",
		getorcreate.ErrValueTooLong:                    "value_too_long",
		getorcreate.ErrInvalidValue:                    "invalid_value",
		getorcreate.ErrNotNull:                         "not_null",
		getorcreate.ErrNullKey:                         "null_key",
		getorcreate.ErrDuplicateInput:                  "duplicate_input",
		getorcreate.ErrInvalidUpdate:                   "invalid_update",
		getorcreate.ErrNoUniqueIndex:                   "no_unique_index",
		getorcreate.ErrMapping:                         "mapping",
		getorcreate.ErrNoTable:                         "no_table",
		errors.New("Connection lost (indeterminate)!"): "connection_lost_indeterminate",
		nil: "_OTHER",
	}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tr := otelgetorcreate.NewTracer(otelgetorcreate.WithTracerProvider(tp))
	names := map[string]bool{}
	errType := func(err error) string {
		ctx := tr.TraceCallStart(context.Background(), getorcreate.TraceCallStartData{Table: "t", Op: "GetOrCreate", Rows: 1})
		tr.TraceCallEnd(ctx, getorcreate.TraceCallEndData{Path: getorcreate.PathFailed, Err: err})
		ended := rec.Ended()
		return attrs(ended[len(ended)-1])["error.type"].AsString()
	}
	for kind, want := range cases {
		if got := errType(wrap(kind)); got != want {
			t.Errorf("kind %v: error.type %q, want %q", kind, got, want)
		}
		if names[want] {
			t.Errorf("two kinds named %q", want)
		}
		names[want] = true
	}
	for err, want := range map[error]string{
		context.Canceled: "canceled",
		fmt.Errorf("getorcreate: %w", context.DeadlineExceeded): "deadline_exceeded",
		wrap(nil): "_OTHER",
		&getorcreate.SchemaError{Table: "t", Kind: getorcreate.ErrNoTable}: "no_table",
		fmt.Errorf("wrapped: %w", getorcreate.ErrBusy):                     "busy",
	} {
		if got := errType(err); got != want {
			t.Errorf("%v: error.type %q, want %q", err, got, want)
		}
	}
}

// TestEndWithoutStart: a context that carries no span of the Tracer's (not
// one TraceCallStart returned) ends nothing, in particular not the
// caller's span.
func TestEndWithoutStart(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tr := otelgetorcreate.NewTracer(otelgetorcreate.WithTracerProvider(tp))
	ctx, caller := tp.Tracer("app").Start(context.Background(), "caller")
	tr.TraceCallEnd(ctx, getorcreate.TraceCallEndData{Path: getorcreate.PathFailed, Err: errors.New("x")})
	if len(rec.Ended()) != 0 || !caller.IsRecording() {
		t.Fatalf("TraceCallEnd ended %d spans", len(rec.Ended()))
	}
	caller.End()
}

// TestConcurrentCalls: calls on many goroutines (run with -race) each get
// their own span, and exactly one span says it created the key.
func TestConcurrentCalls(t *testing.T) {
	tags, rec, _ := setup(t)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if _, err := tags.GetOrCreate(context.Background(), tag{Name: str("hot")}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	ended := rec.Ended()
	created, ids := 0, map[trace.SpanID]bool{}
	for _, s := range ended {
		a := attrs(s)
		created += int(a["getorcreate.created"].AsInt64())
		ids[s.SpanContext().SpanID()] = true
		if p := a["getorcreate.path"].AsString(); p != "created" && p != "existing" && p != "raced" {
			t.Errorf("path %q", p)
		}
	}
	if len(ended) != 16 || len(ids) != 16 || created != 1 {
		t.Errorf("%d spans (%d ids), %d created; want 16, 16, 1", len(ended), len(ids), created)
	}
}

// TestCoalescedSpans: on a coalescing table every call is still its own
// span, with getorcreate.batch; the statements of all spans add up to the
// batches' (each counted on its batch's first call), and a table that
// does not coalesce sets no getorcreate.batch.
func TestCoalescedSpans(t *testing.T) {
	plain, rec, db := setup(t)
	if _, err := plain.GetOrCreate(context.Background(), tag{Name: str("plain")}); err != nil {
		t.Fatal(err)
	}
	n := 0
	checkAttrs(t, lastSpan(t, rec, &n), nil, "getorcreate.batch")
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	tags, err := getorcreate.OpenConfig[tag](context.Background(), db, getorcreate.Config{Table: "tags", Key: []string{"name"},
		Tracer: otelgetorcreate.NewTracer(otelgetorcreate.WithTracerProvider(tp)), Coalesce: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tags.Close()
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if _, err := tags.UpdateOrCreate(context.Background(), tag{Name: str("hot"), Count: 1}, getorcreate.Add("count", 1)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	ended := rec.Ended()[n:]
	statements, biggest := 0, int64(0)
	for _, s := range ended {
		a := attrs(s)
		b, ok := a["getorcreate.batch"]
		if !ok || b.AsInt64() < 1 {
			t.Errorf("coalesced call without getorcreate.batch: %v", a)
		}
		biggest = max(biggest, b.AsInt64())
		statements += int(a["getorcreate.statements"].AsInt64())
	}
	if len(ended) != 16 || statements < 1 || statements > 16*3 {
		t.Fatalf("%d spans, %d statements", len(ended), statements)
	}
	var count int
	if err := db.QueryRow("SELECT count FROM tags WHERE name = 'hot'").Scan(&count); err != nil || count != 16 {
		t.Fatalf("count %d (%v), want 16", count, err)
	}
	t.Logf("16 calls: %d statements, largest batch %d", statements, biggest)
}
