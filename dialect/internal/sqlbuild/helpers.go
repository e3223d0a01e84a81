package sqlbuild

import (
	"context"
	"github.com/getorcreate/getorcreate/dialect"
	"strings"
	"sync"
)

// QuoteWith quotes each dot-separated part of a table name with q,
// doubling any q inside: the quoting of all three databases, with " or `.
func QuoteWith(ident string, q byte) string {
	var b strings.Builder
	b.Grow(len(ident) + 4)
	for i, part := range strings.Split(ident, ".") {
		if i > 0 {
			b.WriteByte('.')
		}
		quotePart(&b, part, q)
	}
	return b.String()
}

// QuotePart quotes one identifier (a column, an index) with q, whole: a dot
// in it is part of the name.
func QuotePart(ident string, q byte) string {
	var b strings.Builder
	b.Grow(len(ident) + 2)
	quotePart(&b, ident, q)
	return b.String()
}

func quotePart(b *strings.Builder, part string, q byte) {
	b.WriteByte(q)
	for j := 0; j < len(part); j++ {
		if part[j] == q {
			b.WriteByte(q)
		}
		b.WriteByte(part[j])
	}
	b.WriteByte(q)
}

// QueryEach runs a query and calls fn for each row.
func QueryEach(ctx context.Context, q dialect.Querier, sql string, args []any, fn func(dialect.Rows) error) error {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// QueryStrings runs a query of one text column and returns its values.
func QueryStrings(ctx context.Context, q dialect.Querier, sql string, args ...any) ([]string, error) {
	var out []string
	err := QueryEach(ctx, q, sql, args, func(r dialect.Rows) error {
		var v string
		err := r.Scan(&v)
		out = append(out, v)
		return err
	})
	return out, err
}

// IndexName is the name the library suggests for a unique index on cols of
// table (the last part of a qualified name).
func IndexName(table string, cols []string) string {
	if i := strings.LastIndexByte(table, '.'); i >= 0 {
		table = table[i+1:]
	}
	return table + "_" + strings.Join(cols, "_") + "_key"
}

// QuoteList quotes each column and joins them with ", ".
func QuoteList(quote func(string) string, cols []string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = quote(c)
	}
	return strings.Join(q, ", ")
}

// StmtCache holds the statements of a bulk plan by their number of rows.
type StmtCache struct{ m sync.Map }

// Get returns the statement for n rows, building it once.
func (c *StmtCache) Get(n int, build func(int) Stmt) Stmt {
	if st, ok := c.m.Load(n); ok {
		return st.(Stmt)
	}
	st := build(n)
	c.m.Store(n, st)
	return st
}

// Answers reports whether query, a probe of one text column, runs on q and
// returns a non-empty value: how a dialect recognises its server.
func Answers(ctx context.Context, q dialect.Querier, query string) bool {
	v, err := QueryStrings(ctx, q, query)
	return err == nil && len(v) == 1 && v[0] != ""
}
