package sqlite

import (
	"context"

	"github.com/getorcreate/getorcreate/dialect"
	"github.com/getorcreate/getorcreate/dialect/internal/sqlbuild"
)

var _ dialect.FindManyCompiler = sqliteDialect{}

// CompileFindMany is the bulk plan's first find alone, for a read replica
// (a copy of the database file that a replication tool keeps).
func (sqliteDialect) CompileFindMany(t *dialect.Table, n int) (dialect.FindManyPlan, error) {
	p := &bulkPlan{t: t}
	return findMany{p.buildFind(n)}, nil
}

type findMany struct{ st sqlbuild.Stmt }

func (f findMany) FindMany(ctx context.Context, q dialect.Querier, b *dialect.Batch) ([]bool, error) {
	found, err := sqlbuild.ScanBatch(ctx, q, f.st.SQL, f.st.BatchArgs(b.Rows, nil), b.Rows, nil)
	return found, interpret(err)
}
