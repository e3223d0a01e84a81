package getorcreate

import (
	"fmt"
	"slices"

	"github.com/getorcreate/getorcreate/dialect"
)

const (
	opGet uint8 = iota
	opUpdate
)

// shapeKey is what varies a statement's text from call to call: which
// defaultable columns are left out, which key columns are NULL.
type shapeKey struct{ omit, nulls uint64 }

// planKey identifies a compiled plan in the table's cache: the shape, the
// updates' signature, the operation and, for bulk plans, the size class.
type planKey struct {
	shapeKey
	sig     string
	op      uint8
	rows    int  // 0 for single-row plans
	rowArgs bool // bulk plans: each row binds its own update arguments (Shape.RowArgs)
}

// plan returns the compiled single-row plan for a shape, compiling it once.
func (t *tableCore) plan(op uint8, sk shapeKey, ups []Update) (dialect.Plan, error) {
	k := planKey{shapeKey: sk, op: op}
	if len(ups) > 0 {
		k.sig = signature(ups)
	}
	if p, ok := t.plans.Load(k); ok {
		return p.(dialect.Plan), nil
	}
	shape, err := t.shape(sk, ups)
	if err != nil {
		return nil, err
	}
	p, err := t.d.Compile(t.dt, shape, t.feat)
	if err != nil {
		return nil, fmt.Errorf("getorcreate: compiling statements for %s: %w", t.name, err)
	}
	t.plans.Store(k, p)
	return p, nil
}

// bulkPlan returns the compiled bulk plan for a shape and a size class.
func (t *tableCore) bulkPlan(op uint8, omit uint64, ups []Update, rows int, rowArgs bool) (dialect.BulkPlan, error) {
	k := planKey{shapeKey: shapeKey{omit: omit}, op: op, rows: rows, rowArgs: rowArgs}
	if len(ups) > 0 {
		k.sig = signature(ups)
	}
	if p, ok := t.plans.Load(k); ok {
		return p.(dialect.BulkPlan), nil
	}
	shape, err := t.shape(shapeKey{omit: omit}, ups)
	if err != nil {
		return nil, err
	}
	shape.RowArgs = rowArgs
	p, err := t.d.CompileBulk(t.dt, shape, t.feat, rows)
	if err != nil {
		return nil, fmt.Errorf("getorcreate: compiling bulk statements for %s: %w", t.name, err)
	}
	t.plans.Store(k, p)
	return p, nil
}

// sizeClass is the number of rows the bulk statement for a chunk of n rows
// is built for: the next power of two, at most limit. The dialects fill
// the rest (or split their writes), so a table compiles a handful of bulk
// statements, not one per batch size.
func sizeClass(n, limit int) int {
	c := 1
	for c < n {
		c <<= 1
	}
	return min(c, limit)
}

// shape lists the columns an insert gives and the update assignments.
func (t *tableCore) shape(sk shapeKey, ups []Update) (*dialect.Shape, error) {
	shape := &dialect.Shape{NullKeys: sk.nulls}
	for i := range t.m.Fields {
		if j := slices.Index(t.defaultable, i); j >= 0 && sk.omit&(1<<j) != 0 {
			continue
		}
		shape.Insert = append(shape.Insert, i)
	}
	if len(ups) > 0 {
		as, err := t.assignments(ups)
		if err != nil {
			return nil, err
		}
		shape.Updates = as
	}
	return shape, nil
}
