package getorcreate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/getorcreate/getorcreate/dialect"
	"github.com/getorcreate/getorcreate/internal/mapping"
	"github.com/getorcreate/getorcreate/internal/sqlexpr"
)

// inspect reads the live table once and checks it against the mapping and
// the key: the one check Open and Check share.
func (t *tableCore) inspect(ctx context.Context, cfg Config) error {
	se := func(kind error, problem, fix string) error {
		return &SchemaError{Table: cfg.Table, Key: cfg.Key, Kind: kind, Problem: problem, Fix: fix}
	}
	if cfg.Table == "" {
		return se(ErrNoTable, "no table name given", "")
	}
	if len(cfg.Key) == 0 {
		return se(ErrMapping, "no key columns given", "")
	}
	schema, feat, err := t.d.Inspect(ctx, t.own, cfg.Table)
	if errors.Is(err, dialect.ErrNoTable) {
		return se(ErrNoTable, fmt.Sprintf("table %s was not found", cfg.Table), "")
	}
	if err != nil {
		return t.wrap("Open", fmt.Errorf("inspecting table %s: %w", cfg.Table, t.d.Interpret(err)))
	}
	t.feat = feat
	if feat.Refusal != nil {
		return se(ErrKeyAltered, feat.Refusal.Problem, feat.Refusal.Fix)
	}
	t.dt = &dialect.Table{Name: cfg.Table, Columns: t.m.Columns(), Schema: schema}
	for _, f := range t.m.Fields {
		if schema.Column(f.Column) == nil {
			return se(ErrMapping, fmt.Sprintf("field %s maps to column %q, which table %s does not have", f.Name, f.Column, cfg.Table), "tag the field `db:\"-\"` or `db:\"real_column\"`")
		}
	}
	for _, c := range schema.Columns {
		if t.m.Lookup(c.Name) < 0 && !c.Nullable && !c.HasDefault {
			return se(ErrMapping, fmt.Sprintf("column %q is NOT NULL without a default, and no field maps to it, so no row could be created", c.Name), "map a field to it, or give it a DEFAULT")
		}
	}
	seen := map[string]bool{}
	for _, k := range cfg.Key {
		if seen[k] {
			return se(ErrMapping, fmt.Sprintf("key column %q is named twice", k), "")
		}
		seen[k] = true
		i := t.m.Lookup(k)
		if i < 0 {
			if schema.Column(k) == nil {
				return se(ErrMapping, fmt.Sprintf("key column %q does not exist in table %s", k, cfg.Table), "")
			}
			return se(ErrMapping, fmt.Sprintf("key column %q maps to no field of the struct", k), "")
		}
		t.keyPos = append(t.keyPos, i)
	}
	t.dt.Key = t.keyPos
	if err := t.checkKeyTypes(cfg, schema); err != nil {
		return err
	}
	if err := t.checkTimes(cfg, schema); err != nil {
		return err
	}
	if cfg.Where != "" && !feat.PartialIndexes {
		return se(ErrUnsupported, "Config.Where names the predicate of a partial unique index, and "+t.d.Name()+" has no partial indexes", "leave Config.Where empty and use a unique index on the key columns alone")
	}
	arbiter, ok := findArbiter(schema.Unique, cfg.Key, cfg.Where)
	if !ok {
		fix := t.d.CreateIndexDDL(cfg.Table, cfg.Key)
		if cfg.Where != "" {
			fix += " WHERE " + cfg.Where
		}
		return se(ErrNoUniqueIndex, nearMiss(schema.Unique, cfg.Key, cfg.Where)+"; without it concurrent calls can create duplicate rows", fix+";")
	}
	t.dt.Arbiter = arbiter
	if cfg.Where != "" {
		if err := t.partial(cfg, schema, arbiter, se); err != nil {
			return err
		}
	}
	for _, ix := range schema.Unique {
		if ix.Name != arbiter.Name {
			t.dt.OtherUnique = append(t.dt.OtherUnique, ix)
		}
	}
	for _, k := range cfg.Key {
		c := schema.Column(k)
		t.nullKeyOK = append(t.nullKeyOK, c.Nullable && arbiter.NullsNotDistinct)
	}
	for _, i := range t.defaultableCandidates(schema) {
		if len(t.defaultable) < 64 {
			t.defaultable = append(t.defaultable, i)
		}
	}
	return nil
}

// findArbiter returns the unique index whose columns are exactly key: a
// non-partial one, or, with a predicate (Config.Where), a partial one
// whose predicate is that text, as the database prints it, after
// sqlexpr.Normalize (whitespace, case, redundant quotes and outer
// parentheses aside).
func findArbiter(idx []dialect.Index, key []string, where string) (dialect.Index, bool) {
	var best dialect.Index
	found := false
	for _, ix := range idx {
		if ix.Partial != (where != "") || ix.Deferrable || ix.Expression || !sameSet(ix.Columns, key) {
			continue
		}
		if where != "" && sqlexpr.Normalize(ix.Predicate) != sqlexpr.Normalize(where) {
			continue
		}
		if !found || ix.Primary {
			best, found = ix, true
		}
	}
	return best, found
}

// partial checks a partial arbiter's table, and records its predicate and
// the columns it reads. Any other unique index on exactly the key columns
// is refused: PostgreSQL and SQLite infer a non-partial one as an arbiter
// of ON CONFLICT (key) WHERE ... too (PG-3), so an upsert would update a
// soft-deleted row instead of creating a live one beside it, and a partial
// one whose predicate ours implies may be inferred as well.
func (t *tableCore) partial(cfg Config, schema *dialect.Schema, arbiter dialect.Index, se func(kind error, problem, fix string) error) error {
	for _, ix := range schema.Unique {
		if ix.Name == arbiter.Name || ix.Expression || !sameSet(ix.Columns, cfg.Key) {
			continue
		}
		what := "a unique index without a predicate"
		if ix.Primary {
			what = "the PRIMARY KEY"
		} else if ix.Partial {
			what = fmt.Sprintf("a partial unique index with another predicate (%s)", ix.Predicate)
		}
		return se(ErrUnsupported, fmt.Sprintf("%s, %s on (%s), covers the key columns beside the partial index %s: the database takes it as an arbiter of the insert too, so a row outside the predicate (a soft-deleted one) would conflict with a new row, or be updated in its place", ix.Name, what, strings.Join(ix.Columns, ", "), arbiter.Name),
			fmt.Sprintf("drop %s, or leave Config.Where empty and use it", ix.Name))
	}
	t.dt.Where = arbiter.Predicate
	for _, name := range sqlexpr.Names(arbiter.Predicate) {
		for _, c := range schema.Columns {
			if !strings.EqualFold(c.Name, name) || slices.Contains(t.dt.WhereColumns, c.Name) {
				continue
			}
			// The proposed row carries this column's value for the
			// predicate: the call's, or what the database would put there.
			// A generated value cannot be known before the insert.
			if c.HasDefault && c.Default == "" {
				if i := t.m.Lookup(c.Name); i < 0 || slices.Contains(t.defaultableCandidates(schema), i) {
					return se(ErrUnsupported, fmt.Sprintf("the predicate (%s) reads column %q, whose value the database generates on insert, so the library cannot tell whether a row it inserts satisfies it", arbiter.Predicate, c.Name), "")
				}
			}
			t.dt.WhereColumns = append(t.dt.WhereColumns, c.Name)
		}
	}
	return nil
}

// defaultableCandidates are the fields whose column has a DEFAULT and that
// may be left to it: inspect makes them t.defaultable.
func (t *tableCore) defaultableCandidates(schema *dialect.Schema) []int {
	var out []int
	for i, f := range t.m.Fields {
		if c := schema.Column(f.Column); c.HasDefault && !f.Explicit && !t.isKey(f.Column) {
			out = append(out, i)
		}
	}
	return out
}

// nearMiss explains the unique indexes that come close to the key.
func nearMiss(idx []dialect.Index, key []string, where string) string {
	var notes []string
	for _, ix := range idx {
		switch {
		case sameSet(ix.Columns, key) && ix.Partial && where == "":
			notes = append(notes, fmt.Sprintf("unique index %s on the key is partial (WHERE %s): to use it, set Config.Where to that predicate", ix.Name, ix.Predicate))
		case sameSet(ix.Columns, key) && ix.Partial:
			notes = append(notes, fmt.Sprintf("unique index %s on the key is partial with another predicate: WHERE %s, as the database prints it; Config.Where must be that text (spacing, case and outer parentheses aside)", ix.Name, ix.Predicate))
		case sameSet(ix.Columns, key) && where != "" && !ix.Deferrable && !ix.Expression:
			notes = append(notes, fmt.Sprintf("unique index %s on the key has no predicate", ix.Name))
		case sameSet(ix.Columns, key) && ix.Deferrable:
			notes = append(notes, fmt.Sprintf("unique constraint %s on the key is DEFERRABLE: checked at commit, it cannot arbitrate an insert", ix.Name))
		case ix.Expression:
			notes = append(notes, fmt.Sprintf("unique index %s is on expressions or a column prefix, not the plain key columns", ix.Name))
		case subset(ix.Columns, key):
			notes = append(notes, fmt.Sprintf("unique index %s (%s) covers only part of the key", ix.Name, strings.Join(ix.Columns, ", ")))
		case subset(key, ix.Columns):
			notes = append(notes, fmt.Sprintf("unique index %s (%s) has more columns than the key", ix.Name, strings.Join(ix.Columns, ", ")))
		}
	}
	what := "no PRIMARY KEY or UNIQUE index"
	if where != "" {
		what = "no partial UNIQUE index WHERE " + where
	}
	if len(notes) == 0 {
		return what + " covers the key columns"
	}
	return what + " covers exactly the key columns (" + strings.Join(notes, "; ") + ")"
}

func sameSet(a, b []string) bool {
	return len(a) == len(b) && subset(a, b)
}

// subset reports whether every element of a is in b.
func subset(a, b []string) bool {
	if len(a) == 0 {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

func (t *tableCore) isKey(col string) bool {
	i := t.m.Lookup(col)
	return i >= 0 && slices.Contains(t.keyPos, i)
}

// Report is what Check found: the check Open makes, and the statements the
// table's calls would send.
type Report struct {
	Dialect string // "postgres", "mysql" or "sqlite"
	// Schema is the table as the dialect read it; nil when it could not.
	Schema *dialect.Schema
	// Arbiter names the unique index that decides which call creates a
	// row, when there is one.
	Arbiter string
	// Problem is why Open would refuse the table, with its fix; nil when
	// it would accept it.
	Problem *SchemaError
	// Statements are the statements of each path, for a row that maps
	// every column of the table (creates give every column without a
	// default; updates set every other column to its proposed value).
	Statements []Statement
}

// Statement is one statement a path sends.
type Statement struct {
	Path string // "get-or-create", "update-or-create"
	Role string // the statement's part in the path: "find", "insert", "upsert", ...
	SQL  string
}

// Check inspects a table as Open would, for a row type that maps every
// column of the table, and reports whether Open would accept it and what
// each path would send. It reads the catalog and writes nothing.
func Check(ctx context.Context, db *sql.DB, cfg Config) (*Report, error) {
	if db == nil {
		return nil, errors.New("getorcreate: Check: nil *sql.DB")
	}
	d, err := dialectOf(ctx, db, cfg)
	if err != nil {
		return nil, err
	}
	schema, _, err := d.Inspect(ctx, sqlDB{db: db}, cfg.Table)
	if err != nil && !errors.Is(err, dialect.ErrNoTable) {
		return nil, fmt.Errorf("getorcreate: inspecting table %s: %w", cfg.Table, err)
	}
	var cols []string
	if schema != nil {
		for _, c := range schema.Columns {
			cols = append(cols, c.Name)
		}
	}
	t := &tableCore{name: cfg.Table, d: d, own: sqlDB{db: db}, m: mapping.ForColumns(cols), retry: cfg.Retry.orDefault()}
	r := &Report{Dialect: d.Name(), Schema: schema}
	if err := t.inspect(ctx, cfg); err != nil {
		if !errors.As(err, &r.Problem) {
			return nil, err
		}
		return r, nil
	}
	r.Arbiter = t.dt.Arbiter.Name
	omitAll := uint64(1)<<len(t.defaultable) - 1
	p, err := t.plan(opGet, shapeKey{omit: omitAll}, nil)
	if err != nil {
		return nil, err
	}
	r.Statements = statementsOf(p, dialect.PathGet, r.Statements)
	var ups []Update
	for _, f := range t.m.Fields {
		if c := schema.Column(f.Column); !t.isKey(f.Column) && !c.Identity {
			ups = append(ups, SetProposed(f.Column))
		}
	}
	if len(ups) > 0 {
		if p, err = t.plan(opUpdate, shapeKey{}, ups); err != nil {
			return nil, err
		}
		r.Statements = statementsOf(p, dialect.PathUpdate, r.Statements)
	}
	return r, nil
}

func statementsOf(p dialect.Plan, path string, dst []Statement) []Statement {
	for _, st := range p.Statements() {
		if st.Path == path {
			dst = append(dst, Statement{Path: st.Path, Role: st.Role, SQL: st.SQL})
		}
	}
	return dst
}
