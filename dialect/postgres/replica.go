package postgres

import (
	"github.com/getorcreate/getorcreate/dialect"
	"github.com/getorcreate/getorcreate/dialect/internal/sqlbuild"
)

var _ dialect.FindManyCompiler = pgDialect{}

// CompileFindMany builds, for n rows, the read-only half of the fused bulk
// statement, for a read replica:
//
//	WITH v AS (SELECT * FROM (VALUES (0, $1::type), ...) x (ord, c0) WHERE x.ord < $k)
//	SELECT v.ord, t.cols FROM v JOIN tbl t ON t.key = v.c0
//
// It binds only the key columns. A hot standby refuses the fused
// statement whole (25006: its INSERT, even one that would insert nothing).
func (pgDialect) CompileFindMany(t *dialect.Table, n int) (dialect.FindManyPlan, error) {
	p := &bulkPlan{t: t, s: &dialect.Shape{Insert: t.Key}}
	b := sqlbuild.NewBuilder(&syntax, t)
	b.WriteString("WITH ")
	p.values(b, n, nil)
	b.WriteString(" SELECT v.ord, ")
	b.List("t.", t.Columns, sqlbuild.Seq(len(t.Columns)))
	b.WriteString(" FROM v JOIN " + quote(t.Name) + " t ON ")
	p.keyJoin(b, "t")
	return sqlbuild.FindMany(b.Stmt(), interpret), nil
}
