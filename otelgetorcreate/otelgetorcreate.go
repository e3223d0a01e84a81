// Package otelgetorcreate traces getorcreate calls with OpenTelemetry.
//
// A Tracer from NewTracer is a getorcreate.Tracer: set it as a table's
// Config.Tracer and every call of that table (GetOrCreate, UpdateOrCreate,
// GetOrCreateMany, UpdateOrCreateMany and their ...Tx forms) becomes one
// span, named "<op> <table>" ("GetOrCreate tags") after the database
// semantic conventions, with what the call did (its path, statements,
// attempts, rows created) as attributes and one "retry" event per retry.
//
// The span is started before the call sends anything and the call runs in
// its context, so the spans of an instrumented driver (pgx's tracer,
// otelsql) become its children.
//
// This package is its own module, so that the library itself does not
// depend on OpenTelemetry.
package otelgetorcreate

import (
	"context"
	"errors"
	"strings"

	"github.com/getorcreate/getorcreate"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the spans: the name under which
// a Tracer asks its TracerProvider for an OpenTelemetry tracer.
const ScopeName = "github.com/getorcreate/getorcreate/otelgetorcreate"

// The attributes the package sets besides the semantic conventions' db.*
// and error.type; the README has the full table.
const (
	pathKey       = attribute.Key("getorcreate.path")       // existing, created, updated, raced, bulk, failed
	statementsKey = attribute.Key("getorcreate.statements") // statements sent, over every attempt
	attemptsKey   = attribute.Key("getorcreate.attempts")   // tries of the library's own transaction
	retriesKey    = attribute.Key("getorcreate.retries")    // retries, one "retry" event each
	createdKey    = attribute.Key("getorcreate.created")    // rows the call created
	rowsKey       = attribute.Key("getorcreate.rows")       // inputs, 1 for single-row calls
	inTxKey       = attribute.Key("getorcreate.in_tx")      // a ...Tx call, in the caller's transaction
	batchKey      = attribute.Key("getorcreate.batch")      // with Config.Coalesce: the calls in this call's batch
	// On each "retry" event: why, named as error.type names kinds, and
	// which attempt (from 1) failed.
	retryKindKey    = attribute.Key("getorcreate.retry.kind")
	retryAttemptKey = attribute.Key("getorcreate.retry.attempt")
	retryEvent      = "retry"
)

// Tracer is a getorcreate.Tracer that records each call as an
// OpenTelemetry span. It is safe for concurrent use, and one Tracer may
// serve any number of tables.
type Tracer struct {
	tracer trace.Tracer
	kind   trace.SpanKind
	attrs  []attribute.KeyValue
}

var _ getorcreate.Tracer = (*Tracer)(nil)

// Option configures a Tracer.
type Option func(*config)

type config struct {
	tp    trace.TracerProvider
	kind  trace.SpanKind
	attrs []attribute.KeyValue
}

// WithTracerProvider sets the TracerProvider the spans come from. The
// default is the global one, otel.GetTracerProvider(), looked up when
// NewTracer runs (a global provider set later still receives the spans:
// the global one delegates to it).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) {
		if tp != nil {
			c.tp = tp
		}
	}
}

// WithAttributes adds attributes to every span, at its start (so samplers
// see them). The Tracer does not know which database a table is on: pass
// semconv.DBSystemNamePostgreSQL, semconv.DBSystemNameMariaDB,
// semconv.DBSystemNameMySQL or semconv.DBSystemNameSQLite here to set
// db.system.name, and db.namespace if you like.
func WithAttributes(attrs ...attribute.KeyValue) Option {
	return func(c *config) { c.attrs = append(c.attrs, attrs...) }
}

// WithSpanKind sets the spans' kind. The default is trace.SpanKindInternal:
// a call is a logical operation of several statements, each of which an
// instrumented driver records as its own client span, and a client span
// should not be the parent of client spans to the same server. Choose
// trace.SpanKindClient when no driver instrumentation records the
// statements and the call itself should count as the database call.
func WithSpanKind(kind trace.SpanKind) Option {
	return func(c *config) { c.kind = kind }
}

// NewTracer returns a Tracer; set it as getorcreate.Config's Tracer.
func NewTracer(opts ...Option) *Tracer {
	c := config{kind: trace.SpanKindInternal}
	for _, o := range opts {
		o(&c)
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	return &Tracer{
		tracer: c.tp.Tracer(ScopeName, trace.WithSchemaURL(semconv.SchemaURL)),
		kind:   c.kind,
		attrs:  c.attrs,
	}
}

// spanKey holds, in the context TraceCallStart returns, the span it
// started, so that TraceCallEnd ends that span and never another (a
// caller's, or a child's that a wrapping Tracer put in the context).
type spanKey struct{}

// TraceCallStart starts the call's span and returns a context that carries
// it: the call, and the driver's spans, run in that context.
func (t *Tracer) TraceCallStart(ctx context.Context, data getorcreate.TraceCallStartData) context.Context {
	attrs := make([]attribute.KeyValue, 0, 5+len(t.attrs))
	attrs = append(attrs, t.attrs...)
	attrs = append(attrs,
		semconv.DBCollectionName(data.Table),
		semconv.DBOperationName(data.Op),
		rowsKey.Int(data.Rows),
		inTxKey.Bool(data.InTx),
	)
	// The conventions: a batch operation has db.operation.batch.size, and
	// one with a single input is to be modelled as a single operation.
	if strings.HasSuffix(data.Op, "Many") && data.Rows != 1 {
		attrs = append(attrs, semconv.DBOperationBatchSize(data.Rows))
	}
	name := data.Op
	if data.Table != "" {
		name += " " + data.Table
	}
	ctx, span := t.tracer.Start(ctx, name, trace.WithSpanKind(t.kind), trace.WithAttributes(attrs...))
	return context.WithValue(ctx, spanKey{}, span)
}

// TraceCallEnd records what the call did on the span TraceCallStart put in
// ctx, and ends it. A ctx without such a span is ignored.
func (t *Tracer) TraceCallEnd(ctx context.Context, data getorcreate.TraceCallEndData) {
	span, ok := ctx.Value(spanKey{}).(trace.Span)
	if !ok {
		return
	}
	defer span.End()
	if !span.IsRecording() {
		return
	}
	// The retries are known only now: their events carry the end's time.
	for i, kind := range data.Retries {
		span.AddEvent(retryEvent, trace.WithAttributes(
			retryKindKey.String(errorType(kind)),
			retryAttemptKey.Int(i+1),
		))
	}
	span.SetAttributes(
		pathKey.String(string(data.Path)),
		statementsKey.Int(data.Statements),
		attemptsKey.Int(data.Attempts),
		retriesKey.Int(len(data.Retries)),
		createdKey.Int(data.Created),
	)
	if data.Batch > 0 {
		span.SetAttributes(batchKey.Int(data.Batch))
	}
	if data.Err != nil {
		span.SetAttributes(semconv.ErrorTypeKey.String(errorType(data.Err)))
		span.RecordError(data.Err)
		span.SetStatus(codes.Error, data.Err.Error())
	}
}

// errorType names the kind of err, for error.type and
// getorcreate.retry.kind: a short, stable, low-cardinality name.
func errorType(err error) string {
	kind := getorcreate.Kind(err)
	if kind == nil {
		switch {
		case errors.Is(err, context.Canceled):
			return "canceled"
		case errors.Is(err, context.DeadlineExceeded):
			return "deadline_exceeded"
		}
		return semconv.ErrorTypeOther.Value.AsString()
	}
	switch kind {
	case getorcreate.ErrConflict:
		return "conflict"
	case getorcreate.ErrSerialization:
		return "serialization"
	case getorcreate.ErrDeadlock:
		return "deadlock"
	case getorcreate.ErrBusy:
		return "busy"
	case getorcreate.ErrLostRace:
		return "lost_race"
	case getorcreate.ErrValueTooLong:
		return "value_too_long"
	case getorcreate.ErrInvalidValue:
		return "invalid_value"
	case getorcreate.ErrNotNull:
		return "not_null"
	case getorcreate.ErrNullKey:
		return "null_key"
	case getorcreate.ErrDuplicateInput:
		return "duplicate_input"
	case getorcreate.ErrInvalidUpdate:
		return "invalid_update"
	case getorcreate.ErrNoUniqueIndex:
		return "no_unique_index"
	case getorcreate.ErrMapping:
		return "mapping"
	case getorcreate.ErrNoTable:
		return "no_table"
	case getorcreate.ErrConnection:
		return "connection"
	case getorcreate.ErrIndeterminate:
		return "indeterminate"
	case getorcreate.ErrKeyAltered:
		return "key_altered"
	case getorcreate.ErrNotCovered:
		return "not_covered"
	case getorcreate.ErrRequestReused:
		return "request_reused"
	case getorcreate.ErrInvalidRequestID:
		return "invalid_request_id"
	case getorcreate.ErrUnsupported:
		return "unsupported"
	case getorcreate.ErrTransactionPooler:
		return "transaction_pooler"
	}
	// A kind newer than this package: named after its message, which is
	// as stable, and as few, as the library's sentinels.
	return slug(kind.Error())
}

// slug turns a sentinel's message into a name like the others:
// "connection lost" becomes "connection_lost".
func slug(msg string) string {
	var b strings.Builder
	sep := false
	for _, r := range strings.ToLower(msg) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if sep && b.Len() > 0 {
				b.WriteByte('_')
			}
			b.WriteRune(r)
			sep = false
		} else {
			sep = true
		}
		if b.Len() >= 48 {
			break
		}
	}
	if b.Len() == 0 {
		return semconv.ErrorTypeOther.Value.AsString()
	}
	return b.String()
}
