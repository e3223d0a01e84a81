package sqlbuild

import (
	"context"
	"fmt"
	"github.com/getorcreate/getorcreate/dialect"
	"reflect"
	"slices"
	"strings"
)

// ArgKind says where a bound value of a compiled statement comes from.
type ArgKind uint8

// Where bound values come from.
const (
	ArgValue     ArgKind = iota // Call.Values[Index]
	ArgUpdate                   // Call.UpdateArgs[Index]
	ArgCount                    // the number of real rows of a padded batch statement
	ArgRowUpdate                // for batch statements, Call.UpdateArgs[Index] of row Row (Shape.RowArgs)
)

// ArgRef is one bound value of a compiled statement.
type ArgRef struct {
	Kind  ArgKind
	Index int
	Row   int // for batch statements, the row of the batch
}

// Syntax is what the shared builder needs to know of a dialect.
type Syntax struct {
	Placeholder func(n int) string // n counts from 1
	Quote       func(ident string) string
	Existing    func(b *Builder, col string) // writes the stored row's column in an update
	Proposed    func(b *Builder, col string) // writes the proposed row's column in an update
	Greatest    string
	Least       string
}

// Builder writes one statement and records where its bound values come from.
type Builder struct {
	strings.Builder
	Syn   *Syntax
	Table *dialect.Table
	Refs  []ArgRef
	// RowArg, when set, writes update argument i in an assignment in place
	// of a placeholder: a bulk statement's reference to the row's own
	// argument (Shape.RowArgs).
	RowArg func(b *Builder, i int)
}

// NewBuilder starts a statement on table t.
func NewBuilder(syn *Syntax, t *dialect.Table) *Builder { return &Builder{Syn: syn, Table: t} }

// Pos returns the position of column col in Table.Columns, or -1.
func (b *Builder) Pos(col string) int {
	for i, c := range b.Table.Columns {
		if c == col {
			return i
		}
	}
	return -1
}

// Assignments writes "col = expr, ..." for the shape's updates; guard, when
// not "", wraps each expression as IF(guard, expr, col) (MySQL).
func (b *Builder) Assignments(ups []dialect.Assignment, guard func(b *Builder)) {
	for i, a := range ups {
		if i > 0 {
			b.WriteString(", ")
		}
		b.Ident(a.Column)
		b.WriteString(" = ")
		if guard != nil {
			b.WriteString("IF(")
			guard(b)
			b.WriteString(", ")
			b.Expr(a.Expr)
			b.WriteString(", ")
			b.Ident(a.Column)
			b.WriteString(")")
			continue
		}
		b.Expr(a.Expr)
	}
}

// Ident writes a quoted identifier.
func (b *Builder) Ident(name string) { b.WriteString(b.Syn.Quote(name)) }

// Value writes a placeholder bound to Call.Values[i].
func (b *Builder) Value(i int) {
	b.Refs = append(b.Refs, ArgRef{Kind: ArgValue, Index: i})
	b.WriteString(b.Syn.Placeholder(len(b.Refs)))
}

// UpdateArg writes a placeholder bound to Call.UpdateArgs[i].
func (b *Builder) UpdateArg(i int) {
	b.Refs = append(b.Refs, ArgRef{Kind: ArgUpdate, Index: i})
	b.WriteString(b.Syn.Placeholder(len(b.Refs)))
}

// List writes the quoted columns named by positions, comma-separated, each
// with prefix (a table alias and dot, or "").
func (b *Builder) List(prefix string, cols []string, pos []int) {
	for i, p := range pos {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(prefix)
		b.Ident(cols[p])
	}
}

// KeyMatch writes "k1 = ? AND k2 = ?" for the key columns, each with
// prefix. A key whose value is NULL in this shape (which only reaches here
// when the index treats NULLs as equal) is matched with IS NULL, which an
// index serves, unlike a NULL-safe comparison with a parameter.
func (b *Builder) KeyMatch(prefix string, nulls uint64) {
	t := b.Table
	for i, p := range t.Key {
		if i > 0 {
			b.WriteString(" AND ")
		}
		b.WriteString(prefix)
		b.Ident(t.Columns[p])
		if nulls&(1<<i) != 0 {
			b.WriteString(" IS NULL")
			continue
		}
		b.WriteString(" = ")
		b.Value(p)
	}
}

// Expr writes an update expression.
func (b *Builder) Expr(e dialect.Expr) {
	switch e.Op {
	case dialect.OpArg:
		if b.RowArg != nil {
			b.RowArg(b, e.Arg)
			return
		}
		b.UpdateArg(e.Arg)
	case dialect.OpExisting:
		b.Syn.Existing(b, e.Col)
	case dialect.OpProposed:
		b.Syn.Proposed(b, e.Col)
	case dialect.OpAdd:
		b.WriteString("(")
		b.Expr(e.Args[0])
		b.WriteString(" + ")
		b.Expr(e.Args[1])
		b.WriteString(")")
	case dialect.OpGreatest, dialect.OpLeast:
		if e.Op == dialect.OpGreatest {
			b.WriteString(b.Syn.Greatest)
		} else {
			b.WriteString(b.Syn.Least)
		}
		b.WriteString("(")
		b.Expr(e.Args[0])
		b.WriteString(", ")
		b.Expr(e.Args[1])
		b.WriteString(")")
	case dialect.OpRaw:
		b.WriteString("(")
		n := 0
		for _, part := range strings.SplitAfter(e.SQL, "?") {
			if strings.HasSuffix(part, "?") && n < len(e.Args) {
				b.WriteString(part[:len(part)-1])
				b.Expr(e.Args[n])
				n++
				continue
			}
			b.WriteString(part)
		}
		b.WriteString(")")
	}
}

// Stmt is a compiled statement: its text and where its values come from.
type Stmt struct {
	SQL  string
	Refs []ArgRef
}

// Stmt returns what was written as a Stmt.
func (b *Builder) Stmt() Stmt { return Stmt{SQL: b.String(), Refs: b.Refs} }

// Args binds the statement's values for one call.
func (s *Stmt) Args(c *dialect.Call) []any {
	args := make([]any, len(s.Refs))
	for i, r := range s.Refs {
		if r.Kind == ArgValue {
			args[i] = c.Values[r.Index]
		} else {
			args[i] = c.UpdateArgs[r.Index]
		}
	}
	return args
}

// QueryOne runs the statement and scans its first row into dest, reading
// and closing the rest. It reports whether there was a row.
func (s *Stmt) QueryOne(ctx context.Context, q dialect.Querier, c *dialect.Call, dest ...any) (bool, error) {
	rows, err := q.Query(ctx, s.SQL, s.Args(c)...)
	if err != nil {
		return false, err
	}
	return ScanOne(rows, dest...)
}

// ScanOne scans the first row into dest and closes rows. It reports whether
// there was a row.
func ScanOne(rows dialect.Rows, dest ...any) (bool, error) {
	found := false
	var err error
	if rows.Next() {
		found = true
		err = rows.Scan(dest...)
	}
	if cerr := rows.Close(); err == nil {
		err = cerr
	}
	if rerr := rows.Err(); err == nil {
		err = rerr
	}
	return found && err == nil, err
}

// Seq returns 0, 1, ..., n-1.
func Seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// Values writes "?, ?, ..." bound to Call.Values at the positions.
func (b *Builder) Values(positions []int) {
	for i, pos := range positions {
		if i > 0 {
			b.WriteString(", ")
		}
		b.Value(pos)
	}
}

// RowValues writes "?, ?, ..." bound to row j of a batch at the positions.
func (b *Builder) RowValues(j int, positions []int) {
	for i, pos := range positions {
		if i > 0 {
			b.WriteString(", ")
		}
		b.RowValue(j, pos)
	}
}

// RowValue writes a placeholder bound to the value at pos of row j of a batch.
func (b *Builder) RowValue(j, pos int) {
	b.Refs = append(b.Refs, ArgRef{ArgValue, pos, j})
	b.WriteString(b.Syn.Placeholder(len(b.Refs)))
}

// BatchArgs binds a batch statement's values: row values from rows[Ref.Row],
// update arguments from updateArgs.
//
// A statement built for more rows than there are (a padded one, see
// Builder.Count) binds row 0's values for the missing rows: they have the
// right types, and the statement's count filter leaves them out.
func (s *Stmt) BatchArgs(rows []*dialect.Call, updateArgs []any) []any {
	args := make([]any, len(s.Refs))
	for i, r := range s.Refs {
		switch r.Kind {
		case ArgValue:
			row := rows[0]
			if r.Row < len(rows) {
				row = rows[r.Row]
			}
			args[i] = row.Values[r.Index]
		case ArgUpdate:
			args[i] = updateArgs[r.Index]
		case ArgCount:
			args[i] = int64(len(rows))
		case ArgRowUpdate:
			row := rows[0]
			if r.Row < len(rows) {
				row = rows[r.Row]
			}
			args[i] = row.UpdateArgs[r.Index]
		}
	}
	return args
}

// RowUpdateArg writes a placeholder bound to update argument i of row j of
// a batch (Shape.RowArgs).
func (b *Builder) RowUpdateArg(j, i int) {
	b.Refs = append(b.Refs, ArgRef{ArgRowUpdate, i, j})
	b.WriteString(b.Syn.Placeholder(len(b.Refs)))
}

// ArgColumns returns, for each update argument in order, the column of the
// assignment it belongs to: what a per-row argument is typed as.
func ArgColumns(ups []dialect.Assignment) []string {
	var cols []string
	var walk func(col string, e dialect.Expr)
	walk = func(col string, e dialect.Expr) {
		if e.Op == dialect.OpArg {
			for len(cols) <= e.Arg {
				cols = append(cols, "")
			}
			cols[e.Arg] = col
		}
		for _, a := range e.Args {
			walk(col, a)
		}
	}
	for _, a := range ups {
		walk(a.Column, a.Expr)
	}
	return cols
}

// Count writes a placeholder bound to the number of real rows of a batch
// statement, for the filter (ord < count) that lets one statement, built
// for a size class, serve every batch up to that size.
func (b *Builder) Count() {
	b.Refs = append(b.Refs, ArgRef{Kind: ArgCount})
	b.WriteString(b.Syn.Placeholder(len(b.Refs)))
}

// ScanBatch runs a statement whose rows start with an ordinal (the row's
// position in rows) followed by the table's columns and then one value per
// element of extra(ord). Each result is scanned into scratch values of the
// destinations' types and copied to the row it belongs to. It reports which
// rows came back.
func ScanBatch(ctx context.Context, q dialect.Querier, sql string, args []any, rows []*dialect.Call, extra func(ord int) []any) ([]bool, error) {
	rs, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	proto := rows[0].Dest
	if extra != nil {
		proto = append(proto[:len(proto):len(proto)], extra(0)...)
	}
	var ord int
	scratch := make([]any, 1+len(proto))
	scratch[0] = &ord
	for i, d := range proto {
		scratch[i+1] = reflect.New(reflect.TypeOf(d).Elem()).Interface()
	}
	seen := make([]bool, len(rows))
	for rs.Next() {
		if err := rs.Scan(scratch...); err != nil {
			return nil, err
		}
		if ord < 0 || ord >= len(rows) {
			return nil, fmt.Errorf("batch statement returned ordinal %d of %d rows", ord, len(rows))
		}
		dst := rows[ord].Dest
		if extra != nil {
			dst = append(dst[:len(dst):len(dst)], extra(ord)...)
		}
		for i, d := range dst {
			reflect.ValueOf(d).Elem().Set(reflect.ValueOf(scratch[i+1]).Elem())
		}
		seen[ord] = true
	}
	if err := rs.Err(); err != nil {
		return nil, err
	}
	return seen, rs.Close()
}

// SameStoredKey reports whether two scanned rows carry identical key values:
// the same stored row gives the same bytes, so this never merges rows that
// the database holds apart.
func SameStoredKey(t *dialect.Table, a, b *dialect.Call) bool {
	for _, p := range t.Key {
		if !reflect.DeepEqual(reflect.ValueOf(a.Dest[p]).Elem().Interface(), reflect.ValueOf(b.Dest[p]).Elem().Interface()) {
			return false
		}
	}
	return true
}

// Missing returns the rows not seen.
func Missing(rows []*dialect.Call, seen []bool) (idx []int) {
	for i := range rows {
		if !seen[i] {
			idx = append(idx, i)
		}
	}
	return idx
}

// AndWhere writes " AND (predicate)" when the table's arbiter is a
// partial index: every lookup must see only the rows the index covers.
func (b *Builder) AndWhere() {
	if w := b.Table.Where; w != "" {
		b.WriteString(" AND (" + w + ")")
	}
}

// ConflictTarget writes "(k1, ...)" and, for a partial arbiter,
// " WHERE (predicate)": the ON CONFLICT target that infers the arbiter.
func (b *Builder) ConflictTarget() {
	b.WriteString("(")
	b.List("", b.Table.Columns, b.Table.Key)
	b.WriteString(")")
	if w := b.Table.Where; w != "" {
		b.WriteString(" WHERE (" + w + ")")
	}
}

// ProposedRow writes the select list of an insert's proposed row, each
// item named after its column, for a partial arbiter's predicate to be
// evaluated on: value writes the inserted column at pos, other a column of
// the predicate the insert does not give (the SQL of its DEFAULT, or
// NULL).
func (b *Builder) ProposedRow(s *dialect.Shape, value func(pos int), other func(col, expr string)) {
	t := b.Table
	for i, pos := range s.Insert {
		if i > 0 {
			b.WriteString(", ")
		}
		value(pos)
		b.WriteString(" AS ")
		b.Ident(t.Columns[pos])
	}
	n := len(s.Insert)
	for _, col := range t.WhereColumns {
		if pos, expr := t.ProposedValue(s, col); pos < 0 {
			if n > 0 {
				b.WriteString(", ")
			}
			n++
			other(col, expr)
			b.WriteString(" AS ")
			b.Ident(col)
		}
	}
}

// ScanCovered runs a statement of one boolean, the partial arbiter's
// predicate on a proposed row, and reports whether it held (NULL is
// false, as in a WHERE).
func ScanCovered(ctx context.Context, q dialect.Querier, st Stmt, c *dialect.Call) (bool, error) {
	var ok *bool
	found, err := st.QueryOne(ctx, q, c, &ok)
	return found && ok != nil && *ok, err
}

// Covered builds SELECT (predicate) FROM <proposed row>: the statement
// ScanCovered and NotCovered run, for a table with a partial arbiter (an
// empty Stmt without one). proposed writes the dialect's proposed row.
func Covered(syn *Syntax, t *dialect.Table, proposed func(b *Builder)) Stmt {
	if t.Where == "" {
		return Stmt{}
	}
	b := NewBuilder(syn, t)
	b.WriteString("SELECT (" + t.Where + ") FROM ")
	proposed(b)
	return b.Stmt()
}

// NotCovered returns dialect.NotCovered when the call's proposed row
// fails the partial arbiter's predicate where (st evaluates it, as for
// ScanCovered; an empty st means no partial arbiter), nil when it holds. Plans ask only once
// an insert returned nothing and a lookup found nothing either.
func NotCovered(ctx context.Context, q dialect.Querier, st Stmt, c *dialect.Call, where string) error {
	if st.SQL == "" {
		return nil
	}
	ok, err := ScanCovered(ctx, q, st, c)
	if err != nil || ok {
		return err
	}
	return dialect.NotCovered(where)
}

// ProposedColumns lists the columns the assignments read from the
// proposed row.
func ProposedColumns(ups []dialect.Assignment) []string {
	var out []string
	var walk func(e dialect.Expr)
	walk = func(e dialect.Expr) {
		if e.Op == dialect.OpProposed && !slices.Contains(out, e.Col) {
			out = append(out, e.Col)
		}
		for _, a := range e.Args {
			walk(a)
		}
	}
	for _, a := range ups {
		walk(a.Expr)
	}
	return out
}
