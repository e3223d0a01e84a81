package sqlite

import (
	"context"
	"errors"
	"strconv"

	"github.com/getorcreate/getorcreate/dialect"
	"github.com/getorcreate/getorcreate/dialect/internal/sqlbuild"
)

// upsertSyntax is the syntax inside INSERT ... ON CONFLICT DO UPDATE, where
// a bare column is the stored row and excluded.col the proposed one.
var upsertSyntax = func() sqlbuild.Syntax {
	s := syntax
	s.Proposed = func(b *sqlbuild.Builder, col string) { b.WriteString("excluded."); b.Ident(col) }
	return s
}()

type bulkPlan struct {
	single *plan
	t      *dialect.Table
	s      *dialect.Shape
	find   sqlbuild.Stmt
	insert sqlbuild.Stmt
	upsert sqlbuild.Stmt
}

// CompileBulk builds, for batches of up to n rows:
//
//	find:   WITH v (ord, c0) AS (VALUES (0, ?), ...) SELECT v.ord, t.cols FROM v CROSS JOIN tbl t
//	        WHERE v.ord < ? AND t.key = v.c0
//	insert: WITH v (ord, c0, ...) AS (VALUES (0, ?, ...), ...) INSERT INTO tbl (...)
//	        SELECT c0, ... FROM v WHERE ord < ? ORDER BY ord ON CONFLICT (key) DO NOTHING
//	upsert: the same, ON CONFLICT (key) DO UPDATE SET ...
//
// A chunk is find, write, find: three statements, all inside one write
// transaction. SQLite has one writer at a time and a transaction whose
// snapshot went stale cannot write (SQLITE_BUSY_SNAPSHOT, retried whole), so
// the keys the first find missed are exactly the ones this batch creates.
// The join puts the table's column on the left, so the comparison uses the
// column's collation. Each statement is built for n rows and leaves out the
// rows past the batch's size (ord < ?).
func (d sqliteDialect) CompileBulk(t *dialect.Table, s *dialect.Shape, f dialect.Features, n int) (dialect.BulkPlan, error) {
	p := &bulkPlan{t: t, s: s, single: compile(t, s)}
	p.find = p.buildFind(n)
	p.insert = p.buildWrite(n, false)
	if len(s.Updates) > 0 {
		p.upsert = p.buildWrite(n, true)
	}
	return sqlbuild.ClassifyBulk(p, interpret), nil
}

// values writes "v (ord, c...) AS (VALUES (0, ?, ...), ...)" for the
// columns at positions, and then, as u0, ..., the first args update
// arguments of each row (Shape.RowArgs).
func values(b *sqlbuild.Builder, n int, positions []int, args int) {
	b.WriteString("v (ord")
	for _, pos := range positions {
		b.WriteString(", c" + strconv.Itoa(pos))
	}
	for i := range args {
		b.WriteString(", u" + strconv.Itoa(i))
	}
	b.WriteString(") AS (VALUES ")
	for j := range n {
		if j > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(" + strconv.Itoa(j))
		for _, pos := range positions {
			b.WriteString(", ")
			b.RowValue(j, pos)
		}
		for i := range args {
			b.WriteString(", ")
			b.RowUpdateArg(j, i)
		}
		b.WriteString(")")
	}
	b.WriteString(")")
}

func (p *bulkPlan) buildFind(n int) sqlbuild.Stmt {
	t := p.t
	b := sqlbuild.NewBuilder(&syntax, t)
	b.WriteString("WITH ")
	values(b, n, t.Key, 0)
	b.WriteString(" SELECT v.ord, ")
	b.List("t.", t.Columns, sqlbuild.Seq(len(t.Columns)))
	// CROSS JOIN keeps v as the outer loop (SQLite never reorders it), so
	// each input is one index lookup, whatever the planner guesses of v.
	b.WriteString(" FROM v CROSS JOIN " + quote(t.Name) + " t WHERE v.ord < ")
	b.Count()
	for _, pos := range t.Key {
		b.WriteString(" AND t.")
		b.Ident(t.Columns[pos])
		b.WriteString(" = v.c" + strconv.Itoa(pos))
	}
	b.AndWhere()
	return b.Stmt()
}

func (p *bulkPlan) buildWrite(n int, update bool) sqlbuild.Stmt {
	t, s := p.t, p.s
	b := sqlbuild.NewBuilder(&upsertSyntax, t)
	b.WriteString("WITH ")
	args := 0
	if update && s.RowArgs {
		args = len(sqlbuild.ArgColumns(s.Updates))
	}
	values(b, n, s.Insert, args)
	b.WriteString(" INSERT INTO " + quote(t.Name) + " (")
	b.List("", t.Columns, s.Insert)
	b.WriteString(") SELECT ")
	if t.Where == "" {
		for i, pos := range s.Insert {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString("c" + strconv.Itoa(pos))
		}
		// The WHERE also keeps "ON CONFLICT" from being read as a join
		// constraint of the SELECT.
		b.WriteString(" FROM v WHERE ord < ")
		b.Count()
		b.WriteString(" ORDER BY ord")
	} else {
		// Each row's proposed row, its columns named as the table's, where
		// the partial arbiter's predicate holds on it.
		b.List("", t.Columns, s.Insert)
		b.WriteString(" FROM (SELECT ord AS goc_ord, ")
		b.ProposedRow(s, func(pos int) { b.WriteString("c" + strconv.Itoa(pos)) }, func(_, expr string) { b.WriteString("(" + expr + ")") })
		b.WriteString(" FROM v WHERE ord < ")
		b.Count()
		b.WriteString(") WHERE (" + t.Where + ") ORDER BY goc_ord")
	}
	b.WriteString(" ON CONFLICT ")
	b.ConflictTarget()
	if update {
		b.WriteString(" DO UPDATE SET ")
		if args > 0 {
			// The upsert sees only the stored and the proposed row: each
			// row's own argument is read back from v by its key, which
			// the proposed row carries, compared byte for byte (v's
			// column has no collation; a key is in a batch once).
			b.RowArg = func(b *sqlbuild.Builder, i int) {
				b.WriteString("(SELECT u" + strconv.Itoa(i) + " FROM v WHERE ")
				for k, pos := range t.Key {
					if k > 0 {
						b.WriteString(" AND ")
					}
					b.WriteString("v.c" + strconv.Itoa(pos) + " IS excluded.")
					b.Ident(t.Columns[pos])
				}
				b.WriteString(")")
			}
		}
		b.Assignments(s.Updates, nil)
		b.RowArg = nil
	} else {
		b.WriteString(" DO NOTHING")
	}
	return b.Stmt()
}

func (p *bulkPlan) findRows(ctx context.Context, q dialect.Querier, rows []*dialect.Call) ([]bool, error) {
	return sqlbuild.ScanBatch(ctx, q, p.find.SQL, p.find.BatchArgs(rows, nil), rows, nil)
}

func (p *bulkPlan) GetOrCreateMany(ctx context.Context, q dialect.Querier, b *dialect.Batch) error {
	return p.write(ctx, q, b, false)
}

func (p *bulkPlan) UpdateOrCreateMany(ctx context.Context, q dialect.Querier, b *dialect.Batch) error {
	return p.write(ctx, q, b, true)
}

func (p *bulkPlan) write(ctx context.Context, q dialect.Querier, b *dialect.Batch, update bool) error {
	if !b.InTx {
		// Outside a transaction another connection may write between our
		// statements, and "missed by the first find" would no longer mean
		// "created by us": go row by row through the single-row path.
		for i, c := range b.Rows {
			if !p.s.RowArgs {
				c.UpdateArgs = b.UpdateArgs
			}
			c.ReadFirst, c.InTx = true, true
			var err error
			if update {
				b.Created[i], err = p.single.UpdateOrCreate(ctx, q, c)
			} else {
				b.Created[i], err = p.single.GetOrCreate(ctx, q, c)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	seen, err := p.findRows(ctx, q, b.Rows)
	if err != nil {
		return err
	}
	miss := sqlbuild.Missing(b.Rows, seen)
	if len(miss) == 0 && !update {
		return nil
	}
	rows := b.Rows
	st := p.upsert
	if !update {
		rows = make([]*dialect.Call, len(miss))
		for k, m := range miss {
			rows[k] = b.Rows[m]
		}
		st = p.insert
	}
	res, err := q.Exec(ctx, st.SQL, st.BatchArgs(rows, b.UpdateArgs)...)
	if err != nil {
		return err
	}
	if update && p.t.Where != "" {
		if err := p.uncovered(ctx, q, b, res, seen); err != nil {
			return err
		}
	}
	after, err := p.findRows(ctx, q, rows)
	if err != nil {
		return err
	}
	if k := sqlbuild.Missing(rows, after); len(k) > 0 {
		// Nothing else writes inside this transaction: a row the batch
		// did not leave behind is one the partial index would not cover.
		for _, m := range k {
			if err := p.single.notCovered(ctx, q, rows[m]); err != nil {
				var e *dialect.Error
				if errors.As(err, &e) {
					e.Row, e.HasRow = m, true
					if !update {
						e.Row = miss[m]
					}
				}
				return err
			}
		}
		return dialect.LostRace()
	}
	// Keys the first find missed were created by this batch; two inputs
	// that the collation calls one key (NOCASE) found the same stored row,
	// and only the first of them created it.
	for k, m := range miss {
		b.Created[m] = true
		for _, prev := range miss[:k] {
			if sqlbuild.SameStoredKey(p.t, b.Rows[prev], b.Rows[m]) {
				b.Created[m] = false
				break
			}
		}
	}
	return nil
}

// uncovered finds, after a bulk upsert on a partial arbiter, the rows it
// left alone: those whose proposed row fails the predicate, which the
// upsert filters out before any conflict. Each one's covered row, if the
// first find saw it, is updated with a plain UPDATE (the row passed is
// only for creating); one without is refused. The upsert's change count
// (inserted plus updated rows, SQ-2) says whether there are any, so a
// batch of covered rows costs nothing more.
func (p *bulkPlan) uncovered(ctx context.Context, q dialect.Querier, b *dialect.Batch, res dialect.Result, seen []bool) error {
	if n, err := res.RowsAffected(); err != nil || n == int64(len(b.Rows)) {
		return err
	}
	for i, c := range b.Rows {
		ok, err := sqlbuild.ScanCovered(ctx, q, p.single.covered, c)
		if err != nil {
			return err
		}
		if ok {
			continue
		}
		if !seen[i] {
			e := dialect.NotCovered(p.t.Where)
			e.Row, e.HasRow = i, true
			return e
		}
		if !p.s.RowArgs {
			c.UpdateArgs = b.UpdateArgs
		}
		if _, err := p.single.update.QueryOne(ctx, q, c, c.Dest...); err != nil {
			return err
		}
	}
	return nil
}
