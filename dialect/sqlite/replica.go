package sqlite

import (
	"github.com/getorcreate/getorcreate/dialect"
	"github.com/getorcreate/getorcreate/dialect/internal/sqlbuild"
)

var _ dialect.FindManyCompiler = sqliteDialect{}

// CompileFindMany is the bulk plan's first find alone, for a read replica
// (a copy of the database file that a replication tool keeps).
func (sqliteDialect) CompileFindMany(t *dialect.Table, n int) (dialect.FindManyPlan, error) {
	p := &bulkPlan{t: t}
	return sqlbuild.FindMany(p.buildFind(n), interpret), nil
}
