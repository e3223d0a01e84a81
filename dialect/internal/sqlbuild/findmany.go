package sqlbuild

import (
	"context"

	"github.com/getorcreate/getorcreate/dialect"
)

// FindMany is a dialect.FindManyPlan for a read-only batch statement that
// returns (ord, columns...) rows, such as a bulk plan's first find; its
// errors go through interpret.
func FindMany(st Stmt, interpret func(error) error) dialect.FindManyPlan {
	return findMany{st, interpret}
}

type findMany struct {
	st Stmt
	in func(error) error
}

func (f findMany) FindMany(ctx context.Context, q dialect.Querier, b *dialect.Batch) ([]bool, error) {
	found, err := ScanBatch(ctx, q, f.st.SQL, f.st.BatchArgs(b.Rows, nil), b.Rows, nil)
	return found, f.in(err)
}
