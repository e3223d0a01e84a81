package getorcreate

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/getorcreate/getorcreate/dialect"
)

// Ledger is a table of request ids that makes a write safe to send again:
// UpdateOrCreateOnce records the request's id and first outcome in the
// same transaction as its write, so that the write takes effect once
// however many times the request is sent. Open it with OpenLedger, give it
// to a table in Config.Ledger, and expire old ids with Expire.
//
// The ledger is itself a get-or-create on its request_id column, so
// concurrent duplicates of one request are decided by the ledger's unique
// index: the first to commit wins, the others roll their write back and
// return its outcome.
type Ledger struct {
	t  *Table[ledgerEntry]
	db *sql.DB
}

// ledgerEntry is one row of a ledger: the request, its fingerprint (what
// was asked, to tell a resend from a reused id), and the first outcome.
type ledgerEntry struct {
	RequestID   string `db:"request_id"`
	Fingerprint string `db:"fingerprint"`
	Outcome     string `db:"outcome"`
	CreatedAt   int64  `db:"created_unix_ms"`
}

// MaxRequestIDLength is the longest request id a ledger keeps, in bytes.
const MaxRequestIDLength = 255

// OpenLedger opens the ledger table on db. It returns a *SchemaError
// (ErrNoTable, with the DDL as Fix) when the table does not exist; see
// CreateLedger.
func OpenLedger(ctx context.Context, db *sql.DB, table string) (*Ledger, error) {
	t, err := OpenConfig[ledgerEntry](ctx, db, Config{Table: table, Key: []string{"request_id"}, Order: WriteFirst})
	var se *SchemaError
	if errors.As(err, &se) && se.Kind == ErrNoTable {
		if d, derr := dialectOf(ctx, db, Config{}); derr == nil {
			se.Fix = joinDDL(d.LedgerDDL(table))
		}
	}
	if err != nil {
		return nil, err
	}
	return &Ledger{t: t, db: db}, nil
}

// CreateLedger creates the ledger table on db if it does not exist, and
// opens it.
func CreateLedger(ctx context.Context, db *sql.DB, table string) (*Ledger, error) {
	d, err := dialectOf(ctx, db, Config{})
	if err != nil {
		return nil, err
	}
	for _, stmt := range d.LedgerDDL(table) {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			// Processes starting together race to create it: PostgreSQL's
			// CREATE TABLE IF NOT EXISTS can fail with a duplicate in its
			// catalog when another creates the same table at that moment.
			if l, oerr := OpenLedger(ctx, db, table); oerr == nil {
				return l, nil
			}
			return nil, fmt.Errorf("getorcreate: creating ledger %s: %w", table, err)
		}
	}
	return OpenLedger(ctx, db, table)
}

func joinDDL(stmts []string) string {
	var s string
	for _, st := range stmts {
		s += st + "; "
	}
	return s
}

// Name returns the ledger table's name.
func (l *Ledger) Name() string { return l.t.name }

// Expire deletes the ids recorded before the given time and reports how
// many. A request sent again with an expired id is applied again: keep
// ids for longer than any client retries (tagd keeps them 24 hours).
func (l *Ledger) Expire(ctx context.Context, before time.Time) (int64, error) {
	// The bound is an integer written into the text: no placeholder
	// syntax to choose, nothing to quote.
	q := fmt.Sprintf("DELETE FROM %s WHERE created_unix_ms < %d", l.t.d.Quote(l.t.name), before.UnixMilli())
	res, err := l.db.ExecContext(ctx, q)
	if err != nil {
		return 0, l.t.wrap("Expire", l.t.d.Interpret(err))
	}
	return res.RowsAffected()
}

// UpdateOrCreateOnce is UpdateOrCreate applied at most once per request
// id, with the table's Config.Ledger. The first call with an id applies
// the updates (or creates the row) and records the id and the result in
// the same transaction; a later call with the same id, or one running at
// the same time, writes nothing and returns that first result with
// Replayed set. A call whose id was recorded for a different request (other
// values or updates) fails with ErrRequestReused.
//
// Because the ledger decides, the call is retried after any lost
// connection, an indeterminate one included: this is how to make Add or
// Expr safe to retry. It costs the ledger's get-or-create and a
// transaction of its own (see the README's statement counts).
func (t *Table[T]) UpdateOrCreateOnce(ctx context.Context, requestID string, row T, updates ...Update) (Result[T], error) {
	const op = "UpdateOrCreateOnce"
	res := Result[T]{Row: row}
	if t.ledger == nil {
		return res, t.errf(op, ErrInvalidUpdate, "the table has no ledger: set Config.Ledger (see OpenLedger)")
	}
	if requestID == "" || len(requestID) > MaxRequestIDLength {
		return res, t.errf(op, ErrInvalidRequestID, "a request id must be 1 to %d bytes long, not %d", MaxRequestIDLength, len(requestID))
	}
	ctx, tc := t.startTrace(ctx, op, false, 1)
	c, sk, err := t.call(op, &res, false)
	if err != nil {
		tc.end(ctx, PathFailed, 0, 0, err)
		return res, err
	}
	kind := opUpdate
	if len(updates) == 0 {
		kind = opGet
	}
	plan, err := t.plan(kind, sk, updates)
	if err != nil {
		tc.end(ctx, PathFailed, 0, 0, err)
		return res, err
	}
	c.UpdateArgs = bindArgs(updates, nil)
	fp := t.fingerprint(c.Values, updates)
	var first *ledgerEntry
	fn := func() (bool, error) {
		first = nil
		return t.inOwnTx(ctx, tc, func(tx dialect.Tx) (bool, error) {
			var created bool
			var err error
			if kind == opUpdate {
				created, err = plan.UpdateOrCreate(ctx, tx, c)
			} else {
				created, err = plan.GetOrCreate(ctx, tx, c)
			}
			if err != nil {
				return false, err
			}
			outcome, err := t.encodeOutcome(created, &res.Row)
			if err != nil {
				return false, t.errf(op, ErrInvalidValue, "the result cannot be recorded as JSON: %v", err)
			}
			if first, err = t.ledger.record(ctx, tx, requestID, fp, outcome); err != nil {
				return false, err
			}
			return created, nil
		})
	}
	var o outcome
	res.Created, o, err = t.run(ctx, tc, op, mode{ownTx: true, idempotent: true}, fn)
	res.Attempts = o.attempts
	if errors.Is(err, errReplay) && first != nil {
		res, err = t.replay(op, first, fp)
		res.Attempts = o.attempts
		tc.end(ctx, PathExisting, 0, o.attempts, err)
		return res, err
	}
	tc.end(ctx, pathOf(c, res.Created, kind == opUpdate), b2i(res.Created), o.attempts, err)
	if err != nil {
		return Result[T]{Row: row, Attempts: o.attempts}, err
	}
	t.learn(!res.Created)
	t.grew(b2i(res.Created))
	return res, nil
}

// own is the switch of the ledger's pool, for the transactions Once
// begins on it: nil when its driver takes no argument for planning.
func (l *Ledger) own() *dialect.Replan {
	if s, ok := l.t.own.(sqlDB); ok {
		return s.replan
	}
	return nil
}

// errReplay rolls back a write whose request id the ledger already holds.
var errReplay = errors.New("request already applied")

// record get-or-creates the request's row in the ledger, inside the
// transaction that made the write. When the id was there already (a
// resend, or a duplicate that committed first: the ledger's insert waits
// for it), it returns that row and errReplay, which rolls the transaction
// back and so undoes this write.
func (l *Ledger) record(ctx context.Context, q dialect.Querier, id, fp string, outcome []byte) (*ledgerEntry, error) {
	// The ledger's statements obey the ledger table's switch, which its own
	// size decides, in whichever transaction they run.
	q = replanned(q, l.t.replan)
	e, err := l.t.getOrCreate(ctx, q, true, ledgerEntry{RequestID: id, Fingerprint: fp, Outcome: string(outcome), CreatedAt: time.Now().UnixMilli()}, nil)
	if err != nil {
		return nil, err
	}
	if !e.Created {
		return &e.Row, errReplay
	}
	return nil, nil
}

// Once runs fn in a transaction on the ledger's database at most once per
// request id, for writes of any shape (several tables, several calls): fn
// returns the outcome to keep (an answer to replay, say), which is recorded
// with the id and fingerprint in the same transaction. When the id was
// recorded before (a resend, or a duplicate running at the same time,
// which waits for the first to commit), fn's transaction is rolled back and
// the recorded outcome is returned with replayed set. An id recorded with
// another fingerprint (what the request asked for, in a form of the
// caller's choosing) is ErrRequestReused.
//
// fn runs again on retryable errors and on lost connections, an
// indeterminate one included, as RunTx would run it, since the ledger
// makes that safe; fn must not commit or roll back tx.
func (l *Ledger) Once(ctx context.Context, requestID, fingerprint string, fn func(tx *sql.Tx) ([]byte, error)) (outcome []byte, replayed bool, err error) {
	const op = "Once"
	if requestID == "" || len(requestID) > MaxRequestIDLength {
		return nil, false, l.t.errf(op, ErrInvalidRequestID, "a request id must be 1 to %d bytes long, not %d", MaxRequestIDLength, len(requestID))
	}
	var first *ledgerEntry
	inDoubt := false
	attempt := func() error {
		first = nil
		return runTxOnce(ctx, l.db, nil, func(tx *sql.Tx) error {
			out, err := fn(tx)
			if err != nil {
				return err
			}
			outcome = out
			// Base64, so that any bytes fit the ledger's text column.
			first, err = l.record(ctx, sqlTx{tx, l.own()}, requestID, fingerprint, []byte(base64.StdEncoding.EncodeToString(out)))
			return err
		})
	}
	retryable := func(err error) bool {
		if Kind(err) == ErrIndeterminate {
			inDoubt = true
			return true
		}
		return IsRetryable(err)
	}
	_, err = l.t.retry.run(ctx, attempt, retryable, nil)
	if err != nil && inDoubt && Kind(err) == ErrConnection {
		err = &Error{Op: op, Table: l.t.name, Kind: ErrIndeterminate, Input: -1, Err: err}
	}
	if first != nil && errors.Is(err, errReplay) {
		if first.Fingerprint != fingerprint {
			return nil, false, l.t.errf(op, ErrRequestReused, "request id %q was recorded for a different request", requestID)
		}
		out, derr := base64.StdEncoding.DecodeString(first.Outcome)
		if derr != nil {
			return nil, false, l.t.errf(op, ErrInvalidValue, "the recorded outcome of request %q cannot be read: %v", requestID, derr)
		}
		return out, true, nil
	}
	if err != nil {
		return nil, false, err
	}
	return outcome, false, nil
}

// ledgerOutcome is what a ledger records of a call's result: whether it
// created the row, and the row's column values, each encoded on its own
// (so that neither T's JSON tags nor its marshallers decide what is kept,
// and strings keep their bytes: see encodeValue).
type ledgerOutcome struct {
	Created bool                       `json:"created"`
	Columns map[string]json.RawMessage `json:"columns"`
}

func (t *Table[T]) encodeOutcome(created bool, row *T) ([]byte, error) {
	lo := ledgerOutcome{Created: created, Columns: make(map[string]json.RawMessage, len(t.m.Fields))}
	v := reflect.ValueOf(row).Elem()
	for _, f := range t.m.Fields {
		b, err := encodeValue(v.FieldByIndex(f.Index))
		if err != nil {
			return nil, t.errf("UpdateOrCreateOnce", ErrInvalidValue, "column %q cannot be recorded in the ledger: %v", f.Column, err)
		}
		lo.Columns[f.Column] = b
	}
	return json.Marshal(lo)
}

func (t *Table[T]) decodeOutcome(data []byte) (Result[T], error) {
	var lo ledgerOutcome
	if err := json.Unmarshal(data, &lo); err != nil {
		return Result[T]{}, err
	}
	res := Result[T]{Created: lo.Created, Replayed: true}
	v := reflect.ValueOf(&res.Row).Elem()
	for _, f := range t.m.Fields {
		if b, ok := lo.Columns[f.Column]; ok {
			if err := decodeValue(b, v.FieldByIndex(f.Index)); err != nil {
				return Result[T]{}, fmt.Errorf("column %q: %w", f.Column, err)
			}
		}
	}
	return res, nil
}

// encodeValue encodes one field: a string as base64 of its bytes (JSON
// would replace invalid UTF-8), a nil pointer as null, anything else as
// JSON.
func encodeValue(rv reflect.Value) ([]byte, error) {
	if rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return []byte("null"), nil
		}
		return encodeValue(rv.Elem())
	}
	if rv.Kind() == reflect.String {
		return json.Marshal(base64.StdEncoding.EncodeToString([]byte(rv.String())))
	}
	return json.Marshal(rv.Interface())
}

// decodeValue is encodeValue's inverse, into the settable field rv.
func decodeValue(data []byte, rv reflect.Value) error {
	if rv.Kind() == reflect.Pointer {
		if string(data) == "null" {
			rv.Set(reflect.Zero(rv.Type()))
			return nil
		}
		if rv.IsNil() {
			rv.Set(reflect.New(rv.Type().Elem()))
		}
		return decodeValue(data, rv.Elem())
	}
	if rv.Kind() == reflect.String {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return err
		}
		rv.SetString(string(b))
		return nil
	}
	return json.Unmarshal(data, rv.Addr().Interface())
}

// replay returns the first outcome of a request, or ErrRequestReused when
// the id was recorded for another request.
func (t *Table[T]) replay(op string, e *ledgerEntry, fp string) (Result[T], error) {
	if e.Fingerprint != fp {
		return Result[T]{}, t.errf(op, ErrRequestReused, "request id %q was recorded for a different request", e.RequestID)
	}
	res, err := t.decodeOutcome([]byte(e.Outcome))
	if err != nil {
		return Result[T]{}, t.errf(op, ErrInvalidValue, "the recorded outcome of request %q cannot be read: %v", e.RequestID, err)
	}
	return res, nil
}

// fingerprint identifies what a request asks for: the table, every value
// and the updates with their bound values.
func (t *tableCore) fingerprint(values []any, ups []Update) string {
	h := sha256.New()
	fmt.Fprintf(h, "%d:%s;", len(t.name), t.name)
	for i := range values {
		h.Write([]byte(valueString(values[i])))
	}
	h.Write([]byte(signature(ups)))
	for _, a := range bindArgs(ups, nil) {
		h.Write([]byte(valueString(a)))
	}
	return hex.EncodeToString(h.Sum(nil))
}
