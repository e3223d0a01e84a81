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
	arbiter, ok := findArbiter(schema.Unique, cfg.Key)
	if !ok {
		return se(ErrNoUniqueIndex, nearMiss(schema.Unique, cfg.Key)+"; without it concurrent calls can create duplicate rows", t.d.CreateIndexDDL(cfg.Table, cfg.Key)+";")
	}
	t.dt.Arbiter = arbiter
	for _, ix := range schema.Unique {
		if ix.Name != arbiter.Name {
			t.dt.OtherUnique = append(t.dt.OtherUnique, ix)
		}
	}
	for _, k := range cfg.Key {
		c := schema.Column(k)
		t.nullKeyOK = append(t.nullKeyOK, c.Nullable && arbiter.NullsNotDistinct)
	}
	for i, f := range t.m.Fields {
		if c := schema.Column(f.Column); c.HasDefault && !f.Explicit && !t.isKey(f.Column) && len(t.defaultable) < 64 {
			t.defaultable = append(t.defaultable, i)
		}
	}
	return nil
}

// findArbiter returns the unique index whose columns are exactly key.
func findArbiter(idx []dialect.Index, key []string) (dialect.Index, bool) {
	var best dialect.Index
	found := false
	for _, ix := range idx {
		if ix.Partial || ix.Deferrable || ix.Expression || !sameSet(ix.Columns, key) {
			continue
		}
		if !found || ix.Primary {
			best, found = ix, true
		}
	}
	return best, found
}

// nearMiss explains the unique indexes that come close to the key.
func nearMiss(idx []dialect.Index, key []string) string {
	var notes []string
	for _, ix := range idx {
		switch {
		case sameSet(ix.Columns, key) && ix.Partial:
			notes = append(notes, fmt.Sprintf("unique index %s on the key is partial (has a WHERE clause)", ix.Name))
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
	if len(notes) == 0 {
		return "no PRIMARY KEY or UNIQUE index covers the key columns"
	}
	return "no PRIMARY KEY or UNIQUE index covers exactly the key columns (" + strings.Join(notes, "; ") + ")"
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
