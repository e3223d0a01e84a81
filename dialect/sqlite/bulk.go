package sqlite

import (
	"context"
	"strconv"

	"github.com/getorcreate/getorcreate/dialect"
)

var _ dialect.BulkCompiler = sqliteDialect{}

// upsertSyntax is the syntax inside INSERT ... ON CONFLICT DO UPDATE, where
// a bare column is the stored row and excluded.col the proposed one.
var upsertSyntax = func() dialect.Syntax {
	s := syntax
	s.Proposed = func(b *dialect.Builder, col string) { b.WriteString("excluded."); b.Ident(col) }
	return s
}()

type bulkPlan struct {
	single *plan
	t      *dialect.Table
	s      *dialect.Shape
	find   dialect.StmtCache
	insert dialect.StmtCache
	upsert dialect.Stmt
}

// CompileBulk builds, for n rows:
//
//	find:   WITH v (ord, c0) AS (VALUES (0, ?), ...) SELECT v.ord, t.cols FROM v CROSS JOIN tbl t WHERE t.key = v.c0
//	insert: INSERT INTO tbl (...) VALUES (...), ... ON CONFLICT (key) DO NOTHING
//	upsert: INSERT INTO tbl (...) VALUES (...), ... ON CONFLICT (key) DO UPDATE SET ...
//
// A chunk is find, write, find: three statements, all inside one write
// transaction. SQLite has one writer at a time and a transaction whose
// snapshot went stale cannot write (SQLITE_BUSY_SNAPSHOT, retried whole), so
// the keys the first find missed are exactly the ones this batch creates.
// The join puts the table's column on the left, so the comparison uses the
// column's collation.
func (d sqliteDialect) CompileBulk(t *dialect.Table, s *dialect.Shape, f dialect.Features, n int) (dialect.BulkPlan, error) {
	single, err := d.Compile(t, s, f)
	if err != nil {
		return nil, err
	}
	p := &bulkPlan{t: t, s: s, single: single.(*plan)}
	if len(s.Updates) > 0 {
		p.upsert = p.buildWrite(n, true)
	}
	return p, nil
}

func (p *bulkPlan) buildFind(n int) dialect.Stmt {
	t := p.t
	b := dialect.NewBuilder(&syntax, t)
	b.WriteString("WITH v (ord")
	for _, pos := range t.Key {
		b.WriteString(", c" + strconv.Itoa(pos))
	}
	b.WriteString(") AS (VALUES ")
	for j := range n {
		if j > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(" + strconv.Itoa(j))
		for _, pos := range t.Key {
			b.WriteString(", ")
			b.RowValue(j, pos)
		}
		b.WriteString(")")
	}
	b.WriteString(") SELECT v.ord, ")
	b.List("t.", t.Columns, dialect.Seq(len(t.Columns)))
	// CROSS JOIN keeps v as the outer loop (SQLite never reorders it), so
	// each input is one index lookup, whatever the planner guesses of v.
	b.WriteString(" FROM v CROSS JOIN " + quote(t.Name) + " t WHERE ")
	for i, pos := range t.Key {
		if i > 0 {
			b.WriteString(" AND ")
		}
		b.WriteString("t.")
		b.Ident(t.Columns[pos])
		b.WriteString(" = v.c" + strconv.Itoa(pos))
	}
	return b.Stmt()
}

func (p *bulkPlan) buildWrite(n int, update bool) dialect.Stmt {
	t, s := p.t, p.s
	b := dialect.NewBuilder(&upsertSyntax, t)
	b.WriteString("INSERT INTO " + quote(t.Name) + " (")
	b.List("", t.Columns, s.Insert)
	b.WriteString(") VALUES ")
	for j := range n {
		if j > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(")
		b.RowValues(j, s.Insert)
		b.WriteString(")")
	}
	b.WriteString(" ON CONFLICT (")
	b.List("", t.Columns, t.Key)
	if update {
		b.WriteString(") DO UPDATE SET ")
		b.Assignments(s.Updates, nil)
	} else {
		b.WriteString(") DO NOTHING")
	}
	return b.Stmt()
}

func (p *bulkPlan) findRows(ctx context.Context, q dialect.Querier, rows []*dialect.Call) ([]bool, error) {
	st := p.find.Get(len(rows), p.buildFind)
	return dialect.ScanBatch(ctx, q, st.SQL, st.BatchArgs(rows, nil), rows, nil)
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
			c.UpdateArgs, c.LikelyExists, c.InTx = b.UpdateArgs, true, true
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
	miss := dialect.Missing(b.Rows, seen)
	if len(miss) == 0 && !update {
		return nil
	}
	rows := b.Rows
	if !update {
		rows = make([]*dialect.Call, len(miss))
		for k, m := range miss {
			rows[k] = b.Rows[m]
		}
	}
	var st dialect.Stmt
	if update {
		st = p.upsert
	} else {
		st = p.insert.Get(len(rows), func(n int) dialect.Stmt { return p.buildWrite(n, false) })
	}
	if _, err := q.Exec(ctx, st.SQL, st.BatchArgs(rows, b.UpdateArgs)...); err != nil {
		return err
	}
	after, err := p.findRows(ctx, q, rows)
	if err != nil {
		return err
	}
	if k := dialect.Missing(rows, after); len(k) > 0 {
		return dialect.ErrLostRace
	}
	// Keys the first find missed were created by this batch; two inputs
	// that the collation calls one key (NOCASE) found the same stored row,
	// and only the first of them created it.
	for k, m := range miss {
		b.Created[m] = true
		for _, prev := range miss[:k] {
			if dialect.SameStoredKey(p.t, b.Rows[prev], b.Rows[m]) {
				b.Created[m] = false
				break
			}
		}
	}
	return nil
}
