package postgres

import (
	"context"
	"errors"
	"strconv"

	"github.com/getorcreate/getorcreate/dialect"
	"github.com/getorcreate/getorcreate/dialect/internal/sqlbuild"
)

type bulkPlan struct {
	t      *dialect.Table
	s      *dialect.Shape
	fused  sqlbuild.Stmt
	upsert sqlbuild.Stmt
	single *plan // for a partial arbiter: its predicate on one proposed row
}

// CompileBulk builds, for n rows:
//
//	WITH v AS (SELECT * FROM (VALUES (0, $1::type, ...), (1, ...)) x (ord, c0, ...) WHERE x.ord < $k),
//	     s AS (SELECT v.ord, t.cols FROM v JOIN tbl t ON t.key = v.key),
//	     i AS (INSERT INTO tbl (...) SELECT ... FROM v WHERE v.ord NOT IN (SELECT ord FROM s)
//	           ORDER BY v.ord ON CONFLICT (key) DO NOTHING RETURNING cols)
//	SELECT s.ord, s.cols, false FROM s UNION ALL SELECT v.ord, i.cols, true FROM i JOIN v ON i.key = v.key
//
// and for updates:
//
//	WITH v (...) AS (VALUES ...), u AS (INSERT INTO tbl AS t (...) SELECT ... FROM v ORDER BY v.ord
//	     ON CONFLICT (key) DO UPDATE SET ... RETURNING t.cols, t.xmax = 0)
//	SELECT v.ord, u.* FROM u JOIN v ON u.key = v.key
//
// Rows are inserted in ord order, which the caller sorted by key, so two
// batches lock their keys in the same order and cannot deadlock (PG-15).
// Matching results to inputs is a join on the key, so it is the database's
// equality, not Go's, that decides. The statements are built for n rows
// and serve any batch of up to n: $k is the batch's size, and the rows past
// it (bound to copies of the first row's values) are filtered out.
func (pgDialect) CompileBulk(t *dialect.Table, s *dialect.Shape, _ dialect.Features, n int) (dialect.BulkPlan, error) {
	p := &bulkPlan{t: t, s: s}
	if t.Where != "" {
		p.single = compile(t, s)
	}
	p.fused = p.buildFused(n)
	if len(s.Updates) > 0 {
		p.upsert = p.buildUpsert(n)
	}
	return sqlbuild.ClassifyBulk(p, interpret), nil
}

func vcol(i int) string { return "c" + strconv.Itoa(i) }

// values writes "v AS (SELECT * FROM (VALUES (...), ...) x (ord, c0, ...) WHERE x.ord < $k)";
// with args (Shape.RowArgs), each row's update arguments too, as u0, ...,
// each typed as its assignment's column.
func (p *bulkPlan) values(b *sqlbuild.Builder, n int, args []string) {
	t, s := p.t, p.s
	b.WriteString("v AS (SELECT * FROM (VALUES ")
	for j := range n {
		if j > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(" + strconv.Itoa(j))
		for _, pos := range s.Insert {
			b.WriteString(", ")
			b.RowValue(j, pos)
			b.WriteString("::" + t.Schema.Column(t.Columns[pos]).Type)
		}
		for i, col := range args {
			b.WriteString(", ")
			b.RowUpdateArg(j, i)
			b.WriteString("::" + t.Schema.Column(col).Type)
		}
		b.WriteString(")")
	}
	b.WriteString(") x (ord")
	for _, pos := range s.Insert {
		b.WriteString(", " + vcol(pos))
	}
	for i := range args {
		b.WriteString(", u" + strconv.Itoa(i))
	}
	b.WriteString(") WHERE x.ord < ")
	b.Count()
	b.WriteString(")")
}

// valueColumns writes "v.c0, v.c1, ..." for the inserted columns.
func (p *bulkPlan) valueColumns(b *sqlbuild.Builder) {
	for i, pos := range p.s.Insert {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("v." + vcol(pos))
	}
}

// source writes what an insert selects from: v, and, for a partial
// arbiter, the proposed row of each of its rows, with the predicate's
// columns named as the table's, where the predicate holds.
func (p *bulkPlan) source(b *sqlbuild.Builder) {
	b.WriteString(" FROM v")
	if p.t.Where == "" {
		return
	}
	b.WriteString(" CROSS JOIN LATERAL (SELECT ")
	b.ProposedRow(p.s, func(pos int) { b.WriteString("v." + vcol(pos)) }, func(col, expr string) {
		b.WriteString("(" + expr + ")::" + p.t.Schema.Column(col).Type)
	})
	b.WriteString(") p WHERE (" + p.t.Where + ")")
}

// keyJoin writes "l.k = v.ck AND ...".
func (p *bulkPlan) keyJoin(b *sqlbuild.Builder, l string) {
	for i, pos := range p.t.Key {
		if i > 0 {
			b.WriteString(" AND ")
		}
		b.WriteString(l + ".")
		b.Ident(p.t.Columns[pos])
		if c := p.t.Schema.Column(p.t.Columns[pos]); c.Nullable && p.t.Arbiter.NullsNotDistinct {
			b.WriteString(" IS NOT DISTINCT FROM ")
		} else {
			b.WriteString(" = ")
		}
		b.WriteString("v." + vcol(pos))
	}
}

func (p *bulkPlan) buildFused(n int) sqlbuild.Stmt {
	t, s := p.t, p.s
	all := sqlbuild.Seq(len(t.Columns))
	table := quote(t.Name)
	b := sqlbuild.NewBuilder(&syntax, t)
	b.WriteString("WITH ")
	p.values(b, n, nil)
	b.WriteString(", s AS (SELECT v.ord, ")
	b.List("t.", t.Columns, all)
	b.WriteString(" FROM v JOIN " + table + " t ON ")
	p.keyJoin(b, "t")
	b.AndWhere()
	b.WriteString("), i AS (INSERT INTO " + table + " (")
	b.List("", t.Columns, s.Insert)
	b.WriteString(") SELECT ")
	p.valueColumns(b)
	p.source(b)
	if t.Where == "" {
		b.WriteString(" WHERE")
	} else {
		b.WriteString(" AND")
	}
	b.WriteString(" v.ord NOT IN (SELECT ord FROM s) ORDER BY v.ord ON CONFLICT ")
	b.ConflictTarget()
	b.WriteString(" DO NOTHING RETURNING ")
	b.List("", t.Columns, all)
	b.WriteString(") SELECT s.ord, ")
	b.List("s.", t.Columns, all)
	// Two inputs that the column's collation calls one key (citext, a
	// nondeterministic collation) both join the one inserted row: only the
	// first of them created it.
	b.WriteString(", false FROM s UNION ALL SELECT v.ord, ")
	b.List("i.", t.Columns, all)
	b.WriteString(", row_number() OVER (PARTITION BY ")
	b.List("i.", t.Columns, t.Key)
	b.WriteString(" ORDER BY v.ord) = 1 FROM i JOIN v ON ")
	p.keyJoin(b, "i")
	return b.Stmt()
}

func (p *bulkPlan) buildUpsert(n int) sqlbuild.Stmt {
	t, s := p.t, p.s
	all := sqlbuild.Seq(len(t.Columns))
	b := sqlbuild.NewBuilder(&syntax, t)
	b.WriteString("WITH ")
	var args []string
	if s.RowArgs {
		// ON CONFLICT DO UPDATE sees only the stored and the proposed row,
		// so each row's own argument is read back from v by its key, which
		// the proposed row carries (a key is in a batch once).
		args = sqlbuild.ArgColumns(s.Updates)
		b.RowArg = func(b *sqlbuild.Builder, i int) {
			b.WriteString("(SELECT v.u" + strconv.Itoa(i) + " FROM v WHERE ")
			p.keyJoin(b, "EXCLUDED")
			b.WriteString(")")
		}
	}
	p.values(b, n, args)
	b.WriteString(", u AS (INSERT INTO " + quote(t.Name) + " AS " + alias + " (")
	b.List("", t.Columns, s.Insert)
	b.WriteString(") SELECT ")
	p.valueColumns(b)
	p.source(b)
	b.WriteString(" ORDER BY v.ord ON CONFLICT ")
	b.ConflictTarget()
	b.WriteString(" DO UPDATE SET ")
	b.Assignments(s.Updates, nil)
	b.RowArg = nil
	b.WriteString(" RETURNING ")
	b.List(alias+".", t.Columns, all)
	b.WriteString(", " + alias + ".xmax = 0 AS goc_created) SELECT v.ord, ")
	b.List("u.", t.Columns, all)
	b.WriteString(", u.goc_created FROM u JOIN v ON ")
	p.keyJoin(b, "u")
	return b.Stmt()
}

// GetOrCreateMany runs the fused statement; rows it did not return lost a
// race to a transaction that committed after its snapshot, and go round
// again (a new statement, a new snapshot under READ COMMITTED).
func (p *bulkPlan) GetOrCreateMany(ctx context.Context, q dialect.Querier, b *dialect.Batch) error {
	rows := b.Rows
	idx := sqlbuild.Seq(len(rows))
	for range dialect.LostRaceTries {
		seen, err := sqlbuild.ScanBatch(ctx, q, p.fused.SQL, p.fused.BatchArgs(rows, nil), rows,
			func(ord int) []any { return []any{&b.Created[idx[ord]]} })
		if err != nil {
			return err
		}
		miss := sqlbuild.Missing(rows, seen)
		if len(miss) == 0 {
			return nil
		}
		if err := p.notCovered(ctx, q, rows, idx, miss); err != nil {
			return err
		}
		next := make([]*dialect.Call, len(miss))
		nidx := make([]int, len(miss))
		for k, m := range miss {
			next[k], nidx[k] = rows[m], idx[m]
		}
		rows, idx = next, nidx
	}
	return dialect.LostRace()
}

// UpdateOrCreateMany is one statement per chunk.
func (p *bulkPlan) UpdateOrCreateMany(ctx context.Context, q dialect.Querier, b *dialect.Batch) error {
	seen, err := sqlbuild.ScanBatch(ctx, q, p.upsert.SQL, p.upsert.BatchArgs(b.Rows, b.UpdateArgs), b.Rows,
		func(ord int) []any { return []any{&b.Created[ord]} })
	if err != nil {
		return err
	}
	for _, m := range sqlbuild.Missing(b.Rows, seen) {
		if p.single == nil {
			return errors.New("bulk upsert did not return every row")
		}
		// A proposed row outside the partial index: see uncoveredUpdate.
		c := *b.Rows[m]
		if !p.s.RowArgs {
			c.UpdateArgs = b.UpdateArgs
		}
		if err := p.single.uncoveredUpdate(ctx, q, &c); err != nil {
			var e *dialect.Error
			if errors.As(err, &e) {
				e.Row, e.HasRow = m, true
			}
			return err
		}
	}
	return nil
}

// notCovered asks, for a partial arbiter, whether a row the statement did
// not return was left out because the predicate fails on it (a lost race
// is the other reason), and names the first such row of the batch.
func (p *bulkPlan) notCovered(ctx context.Context, q dialect.Querier, rows []*dialect.Call, idx, miss []int) error {
	if p.single == nil {
		return nil
	}
	for _, m := range miss {
		if err := p.single.notCovered(ctx, q, rows[m]); err != nil {
			var e *dialect.Error
			if errors.As(err, &e) {
				e.Row, e.HasRow = idx[m], true
			}
			return err
		}
	}
	return nil
}
