package dialect

import "context"

// FindManyCompiler is implemented by a Dialect that can look a batch of
// keys up without writing: the statement a table's read replica (a hot
// standby, which refuses every write) serves for GetOrCreateMany. A
// dialect without it sends every bulk call to the primary.
type FindManyCompiler interface {
	// CompileFindMany builds the lookup for batches of up to rows rows.
	CompileFindMany(t *Table, rows int) (FindManyPlan, error)
}

// FindManyPlan looks a batch of keys up.
type FindManyPlan interface {
	// FindMany scans each row of the batch that exists into its
	// Call.Dest and reports which did, one bool per b.Rows. It writes
	// nothing, so it may run on a read-only standby.
	FindMany(ctx context.Context, q Querier, b *Batch) (found []bool, err error)
}
