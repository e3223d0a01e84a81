package mysql

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/getorcreate/getorcreate/dialect"
)

var _ dialect.BulkCompiler = myDialect{}

type bulkPlan struct {
	t         *dialect.Table
	s         *dialect.Shape
	single    *plan
	returning bool
	find      dialect.StmtCache
	insert    dialect.StmtCache
	upsert    dialect.Stmt
}

// CompileBulk builds, for n rows:
//
//	find:   SELECT v.ord, t.cols FROM (SELECT 0 AS ord, ? AS c0 UNION ALL SELECT 1, ? ...) v
//	        JOIN tbl t ON t.key = v.c0
//	insert: INSERT INTO tbl (...) VALUES (...), (...) RETURNING cols
//	upsert: INSERT INTO tbl (...) VALUES (IF(LAST_INSERT_ID(1), ?, NULL), ...), ...
//	        ON DUPLICATE KEY UPDATE ... RETURNING cols, LAST_INSERT_ID()
//
// The join compares in the key column's collation (a parameter is more
// coercible than a column), so "Go" finds "go" where the column says they
// are equal. INSERT ... RETURNING and the upsert return one row per VALUES
// row, in order, so ids come back exactly, with no LAST_INSERT_ID
// arithmetic. The marker works per row: each row sets it while it is built,
// and its own duplicate-key update resets it.
func (d myDialect) CompileBulk(t *dialect.Table, s *dialect.Shape, f dialect.Features, n int) (dialect.BulkPlan, error) {
	single, err := d.Compile(t, s, f)
	if err != nil {
		return nil, err
	}
	p := &bulkPlan{t: t, s: s, single: single.(*plan), returning: f.Returning}
	if len(s.Updates) > 0 && p.returning {
		p.upsert = p.buildUpsert(n)
	}
	return p, nil
}

func (p *bulkPlan) buildFind(n int, locked bool) dialect.Stmt {
	t := p.t
	b := dialect.NewBuilder(&syntax, t)
	b.WriteString("SELECT v.ord, ")
	b.List("t.", t.Columns, dialect.Seq(len(t.Columns)))
	b.WriteString(" FROM (")
	for j := range n {
		if j > 0 {
			b.WriteString(" UNION ALL ")
		}
		b.WriteString("SELECT " + strconv.Itoa(j))
		if j == 0 {
			b.WriteString(" AS ord")
		}
		for _, pos := range t.Key {
			b.WriteString(", ")
			b.RowValue(j, pos)
			if j == 0 {
				b.WriteString(" AS c" + strconv.Itoa(pos))
			}
		}
	}
	b.WriteString(") v JOIN " + quote(t.Name) + " t ON ")
	for i, pos := range t.Key {
		if i > 0 {
			b.WriteString(" AND ")
		}
		b.WriteString("t.")
		b.Ident(t.Columns[pos])
		b.WriteString(" <=> v.c" + strconv.Itoa(pos))
	}
	if locked {
		b.WriteString(" LOCK IN SHARE MODE")
	}
	return b.Stmt()
}

// insertValues writes INSERT INTO t (...) VALUES (...), ... for n rows;
// with marker, each row's first value sets LAST_INSERT_ID(1) (see the
// markers). Row 0 binds like a single call's values, so the single-row plan
// uses it with n = 1.
func insertValues(b *dialect.Builder, t *dialect.Table, s *dialect.Shape, n int, marker bool) {
	b.WriteString("INSERT INTO " + quote(t.Name) + " (")
	b.List("", t.Columns, s.Insert)
	b.WriteString(") VALUES ")
	for j := range n {
		if j > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(")
		for i, pos := range s.Insert {
			if i > 0 {
				b.WriteString(", ")
			}
			if i == 0 && marker {
				b.WriteString("IF(LAST_INSERT_ID(1), ")
				b.RowValue(j, pos)
				b.WriteString(", NULL)")
				continue
			}
			b.RowValue(j, pos)
		}
		b.WriteString(")")
	}
}

func (p *bulkPlan) buildInsert(n int) dialect.Stmt {
	b := dialect.NewBuilder(&syntax, p.t)
	insertValues(b, p.t, p.s, n, false)
	b.WriteString(" RETURNING ")
	b.List("", p.t.Columns, dialect.Seq(len(p.t.Columns)))
	return b.Stmt()
}

func (p *bulkPlan) buildUpsert(n int) dialect.Stmt {
	t := p.t
	b := dialect.NewBuilder(&syntax, t)
	insertValues(b, p.t, p.s, n, true)
	b.WriteString(" ON DUPLICATE KEY UPDATE ")
	writeMarkerAndUpdates(b, t, p.s)
	b.WriteString(" RETURNING ")
	b.List("", t.Columns, dialect.Seq(len(t.Columns)))
	b.WriteString(", LAST_INSERT_ID()")
	return b.Stmt()
}

// GetOrCreateMany: one find for the chunk; one INSERT ... RETURNING for the
// keys it did not find. A duplicate-key error there means another
// transaction inserted one of them in between (the INSERT was rolled back
// whole, MY-10): the remaining keys then go one by one through the
// single-row path, whose locking read sees the winner's row.
func (p *bulkPlan) GetOrCreateMany(ctx context.Context, q dialect.Querier, b *dialect.Batch) error {
	find := p.find.Get(len(b.Rows), func(n int) dialect.Stmt { return p.buildFind(n, false) })
	seen, err := dialect.ScanBatch(ctx, q, find.SQL, find.BatchArgs(b.Rows, nil), b.Rows, nil)
	if err != nil {
		return err
	}
	miss := dialect.Missing(b.Rows, seen)
	if len(miss) == 0 {
		return nil
	}
	if p.returning {
		rows := make([]*dialect.Call, len(miss))
		for k, m := range miss {
			rows[k] = b.Rows[m]
		}
		ins := p.insert.Get(len(rows), p.buildInsert)
		err := scanInOrder(ctx, q, ins, rows, nil, nil)
		if err == nil {
			for _, m := range miss {
				b.Created[m] = true
			}
			return nil
		}
		if Dialect.Classify(err) != dialect.ClassUnique {
			return err
		}
	}
	for _, m := range miss {
		created, err := p.single.GetOrCreate(ctx, q, b.Rows[m])
		if err != nil {
			return err
		}
		b.Created[m] = created
	}
	return nil
}

// scanInOrder runs a statement that returns one row per VALUES row, in
// order, scanning row k into rows[k].Dest and then extra(k).
func scanInOrder(ctx context.Context, q dialect.Querier, st dialect.Stmt, rows []*dialect.Call, updateArgs []any, extra func(k int) []any) error {
	rs, err := q.Query(ctx, st.SQL, st.BatchArgs(rows, updateArgs)...)
	if err != nil {
		return err
	}
	defer rs.Close()
	k := 0
	for rs.Next() {
		if k >= len(rows) {
			return errors.New("statement returned more rows than it wrote")
		}
		dest := rows[k].Dest
		if extra != nil {
			dest = append(dest[:len(dest):len(dest)], extra(k)...)
		}
		if err := rs.Scan(dest...); err != nil {
			return err
		}
		k++
	}
	if err := rs.Err(); err != nil {
		return err
	}
	if k != len(rows) {
		return errors.New("statement returned fewer rows than it wrote")
	}
	return rs.Close()
}

// UpdateOrCreateMany is one upsert per chunk on MariaDB; without RETURNING
// (MySQL) each row goes through the single-row path.
func (p *bulkPlan) UpdateOrCreateMany(ctx context.Context, q dialect.Querier, b *dialect.Batch) error {
	if !p.returning {
		for i, c := range b.Rows {
			c.UpdateArgs = b.UpdateArgs
			created, err := p.single.UpdateOrCreate(ctx, q, c)
			if err != nil {
				return err
			}
			b.Created[i] = created
		}
		return nil
	}
	marks := make([]uint64, len(b.Rows))
	err := scanInOrder(ctx, q, p.upsert, b.Rows, b.UpdateArgs, func(k int) []any { return []any{&marks[k]} })
	if err != nil {
		return err
	}
	for i, m := range marks {
		switch m {
		case markInserted:
			b.Created[i] = true
		case markUpdated:
		case markOther:
			c := *b.Rows[i]
			c.UpdateArgs = b.UpdateArgs
			if _, err := p.single.updateExisting(ctx, q, &c); err != nil {
				if ou, ok := err.(*OtherUniqueError); ok {
					ou.Row = i
				}
				return err
			}
		default:
			return fmt.Errorf("upsert marker %d: cannot tell whether row %d was inserted", m, i)
		}
	}
	return nil
}
