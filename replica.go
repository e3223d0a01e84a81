package getorcreate

import (
	"context"

	"github.com/getorcreate/getorcreate/dialect"
)

// Read replicas (Config.Replica).
//
// A table with a replica sends the first lookup of GetOrCreate,
// GetOrCreateFunc and GetOrCreateMany there. What the replica finds is
// returned as it is, with Created false and FromReplica set; a key it
// does not find, a replica that fails or is unreachable, every write
// (UpdateOrCreate, UpdateOrCreateMany, UpdateOrCreateOnce) and every ...Tx
// call go to the primary, where the unique index decides exactly as
// without a replica. So a replica never makes a call report Created for a
// row that existed (a replica has only rows the primary committed, and a
// miss on a stale replica is a lookup on the primary), never returns a row
// of another key (the replica runs the same statement, in the same
// collation), and never creates a second row for a key.
//
// What may be stale: a row read on the replica is the row as the replica
// had replayed it. Its key columns are what was asked for; its other
// columns (a count, a note) may be older than the primary's, and a row
// deleted on the primary but not yet on the replica is still returned.
// DATABASE-FACTS CL-5: a standby missed a row committed on the primary a
// moment before 99% of the time, even with sub-millisecond replay lag. Ask
// for a fresh read with FromPrimary, or call the ...Tx form on the
// primary's *sql.DB.

// PathReplica: the key's row was found on Config.Replica; nothing was
// sent to the primary.
const PathReplica Path = "replica"

// opFindMany is the cache slot of a replica's bulk lookup plans.
const opFindMany uint8 = 100

type primaryOnly struct{}

// FromPrimary returns a context in which a table's calls skip
// Config.Replica and read on the primary: for a caller that needs the
// columns beyond the key as they are now (after its own write, say).
func FromPrimary(ctx context.Context) context.Context {
	return context.WithValue(ctx, primaryOnly{}, true)
}

func (t *tableCore) useReplica(ctx context.Context) bool {
	return t.replica != nil && ctx.Value(primaryOnly{}) == nil
}

// findOnReplica looks the call's key up on the replica. Any failure there
// (unreachable, a query cancelled by recovery on a hot standby) is a miss:
// the call goes on on the primary, which reports what matters. After a
// miss the key is most likely new, so the primary is asked to insert
// first where that never writes an existing row.
func (t *Table[T]) findOnReplica(ctx context.Context, tc *traced, c *dialect.Call, sk shapeKey) bool {
	if !t.useReplica(ctx) {
		return false
	}
	plan, err := t.plan(opGet, shapeKey{nulls: sk.nulls}, nil)
	if err != nil {
		return false
	}
	found, err := plan.Find(ctx, tc.wrap(t.replica), c)
	if err != nil || !found {
		c.ReadFirst = false
		return false
	}
	return true
}

// findManyOnReplica looks the batch's distinct keys up on the replica,
// scanning the rows it finds into their inputs and marking them with hit,
// and returns the keys it did not find, in the batch's order, for the
// primary. On any failure it returns them all.
func (t *tableCore) findManyOnReplica(ctx context.Context, tc *traced, bc *bulkCall, hit func(i int)) []int {
	fc, ok := t.d.(dialect.FindManyCompiler)
	if !ok || !t.useReplica(ctx) {
		return bc.order
	}
	q := tc.wrap(t.replica)
	limit := max(1, min(1024, (t.feat.MaxParams-1)/(len(t.keyPos)+1)))
	found := make([]bool, len(bc.order))
	for lo := 0; lo < len(bc.order); lo += limit {
		part := bc.order[lo:min(lo+limit, len(bc.order))]
		plan, err := t.findManyPlan(fc, sizeClass(len(part), limit))
		if err != nil {
			return bc.order
		}
		b := &dialect.Batch{Rows: make([]*dialect.Call, len(part))}
		for j, i := range part {
			b.Rows[j] = bc.calls[i]
		}
		f, err := plan.FindMany(ctx, q, b)
		if err != nil {
			// Rows scanned before the failure are overwritten by the
			// primary's answer.
			return bc.order
		}
		copy(found[lo:], f)
	}
	rest := make([]int, 0, len(bc.order))
	for k, i := range bc.order {
		if found[k] {
			hit(i)
		} else {
			rest = append(rest, i)
		}
	}
	return rest
}

func (t *tableCore) findManyPlan(fc dialect.FindManyCompiler, rows int) (dialect.FindManyPlan, error) {
	k := planKey{op: opFindMany, rows: rows}
	if p, ok := t.plans.Load(k); ok {
		return p.(dialect.FindManyPlan), nil
	}
	p, err := fc.CompileFindMany(t.dt, rows)
	if err != nil {
		return nil, err
	}
	t.plans.Store(k, p)
	return p, nil
}
