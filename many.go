package getorcreate

import (
	"cmp"
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

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
// A defaultable column (see Open) is left to the database only when it is
// zero in every input of the batch.
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
	return t.many(ctx, adapt(tx), rows, nil, false)
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
	return t.many(ctx, adapt(tx), rows, updates, true)
}

func (t *Table[T]) many(ctx context.Context, q dialect.Querier, rows []T, ups []Update, update bool) ([]Result[T], error) {
	op := "GetOrCreateMany"
	if update {
		op = "UpdateOrCreateMany"
	}
	if len(rows) == 0 {
		return []Result[T]{}, nil
	}
	if update && len(ups) == 0 {
		update = false
	}
	res := make([]Result[T], len(rows))
	calls := make([]*dialect.Call, len(rows))
	keys := make([]string, len(rows))
	omit := ^uint64(0)
	for i := range rows {
		res[i].Row = rows[i]
		c, sk, err := t.call(op, &res[i], q != nil)
		if err != nil {
			if e, ok := err.(*Error); ok {
				e.Input = i
			}
			return nil, err
		}
		calls[i], omit = c, omit&sk.omit
		keys[i] = t.keyString(c.Values)
	}
	// One write per distinct key, in key order: the same order in every
	// batch, so two batches never wait for each other's locks in a cycle.
	order := make([]int, 0, len(rows))
	first := map[string]int{}
	for i, k := range keys {
		if _, dup := first[k]; !dup {
			first[k] = i
			order = append(order, i)
		}
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(keys[a], keys[b]) })

	kind := opGet
	if update {
		kind = opUpdate
	}
	var updateArgs []any
	if update {
		updateArgs = bindArgs(ups, nil)
	}
	per := len(t.m.Fields) + 1 + len(updateArgs)
	chunk := max(1, min(1000, (t.feat.MaxParams-len(updateArgs))/per))
	failed := -1 // the input a dialect named as the cause of a failure
	runAll := func(q dialect.Querier, inTx bool) (bool, error) {
		failed = -1
		for lo := 0; lo < len(order); lo += chunk {
			part := order[lo:min(lo+chunk, len(order))]
			plan, err := t.bulkPlan(kind, omit, ups, len(part))
			if err != nil {
				return false, err
			}
			b := &dialect.Batch{Rows: make([]*dialect.Call, len(part)), Created: make([]bool, len(part)), UpdateArgs: updateArgs, InTx: inTx}
			for j, i := range part {
				b.Rows[j] = calls[i]
			}
			if update {
				err = plan.UpdateOrCreateMany(ctx, q, b)
			} else {
				err = plan.GetOrCreateMany(ctx, q, b)
			}
			if err != nil {
				var br interface{ BatchRow() int }
				if errors.As(err, &br) && br.BatchRow() >= 0 && br.BatchRow() < len(part) {
					failed = part[br.BatchRow()]
				}
				return false, err
			}
			for j, i := range part {
				res[i].Created = b.Created[j]
			}
		}
		return true, nil
	}
	var attempts int
	var err error
	if q != nil {
		_, attempts, err = t.run(ctx, op, true, func() (bool, error) { return runAll(q, isTx(q)) })
	} else {
		_, attempts, err = t.run(ctx, op, false, func() (bool, error) {
			return t.inOwnTx(ctx, func(tx dialect.Tx) (bool, error) { return runAll(tx, true) })
		})
	}
	if err != nil {
		if e, ok := err.(*Error); ok && failed >= 0 {
			e.Input = failed
		} else if q == nil {
			t.blame(ctx, err, order, calls, updateArgs, kind, omit, ups)
		}
		return nil, err
	}
	for i := range res {
		res[i].Attempts = attempts
		if f := first[keys[i]]; f != i {
			res[i].Row, res[i].Created = res[f].Row, false
		}
	}
	return res, nil
}

// keyString encodes a row's key values exactly, for deduplication and
// ordering: each value length-prefixed, so that no two different keys
// encode alike. It only merges byte-identical keys: keys that differ in
// bytes but that the column's collation calls equal ("Go" and "go" under a
// case-insensitive collation) are left to the database, which matches them.
func (t *tableCore) keyString(values []any) string {
	var b strings.Builder
	for _, p := range t.keyPos {
		v := values[p]
		if mapping.IsNull(v) {
			b.WriteString("N;")
			continue
		}
		if dv, ok := v.(driver.Valuer); ok {
			if x, err := dv.Value(); err == nil {
				v = x
			}
		}
		rv := reflect.ValueOf(v)
		for rv.Kind() == reflect.Pointer && !rv.IsNil() {
			rv = rv.Elem()
		}
		if rv.IsValid() {
			v = rv.Interface()
		}
		s := fmt.Sprintf("%T:%v", v, v)
		fmt.Fprintf(&b, "%d:%s;", len(s), s)
	}
	return b.String()
}

type bulkKey struct {
	planKey
	n int
}

func (t *tableCore) bulkPlan(op uint8, omit uint64, ups []Update, n int) (dialect.BulkPlan, error) {
	k := bulkKey{planKey{omit: omit, op: op}, n}
	if len(ups) > 0 {
		k.sig = signature(ups)
	}
	if p, ok := t.plans.Load(k); ok {
		return p.(dialect.BulkPlan), nil
	}
	bc, ok := t.d.(dialect.BulkCompiler)
	if !ok {
		return nil, fmt.Errorf("getorcreate: dialect %s has no bulk statements", t.d.Name())
	}
	shape, err := t.shape(shapeKey{omit: omit}, ups)
	if err != nil {
		return nil, err
	}
	p, err := bc.CompileBulk(t.dt, shape, t.feat, n)
	if err != nil {
		return nil, fmt.Errorf("getorcreate: compiling bulk statements for %s: %w", t.name, err)
	}
	t.plans.Store(k, p)
	return p, nil
}

// blame finds which input made a batch fail with a data error (a conflict
// on another unique index, a value too long, ...), so that the error can
// name it: the batch's own transaction is gone, so it replays the rows one
// by one, in the batch's order, in a transaction that is rolled back. It
// costs nothing unless a batch failed.
func (t *tableCore) blame(ctx context.Context, err error, order []int, calls []*dialect.Call, updateArgs []any, kind uint8, omit uint64, ups []Update) {
	e, ok := err.(*Error)
	if !ok || e.Kind == nil || IsRetryable(err) || ctx.Err() != nil {
		return
	}
	plan, perr := t.plan(kind, shapeKey{omit: omit}, ups)
	if perr != nil {
		return
	}
	_, _ = t.inOwnTx(ctx, func(tx dialect.Tx) (bool, error) {
		for _, i := range order {
			c := *calls[i]
			c.UpdateArgs, c.InTx = updateArgs, true
			var err error
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
