package mysql

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/getorcreate/getorcreate/dialect"
	"github.com/getorcreate/getorcreate/dialect/internal/sqlbuild"
)

type bulkPlan struct {
	t         *dialect.Table
	s         *dialect.Shape
	single    *plan
	returning bool
	find      sqlbuild.Stmt
	// writes holds the multi-row INSERT and upsert statements by their
	// number of rows, each a power of two (see sqlbuild.Pieces).
	writes sync.Map // writeKey -> sqlbuild.Stmt
}

type writeKey struct {
	n      int
	upsert bool
}

// CompileBulk builds, for batches of up to n rows:
//
//	find:   SELECT v.ord, t.cols FROM (SELECT 0 AS ord, ? AS c0 UNION ALL SELECT 1, ? ...) v
//	        JOIN tbl t ON t.key <=> v.c0 WHERE v.ord < ?
//	insert: INSERT INTO tbl (...) VALUES (...), (...) RETURNING cols
//	upsert: INSERT INTO tbl (...) VALUES (IF(LAST_INSERT_ID(1), ?, NULL), ...), ...
//	        ON DUPLICATE KEY UPDATE ... RETURNING cols, LAST_INSERT_ID()
//
// The join compares in the key column's collation (a parameter is more
// coercible than a column), so "Go" finds "go" where the column says they
// are equal. The find is built for n rows and filters out the rows past
// the batch's size. The writes cannot be padded (every VALUES row is
// written), so they are sent in pieces of power-of-two sizes: a few
// statement texts whatever the batches. INSERT ... RETURNING and the
// upsert return one row per VALUES row, in order, so ids come back
// exactly, with no LAST_INSERT_ID arithmetic. The marker works per row:
// each row sets it while it is built, and its own duplicate-key update
// resets it.
func (d myDialect) CompileBulk(t *dialect.Table, s *dialect.Shape, f dialect.Features, n int) (dialect.BulkPlan, error) {
	single, err := d.compile(t, s)
	if err != nil {
		return nil, err
	}
	p := &bulkPlan{t: t, s: s, single: single, returning: d.returning(t)}
	p.find = p.buildFind(n)
	return sqlbuild.ClassifyBulk(p, interpret), nil
}

func (p *bulkPlan) buildFind(n int) sqlbuild.Stmt {
	t := p.t
	b := sqlbuild.NewBuilder(&syntax, t)
	b.WriteString("SELECT v.ord, ")
	b.List("t.", t.Columns, sqlbuild.Seq(len(t.Columns)))
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
	b.WriteString(" WHERE v.ord < ")
	b.Count()
	return b.Stmt()
}

// insertValues writes INSERT INTO t (...) VALUES (...), ... for n rows;
// with marker, each row's first value sets LAST_INSERT_ID(1) (see the
// markers). Row 0 binds like a single call's values, so the single-row plan
// uses it with n = 1.
func insertValues(b *sqlbuild.Builder, t *dialect.Table, s *dialect.Shape, n int, marker bool) {
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

// write returns the multi-row INSERT (or upsert) for n rows, built once.
func (p *bulkPlan) write(n int, upsert bool) sqlbuild.Stmt {
	k := writeKey{n, upsert}
	if st, ok := p.writes.Load(k); ok {
		return st.(sqlbuild.Stmt)
	}
	t := p.t
	b := sqlbuild.NewBuilder(&syntax, t)
	insertValues(b, t, p.s, n, upsert)
	if upsert {
		b.WriteString(" ON DUPLICATE KEY UPDATE ")
		writeMarkerAndUpdates(b, t, p.s)
	}
	b.WriteString(" RETURNING ")
	b.List("", t.Columns, sqlbuild.Seq(len(t.Columns)))
	if upsert {
		b.WriteString(", LAST_INSERT_ID()")
	}
	st := b.Stmt()
	p.writes.Store(k, st)
	return st
}

// inPieces runs fn on consecutive pieces of rows, of power-of-two sizes.
func inPieces(rows []*dialect.Call, fn func(lo int, part []*dialect.Call) error) error {
	lo := 0
	for _, n := range sqlbuild.Pieces(len(rows)) {
		if err := fn(lo, rows[lo:lo+n]); err != nil {
			return err
		}
		lo += n
	}
	return nil
}

// GetOrCreateMany: one find for the chunk; one INSERT ... RETURNING (per
// piece) for the keys it did not find. A duplicate-key error there means
// another transaction inserted one of them in between (the INSERT was
// rolled back whole, MY-10): the remaining keys then go one by one through
// the single-row path, whose locking read sees the winner's row.
func (p *bulkPlan) GetOrCreateMany(ctx context.Context, q dialect.Querier, b *dialect.Batch) error {
	seen, err := sqlbuild.ScanBatch(ctx, q, p.find.SQL, p.find.BatchArgs(b.Rows, nil), b.Rows, nil)
	if err != nil {
		return err
	}
	miss := sqlbuild.Missing(b.Rows, seen)
	if len(miss) == 0 {
		return nil
	}
	done := 0 // misses inserted by the multi-row statements
	if p.returning {
		rows := make([]*dialect.Call, len(miss))
		for k, m := range miss {
			rows[k] = b.Rows[m]
		}
		err := inPieces(rows, func(lo int, part []*dialect.Call) error {
			if err := scanInOrder(ctx, q, p.write(len(part), false), part, nil, nil); err != nil {
				return err
			}
			for k := range part {
				b.Created[miss[lo+k]] = true
			}
			done = lo + len(part)
			return nil
		})
		if err == nil {
			return nil
		}
		if !isDuplicate(err) {
			return err
		}
	}
	for _, m := range miss[done:] {
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
func scanInOrder(ctx context.Context, q dialect.Querier, st sqlbuild.Stmt, rows []*dialect.Call, updateArgs []any, extra func(k int) []any) error {
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

// UpdateOrCreateMany is one upsert per piece on MariaDB; without RETURNING
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
	err := inPieces(b.Rows, func(lo int, part []*dialect.Call) error {
		return scanInOrder(ctx, q, p.write(len(part), true), part, b.UpdateArgs, func(k int) []any { return []any{&marks[lo+k]} })
	})
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
				var e *dialect.Error
				if errors.As(err, &e) {
					e.Row, e.HasRow = i, true
				}
				return err
			}
		default:
			return fmt.Errorf("upsert marker %d: cannot tell whether row %d was inserted", m, i)
		}
	}
	return nil
}
