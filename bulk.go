package getorcreate

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/getorcreate/getorcreate/dialect"
	"github.com/getorcreate/getorcreate/internal/mapping"
)

// GetOrCreateMany is GetOrCreate for many rows at once: one result per
// input, in input order. Keys are written in one deterministic order, so
// concurrent batches cannot deadlock each other, and each chunk of the batch
// costs one to three statements whatever its mix of new and existing keys.
// The batch runs in one transaction of the library's own: all or nothing,
// retried whole on a serialization failure, deadlock or busy database.
//
// A key that appears more than once is looked up or created once; every
// result for it carries the row, and only the first can have Created set.
// Each row is inserted as GetOrCreate would insert it: a zero value in a
// column with a DEFAULT is left to the database unless its field is
// tagged `db:",explicit"` (see Open). Rows that leave different columns to
// the database go in separate statements, in key order.
func (t *Table[T]) GetOrCreateMany(ctx context.Context, rows []T) ([]Result[T], error) {
	return t.many(ctx, nil, rows, nil, false)
}

// GetOrCreateManyTx is GetOrCreateMany inside the caller's transaction, with
// the same rules as GetOrCreateTx. It takes no write lock on rows that
// exist: to update them later in the same transaction, take the locks in
// the batch's order first with UpdateOrCreateManyTx, or two such
// transactions can deadlock on MariaDB/MySQL (each holding a shared lock
// from its read, each waiting to write).
func (t *Table[T]) GetOrCreateManyTx(ctx context.Context, tx Querier, rows []T) ([]Result[T], error) {
	return t.many(ctx, t.adapt(tx), rows, nil, false)
}

// UpdateOrCreateMany is UpdateOrCreate for many rows at once, with the same
// updates for every row (use Proposed or SetProposed for per-row values).
// A key that appears more than once is written once, with the first
// occurrence's values.
func (t *Table[T]) UpdateOrCreateMany(ctx context.Context, rows []T, updates ...Update) ([]Result[T], error) {
	return t.many(ctx, nil, rows, updates, true)
}

// UpdateOrCreateManyTx is UpdateOrCreateMany inside the caller's transaction.
func (t *Table[T]) UpdateOrCreateManyTx(ctx context.Context, tx Querier, rows []T, updates ...Update) ([]Result[T], error) {
	return t.many(ctx, t.adapt(tx), rows, updates, true)
}

// bulkCall is one bulk call in preparation: the inputs' values, their
// distinct keys in write order, and what came back.
type bulkCall struct {
	op         string
	update     bool
	calls      []*dialect.Call
	keys       []string
	first      map[string]int // the first input of each key
	order      []int          // the first input of each distinct key, sorted by key
	omits      []uint64       // per input, the defaultable columns it leaves to the database
	ups        []Update
	updateArgs []any
	// rowArgs, when set, are each input's own update arguments (a
	// coalesced batch: see coalesce.go), and argKeys their encodings: a
	// chunk is then also a run of keys whose arguments are equal.
	// With perRow, the dialect binds each row's own arguments (Shape.RowArgs)
	// and a chunk need not split where they differ.
	rowArgs [][]any
	argKeys []string
	perRow  bool
	// autocommit: the batch is one atomic statement (Features.AtomicBulkUpsert)
	// and is sent on its own, with no BEGIN and COMMIT around it.
	autocommit bool
	failed     int // the input a dialect named as the cause of a failure, or -1
}

// sameArgs reports whether inputs i and j can share a statement as far as
// their update arguments go.
func (bc *bulkCall) sameArgs(i, j int) bool {
	return bc.argKeys == nil || bc.perRow || bc.argKeys[i] == bc.argKeys[j]
}

// argsOf returns the update arguments input i binds.
func (bc *bulkCall) argsOf(i int) []any {
	if bc.rowArgs != nil {
		return bc.rowArgs[i]
	}
	return bc.updateArgs
}

func (t *Table[T]) many(ctx context.Context, q dialect.Querier, rows []T, ups []Update, update bool) ([]Result[T], error) {
	op := "GetOrCreateMany"
	if update {
		op = "UpdateOrCreateMany"
	}
	if len(rows) == 0 {
		return []Result[T]{}, nil
	}
	ctx, tc := t.startTrace(ctx, op, q != nil, len(rows))
	res := make([]Result[T], len(rows))
	bc, err := t.prepareBulk(op, res, rows, ups, update && len(ups) > 0, q != nil)
	if err != nil {
		tc.end(ctx, PathFailed, 0, 0, err)
		return nil, err
	}
	var o outcome
	if q == nil && !update {
		bc.order = t.findManyOnReplica(ctx, tc, bc, func(i int) { res[i].FromReplica = true })
	}
	if len(bc.order) > 0 {
		o, err = t.execBulk(ctx, tc, q, bc, func(i int, created bool) { res[i].Created = created })
	} else {
		o.attempts = 1
	}
	if err != nil {
		if e, ok := err.(*Error); ok && bc.failed >= 0 {
			e.Input = bc.failed
		} else if q == nil {
			t.blame(ctx, err, bc)
		}
		tc.end(ctx, PathFailed, 0, o.attempts, err)
		return nil, err
	}
	created := 0
	for i := range res {
		res[i].Attempts = o.attempts
		if f := bc.first[bc.keys[i]]; f != i {
			res[i].Row, res[i].Created, res[i].FromReplica = res[f].Row, false, res[f].FromReplica
		}
		res[i].MaybeCreated = o.inDoubt && !res[i].Created
		created += b2i(res[i].Created)
	}
	tc.end(ctx, PathBulk, created, o.attempts, nil)
	t.grew(created)
	return res, nil
}

// prepareBulk binds every input and orders the distinct keys: one write
// per key, in key order, the same order in every batch, so that two
// batches never wait for each other's locks in a cycle.
func (t *Table[T]) prepareBulk(op string, res []Result[T], rows []T, ups []Update, update, inTx bool) (*bulkCall, error) {
	bc := &bulkCall{op: op, update: update, calls: make([]*dialect.Call, len(rows)), keys: make([]string, len(rows)),
		first: map[string]int{}, omits: make([]uint64, len(rows)), failed: -1}
	for i := range rows {
		res[i].Row = rows[i]
		c, sk, err := t.call(op, &res[i], inTx)
		if err != nil {
			if e, ok := err.(*Error); ok {
				e.Input = i
			}
			return nil, err
		}
		bc.calls[i], bc.omits[i] = c, sk.omit
		bc.keys[i] = t.keyString(c.Values)
	}
	for i, k := range bc.keys {
		if _, dup := bc.first[k]; !dup {
			bc.first[k] = i
			bc.order = append(bc.order, i)
		}
	}
	slices.SortFunc(bc.order, func(a, b int) int { return cmp.Compare(bc.keys[a], bc.keys[b]) })
	if update {
		bc.ups = ups
		bc.updateArgs = bindArgs(ups, nil)
	}
	return bc, nil
}

// execBulk sends the batch in chunks, in the library's own transaction
// (retried whole) or in the caller's, and reports each written input's
// created flag through set.
func (t *tableCore) execBulk(ctx context.Context, tc *traced, q dialect.Querier, bc *bulkCall, set func(i int, created bool)) (outcome, error) {
	kind := opGet
	if bc.update {
		kind = opUpdate
	}
	limit := t.bulkLimit(len(bc.argsOf(bc.order[0])), bc.perRow)
	runAll := func(q dialect.Querier, inTx bool) (bool, error) {
		bc.failed = -1
		for lo, hi := 0, 0; lo < len(bc.order); lo = hi {
			// A chunk is a run of keys, in key order, whose rows leave the
			// same columns to the database: one statement shape. Most
			// batches are one run per chunk.
			first := bc.order[lo]
			omit := bc.omits[first]
			for hi = lo + 1; hi < len(bc.order) && hi-lo < limit && bc.omits[bc.order[hi]] == omit && bc.sameArgs(first, bc.order[hi]); hi++ {
			}
			part := bc.order[lo:hi]
			plan, err := t.bulkPlan(kind, omit, bc.ups, sizeClass(len(part), limit), bc.perRow)
			if err != nil {
				return false, err
			}
			b := &dialect.Batch{Rows: make([]*dialect.Call, len(part)), Created: make([]bool, len(part)), UpdateArgs: bc.argsOf(first), InTx: inTx}
			for j, i := range part {
				b.Rows[j] = bc.calls[i]
				if bc.perRow {
					b.Rows[j].UpdateArgs = bc.rowArgs[i]
				}
			}
			if bc.update {
				err = plan.UpdateOrCreateMany(ctx, q, b)
			} else {
				err = plan.GetOrCreateMany(ctx, q, b)
			}
			if err != nil {
				var de *dialect.Error
				if errors.As(err, &de) && de.HasRow && de.Row >= 0 && de.Row < len(part) {
					bc.failed = part[de.Row]
				}
				return false, err
			}
			for j, i := range part {
				set(i, b.Created[j])
			}
		}
		return true, nil
	}
	m := mode{idempotent: !bc.update || idempotent(bc.ups)}
	if q != nil {
		m.inTx, m.callerTx = true, isTx(q)
		q = tc.wrap(q)
		_, o, err := t.run(ctx, tc, bc.op, m, func() (bool, error) { return runAll(q, m.callerTx) })
		return o, err
	}
	if bc.autocommit {
		_, o, err := t.run(ctx, tc, bc.op, m, func() (bool, error) {
			return t.pinned(ctx, t.own, false, func(q dialect.Querier) (bool, error) { return runAll(tc.wrap(q), false) })
		})
		return o, err
	}
	m.ownTx = true
	_, o, err := t.run(ctx, tc, bc.op, m, func() (bool, error) {
		return t.inOwnTx(ctx, tc, func(tx dialect.Tx) (bool, error) { return runAll(tx, true) })
	})
	return o, err
}

// bulkLimit is the most rows one bulk statement takes, with nargs update
// arguments: what the database's parameter limit allows, at most 1024.
func (t *tableCore) bulkLimit(nargs int, perRow bool) int {
	per := len(t.m.Fields) + 1
	if perRow {
		per += nargs
	}
	return max(1, min(1024, (t.feat.MaxParams-nargs-1)/per))
}

// keyString encodes a row's key values exactly, for deduplication and
// ordering: each value length-prefixed, so that no two different keys
// encode alike. It only merges byte-identical keys: keys that differ in
// bytes but that the column's collation calls equal ("Go" and "go" under a
// case-insensitive collation) are left to the database, which matches them.
func (t *tableCore) keyString(values []any) string {
	var b strings.Builder
	for _, p := range t.keyPos {
		b.WriteString(valueString(values[p]))
	}
	return b.String()
}

// valueString encodes one value exactly and length-prefixed: its type and
// its value, a time.Time by its instant in UTC (without the monotonic
// reading, so equal instants encode alike and sort the same in every
// process), NULL as N.
func valueString(v any) string {
	if mapping.IsNull(v) {
		return "N;"
	}
	v = plainValue(v)
	var s string
	if tm, ok := v.(time.Time); ok {
		s = "time.Time:" + tm.UTC().Format("2006-01-02T15:04:05.000000000")
	} else {
		s = fmt.Sprintf("%T:%v", v, v)
	}
	return strconv.Itoa(len(s)) + ":" + s + ";"
}

// blame finds which input made a batch fail with a data error (a conflict
// on another unique index, a value too long, ...), so that the error can
// name it: the batch's own transaction is gone, so it replays the rows one
// by one, in the batch's order, in a transaction that is rolled back. It
// costs nothing unless a batch failed.
func (t *tableCore) blame(ctx context.Context, err error, bc *bulkCall) {
	e, ok := err.(*Error)
	if !ok || e.Kind == nil || IsRetryable(err) || errors.Is(err, ErrConnection) || ctx.Err() != nil {
		return // not a data error of one input
	}
	kind := opGet
	if bc.update {
		kind = opUpdate
	}
	_, _ = t.inOwnTx(ctx, nil, func(tx dialect.Tx) (bool, error) {
		for _, i := range bc.order {
			plan, err := t.plan(kind, shapeKey{omit: bc.omits[i]}, bc.ups)
			if err != nil {
				break
			}
			c := *bc.calls[i]
			c.UpdateArgs, c.InTx = bc.updateArgs, true
			if kind == opUpdate {
				_, err = plan.UpdateOrCreate(ctx, tx, &c)
			} else {
				_, err = plan.GetOrCreate(ctx, tx, &c)
			}
			if err != nil {
				e.Input = i
				break
			}
		}
		return false, errBlameDone // always roll back
	})
}

var errBlameDone = errors.New("rolled back")
