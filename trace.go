package getorcreate

import "context"

// Tracer observes a Table's calls, in the manner of pgx's QueryTracer:
// TraceCallStart runs before a call sends anything, and the context it
// returns is the one the call runs in (so a span started there is the
// parent of the driver's own spans); TraceCallEnd runs when the call
// returns. Both run on the caller's goroutine and must be safe for
// concurrent use. The library has no dependency for tracing: the module
// github.com/getorcreate/getorcreate/otelgetorcreate adapts a Tracer to
// OpenTelemetry.
type Tracer interface {
	TraceCallStart(ctx context.Context, data TraceCallStartData) context.Context
	TraceCallEnd(ctx context.Context, data TraceCallEndData)
}

// TraceCallStartData describes a call that is about to run.
type TraceCallStartData struct {
	Table string
	Op    string // "GetOrCreate", "UpdateOrCreate", "GetOrCreateMany", "UpdateOrCreateMany", "UpdateOrCreateOnce"
	InTx  bool   // a ...Tx call, in the caller's transaction
	Rows  int    // inputs: 1 for single-row calls
}

// TraceCallEndData describes a call that returned.
type TraceCallEndData struct {
	TraceCallStartData
	// Path is what the call did.
	Path Path
	// Statements counts the statements sent, over every attempt (not
	// counting BEGIN and COMMIT of the library's own transactions).
	Statements int
	// Attempts counts the tries of the library's own transaction.
	Attempts int
	// Retries holds, for each retry, the kind of error that caused it
	// (ErrSerialization, ErrDeadlock, ErrBusy, ErrLostRace, ...).
	Retries []error
	// Created counts the rows the call created: 0 or 1 for a single-row
	// call.
	Created int
	// Err is the error the call returned, or nil; Kind(Err) is its kind.
	Err error
	// Batch is, on a table with Config.Coalesce, the number of calls that
	// went in one batch with this one (1 when it went alone); 0 otherwise.
	// A batch's statements are counted on its first caller only, so the
	// Statements of all calls add up to the statements sent.
	Batch int
}

// Path is what a call did.
type Path string

// The paths.
const (
	PathExisting Path = "existing" // the key's row was there; nothing was written
	PathCreated  Path = "created"  // this call inserted the row
	PathUpdated  Path = "updated"  // this call applied its updates to the existing row
	// PathRaced: another caller created the row between this call's
	// lookup and its insert; this call returns that row.
	PathRaced  Path = "raced"
	PathBulk   Path = "bulk"   // a bulk call: see Created for how many rows it created
	PathFailed Path = "failed" // the call returned an error
)

// traced is a call in progress, as its Tracer sees it.
type traced struct {
	tr    Tracer
	data  TraceCallEndData
	count *int // statements sent, when tracing
}

// startTrace starts tracing a call, when the table has a Tracer.
func (t *tableCore) startTrace(ctx context.Context, op string, inTx bool, rows int) (context.Context, *traced) {
	if t.tracer == nil {
		return ctx, nil
	}
	tc := &traced{tr: t.tracer, data: TraceCallEndData{TraceCallStartData: TraceCallStartData{Table: t.name, Op: op, InTx: inTx, Rows: rows}}}
	tc.count = &tc.data.Statements
	return t.tracer.TraceCallStart(ctx, tc.data.TraceCallStartData), tc
}

// retried records why an attempt was retried.
func (tc *traced) retried(err error) {
	if tc != nil {
		tc.data.Retries = append(tc.data.Retries, Kind(err))
	}
}

// end reports the call's outcome.
func (tc *traced) end(ctx context.Context, path Path, created, attempts int, err error) {
	if tc == nil {
		return
	}
	if err != nil {
		path = PathFailed
	}
	tc.data.Path, tc.data.Created, tc.data.Attempts, tc.data.Err = path, created, attempts, err
	tc.tr.TraceCallEnd(ctx, tc.data)
}
