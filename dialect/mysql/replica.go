package mysql

import (
	"github.com/getorcreate/getorcreate/dialect"
	"github.com/getorcreate/getorcreate/dialect/internal/sqlbuild"
)

var _ dialect.FindManyCompiler = myDialect{}

// CompileFindMany is the bulk plan's join SELECT alone, for a read
// replica (a MariaDB replica or another Galera node): it reads, in the key
// column's collation, and writes nothing.
func (myDialect) CompileFindMany(t *dialect.Table, n int) (dialect.FindManyPlan, error) {
	p := &bulkPlan{t: t}
	return sqlbuild.FindMany(p.buildFind(n), interpret), nil
}
