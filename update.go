package getorcreate

import (
	"strconv"
	"strings"

	"github.com/getorcreate/getorcreate/dialect"
)

// Update is one assignment that UpdateOrCreate applies to an existing row.
// The database evaluates it, in the same statement that finds the row, so
// concurrent updates are never lost.
type Update struct {
	col  string
	op   dialect.ExprOp
	raw  string
	args []any // values and Refs, in order
}

// Ref names a column of the stored or the proposed row inside Expr.
type Ref struct {
	col      string
	proposed bool
}

// Stored refers to the column's value in the stored row.
func Stored(col string) Ref { return Ref{col: col} }

// Proposed refers to the column's value in the row passed to UpdateOrCreate.
func Proposed(col string) Ref { return Ref{col: col, proposed: true} }

// Set sets col to v.
func Set(col string, v any) Update { return Update{col: col, op: dialect.OpArg, args: []any{v}} }

// SetProposed sets col to its value in the row passed to UpdateOrCreate.
func SetProposed(col string) Update {
	return Update{col: col, op: dialect.OpProposed}
}

// Add adds delta to col: col = col + delta.
func Add(col string, delta any) Update {
	return Update{col: col, op: dialect.OpAdd, args: []any{delta}}
}

// Greatest keeps the greater of the stored value and v.
func Greatest(col string, v any) Update {
	return Update{col: col, op: dialect.OpGreatest, args: []any{v}}
}

// Least keeps the lesser of the stored value and v.
func Least(col string, v any) Update { return Update{col: col, op: dialect.OpLeast, args: []any{v}} }

// Expr sets col to a SQL expression with one ? per argument. An argument is
// a value, bound as a parameter, or a Ref to a column of the stored or the
// proposed row, quoted for the database:
//
//	getorcreate.Expr("score", "? * 0.9 + ?", getorcreate.Stored("score"), getorcreate.Proposed("score"))
//
// The SQL text itself is not escaped: never build it from user input.
func Expr(col, sql string, args ...any) Update {
	return Update{col: col, op: dialect.OpRaw, raw: sql, args: args}
}

// idempotent reports whether applying the updates twice leaves the row as
// applying them once: Set, SetProposed, Greatest and Least do; Add and Expr
// (which may read the stored value) do not.
func idempotent(ups []Update) bool {
	for _, u := range ups {
		switch u.op {
		case dialect.OpArg, dialect.OpProposed, dialect.OpGreatest, dialect.OpLeast:
		default:
			return false
		}
	}
	return true
}

// signature identifies the statement shape of a list of updates.
func signature(ups []Update) string {
	var b strings.Builder
	for _, u := range ups {
		b.WriteString(u.col)
		b.WriteByte(0)
		b.WriteString(strconv.Itoa(int(u.op)))
		if u.op == dialect.OpRaw {
			b.WriteString(u.raw)
			for _, a := range u.args {
				if r, ok := a.(Ref); ok {
					b.WriteString("\x00r")
					if r.proposed {
						b.WriteByte('p')
					}
					b.WriteString(r.col)
				} else {
					b.WriteString("\x00v")
				}
			}
		}
		b.WriteByte(1)
	}
	return b.String()
}

// bindArgs appends the bound values of the updates, in Expr order.
func bindArgs(ups []Update, dst []any) []any {
	for _, u := range ups {
		for _, a := range u.args {
			if _, ok := a.(Ref); !ok {
				dst = append(dst, utcValue(a)) // as the row's values are (bindTimes)
			}
		}
	}
	return dst
}

// assignments builds the expression trees, validating columns. n counts the
// bound values so far.
func (t *tableCore) assignments(ups []Update) ([]dialect.Assignment, error) {
	out := make([]dialect.Assignment, 0, len(ups))
	n := 0
	seen := map[string]bool{}
	check := func(col string) error {
		i := t.m.Lookup(col)
		if i < 0 {
			return t.errf("UpdateOrCreate", ErrInvalidUpdate, "column %q is not mapped", col)
		}
		return nil
	}
	for _, u := range ups {
		if err := check(u.col); err != nil {
			return nil, err
		}
		if t.isKey(u.col) {
			return nil, t.errf("UpdateOrCreate", ErrInvalidUpdate, "column %q is a key column; an update cannot change the key", u.col)
		}
		if seen[u.col] {
			return nil, t.errf("UpdateOrCreate", ErrInvalidUpdate, "column %q is assigned twice", u.col)
		}
		seen[u.col] = true
		existing := dialect.Expr{Op: dialect.OpExisting, Col: u.col}
		var e dialect.Expr
		switch u.op {
		case dialect.OpArg:
			if _, ok := u.args[0].(Ref); ok {
				return nil, t.errf("UpdateOrCreate", ErrInvalidUpdate, "Set(%q) was given a column reference: use SetProposed, or Expr with Stored or Proposed", u.col)
			}
			e = dialect.Expr{Op: dialect.OpArg, Arg: n}
			n++
		case dialect.OpProposed:
			e = dialect.Expr{Op: dialect.OpProposed, Col: u.col}
		case dialect.OpAdd, dialect.OpGreatest, dialect.OpLeast:
			if _, ok := u.args[0].(Ref); ok {
				return nil, t.errf("UpdateOrCreate", ErrInvalidUpdate, "the update of %q was given a column reference as its value: use Expr with Stored or Proposed", u.col)
			}
			e = dialect.Expr{Op: u.op, Args: []dialect.Expr{existing, {Op: dialect.OpArg, Arg: n}}}
			n++
		case dialect.OpRaw:
			if strings.Count(u.raw, "?") != len(u.args) {
				return nil, t.errf("UpdateOrCreate", ErrInvalidUpdate, "expression for %q has %d placeholders and %d arguments", u.col, strings.Count(u.raw, "?"), len(u.args))
			}
			e = dialect.Expr{Op: dialect.OpRaw, SQL: u.raw}
			for _, a := range u.args {
				if r, ok := a.(Ref); ok {
					if err := check(r.col); err != nil {
						return nil, err
					}
					op := dialect.OpExisting
					if r.proposed {
						op = dialect.OpProposed
					}
					e.Args = append(e.Args, dialect.Expr{Op: op, Col: r.col})
				} else {
					e.Args = append(e.Args, dialect.Expr{Op: dialect.OpArg, Arg: n})
					n++
				}
			}
		}
		out = append(out, dialect.Assignment{Column: u.col, Expr: e})
	}
	return out, nil
}
