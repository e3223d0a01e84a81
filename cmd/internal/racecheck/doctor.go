package racecheck

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"github.com/getorcreate/getorcreate"
	"github.com/getorcreate/getorcreate/dialect"
)

// Severity grades a doctor finding.
type Severity string

// The severities, from harmless to unsafe. Only Unsafe makes Doctor's
// verdict fail: it means concurrent get-or-create can create duplicates.
const (
	OK     Severity = "ok"
	Info   Severity = "info"
	Warn   Severity = "warn"
	Unsafe Severity = "unsafe"
)

// Finding is one thing doctor found, and what to do about it.
type Finding struct {
	Severity Severity `json:"severity"`
	Topic    string   `json:"topic"`
	Message  string   `json:"message"`
	Fix      string   `json:"fix,omitempty"`
}

// Diagnosis is what Doctor found about one table and key.
type Diagnosis struct {
	DB      string   `json:"db"`
	Version string   `json:"version"`
	Table   string   `json:"table"`
	Key     []string `json:"key"`
	// Where is the partial unique index's predicate the key is unique
	// under (getorcreate.Config.Where), or "".
	Where    string    `json:"where,omitempty"`
	Findings []Finding `json:"findings"`
}

// Safe reports whether no finding is Unsafe.
func (d *Diagnosis) Safe() bool {
	return !slices.ContainsFunc(d.Findings, func(f Finding) bool { return f.Severity == Unsafe })
}

func (d *Diagnosis) add(s Severity, topic, msg, fix string) {
	d.Findings = append(d.Findings, Finding{Severity: s, Topic: topic, Message: msg, Fix: fix})
}

// Doctor inspects table on the database at dsnStr, read-only, and says
// whether get-or-create on key is safe there. The verdict on the unique
// index is the library's own check (getorcreate.Check, which Open runs),
// with the DDL that fixes it; the rest is advice: nullable key columns,
// other unique indexes, the key's collation, the default isolation level,
// triggers, and the statements the library would send. A bad DSN, an
// unreachable server, a missing table or key column is a *UsageError. A
// SQLite path that does not exist is one too: Doctor never creates a file.
func Doctor(ctx context.Context, dsnStr, table string, key []string) (*Diagnosis, error) {
	return DoctorWhere(ctx, dsnStr, table, key, "")
}

// DoctorWhere is Doctor for a key that is unique only among the rows a
// partial unique index covers (soft deletes): where is its predicate, as
// getorcreate.Config.Where takes it.
func DoctorWhere(ctx context.Context, dsnStr, table string, key []string, where string) (*Diagnosis, error) {
	if table == "" {
		return nil, usagef("doctor needs --table")
	}
	if len(key) == 0 || slices.Contains(key, "") {
		return nil, usagef("doctor needs --key col[,col...]")
	}
	x, err := openDatabase(ctx, dsnStr, true)
	if err != nil {
		return nil, err
	}
	defer x.db.Close()
	rep, err := getorcreate.Check(ctx, x.db, getorcreate.Config{Table: table, Key: key, Where: where})
	if err != nil {
		return nil, fmt.Errorf("checking table %s: %w", table, err)
	}
	schema := rep.Schema
	if schema == nil {
		return nil, usagef("table %s does not exist", table)
	}
	diag := &Diagnosis{DB: x.name, Version: schema.Version, Table: table, Key: key, Where: where}
	var cols []*dialect.Column
	for _, k := range key {
		c := schema.Column(k)
		if c == nil {
			var names []string
			for _, c := range schema.Columns {
				names = append(names, c.Name)
			}
			return nil, usagef("column %q does not exist in table %s (it has %s)", k, table, strings.Join(names, ", "))
		}
		cols = append(cols, c)
	}
	var arbiter *dialect.Index
	switch p := rep.Problem; {
	case p == nil:
		for i := range schema.Unique {
			if schema.Unique[i].Name == rep.Arbiter {
				arbiter = &schema.Unique[i]
			}
		}
		what := "UNIQUE index"
		if arbiter != nil && arbiter.Primary {
			what = "PRIMARY KEY"
		}
		among := ""
		if where != "" {
			what = "partial UNIQUE index"
			among = fmt.Sprintf(" among the rows WHERE %s (every lookup adds the predicate, so a row outside it, a soft-deleted one, is never returned and a new one can be created beside it)", arbiter.Predicate)
		}
		diag.add(OK, "unique", fmt.Sprintf("%s %s covers exactly (%s): the database keeps one row per key%s, whatever the concurrency", what, rep.Arbiter, strings.Join(key, ", "), among), "")
	case errors.Is(p, getorcreate.ErrNoUniqueIndex):
		fix := p.Fix
		if n, err := existingDuplicates(ctx, x, table, key, where); err == nil && n > 0 {
			fix = fmt.Sprintf("%d key(s) already have several rows; merge or delete them first, then: %s", n, fix)
		}
		if pred := partialOnKey(schema, key); pred != "" && where == "" {
			fix += fmt.Sprintf(" -- or, if the key is unique only among the rows the partial index covers, run doctor with --where %q and set getorcreate.Config.Where to it", pred)
		}
		diag.add(Unsafe, "unique", p.Problem+"; getorcreate.Open refuses the table", fix)
	case errors.Is(p, getorcreate.ErrKeyAltered):
		diag.add(Unsafe, "sql-mode", p.Problem+"; getorcreate.Open refuses the table", p.Fix)
	default:
		diag.add(Unsafe, "schema", p.Problem+"; getorcreate.Open refuses the table", p.Fix)
	}
	mod := newColumnFixes(x, table)
	diagnoseNulls(x, schema, cols, arbiter, diag, mod)
	diagnoseOtherUnique(x, schema, arbiter, diag)
	if err := diagnoseCollation(ctx, x, cols, diag, mod); err != nil {
		return nil, err
	}
	mod.apply(diag)
	if err := diagnoseIsolation(ctx, x, diag); err != nil {
		return nil, err
	}
	diagnoseStatements(x, schema, rep.Statements, diag)
	if len(schema.Triggers) > 0 {
		diag.add(Warn, "triggers", fmt.Sprintf("table has triggers (%s). An upsert fires insert triggers on its insert attempt: on PostgreSQL BEFORE INSERT triggers run even when ON CONFLICT then updates or does nothing, on MySQL/MariaDB BEFORE INSERT runs before the duplicate is found. A trigger that counts or logs inserts will count attempts, not rows.",
			strings.Join(schema.Triggers, ", ")), "make insert triggers idempotent, or move their work to AFTER INSERT")
	} else {
		diag.add(OK, "triggers", "no triggers on the table", "")
	}
	return diag, nil
}

// existingDuplicates counts the keys that already have more than one row
// (among those where holds): the unique index cannot be created until
// they are merged.
func existingDuplicates(ctx context.Context, x *database, table string, key []string, where string) (int64, error) {
	q := make([]string, len(key))
	for i, k := range key {
		q[i] = x.d.Quote(k)
	}
	cols := strings.Join(q, ", ")
	filter := ""
	if where != "" {
		filter = " WHERE (" + where + ")"
	}
	var n int64
	err := x.db.QueryRowContext(ctx, fmt.Sprintf("SELECT COUNT(*) FROM (SELECT %s FROM %s%s GROUP BY %s HAVING COUNT(*) > 1) dups", cols, x.d.Quote(table), filter, cols)).Scan(&n)
	return n, err
}

// partialOnKey returns the predicate of a partial unique index on exactly
// the key columns, or "".
func partialOnKey(s *dialect.Schema, key []string) string {
	for _, ix := range s.Unique {
		if ix.Partial && !ix.Expression && len(ix.Columns) == len(key) && !slices.ContainsFunc(key, func(k string) bool { return !slices.Contains(ix.Columns, k) }) {
			return ix.Predicate
		}
	}
	return ""
}

func diagnoseNulls(x *database, s *dialect.Schema, cols []*dialect.Column, arbiter *dialect.Index, diag *Diagnosis, mod *columnFixes) {
	nullable := false
	for _, c := range cols {
		if !c.Nullable {
			continue
		}
		nullable = true
		if arbiter != nil && arbiter.NullsNotDistinct {
			diag.add(OK, "nulls", fmt.Sprintf("key column %s is nullable, and %s is NULLS NOT DISTINCT: a NULL key is one key like any other", c.Name, arbiter.Name), "")
			continue
		}
		fix := notNullDDL(x, s.Table, c)
		if x.kind == "mysql" {
			fix = mod.notNull(c, len(diag.Findings))
		}
		if x.kind == "postgres" {
			fix += fmt.Sprintf(" -- or, on PostgreSQL 15+, make the unique index NULLS NOT DISTINCT: CREATE UNIQUE INDEX ... ON %s (%s) NULLS NOT DISTINCT", x.d.Quote(s.Table), strings.Join(quoteAll(x.d, diag.Key), ", "))
		}
		diag.add(Warn, "nulls", fmt.Sprintf("key column %s is nullable, and the unique index treats NULLs as distinct: rows with a NULL %s never conflict, so every naive get-or-create with a NULL key inserts another row (getorcreate refuses NULL keys with ErrNullKey)", c.Name, c.Name), fix)
	}
	if !nullable {
		diag.add(OK, "nulls", "every key column is NOT NULL", "")
	}
}

// generatedOnly reports whether ix is on database-generated columns only
// (a serial or auto-increment id): inserts never give them, so they never
// conflict.
func generatedOnly(s *dialect.Schema, ix dialect.Index) bool {
	if len(ix.Columns) == 0 {
		return false
	}
	for _, name := range ix.Columns {
		if c := s.Column(name); c == nil || !c.Identity {
			return false
		}
	}
	return true
}

func notNullDDL(x *database, table string, c *dialect.Column) string {
	if x.kind == "postgres" {
		return fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s SET NOT NULL;", x.d.Quote(table), x.d.Quote(c.Name))
	}
	return fmt.Sprintf("SQLite cannot add NOT NULL to a column: rebuild %s with %s NOT NULL (https://sqlite.org/lang_altertable.html#otheralter)", table, c.Name)
}

func diagnoseOtherUnique(x *database, s *dialect.Schema, arbiter *dialect.Index, diag *Diagnosis) {
	var others []string
	for _, ix := range s.Unique {
		if arbiter != nil && ix.Name == arbiter.Name || generatedOnly(s, ix) {
			continue
		}
		others = append(others, ix.Name)
	}
	switch {
	case len(others) == 0:
		diag.add(OK, "other-unique", "no other unique index", "")
	case x.kind == "mysql":
		diag.add(Warn, "other-unique", fmt.Sprintf("other unique indexes: %s. On MySQL/MariaDB, INSERT ... ON DUPLICATE KEY UPDATE fires on a conflict in ANY unique index and then updates one matching row, perhaps not the row with your key (the manual advises against it on tables with several unique indexes). getorcreate detects a conflict on another index and returns ErrConflict instead; naive code gets a duplicate-key error it may mistake for a lost race on the key.", strings.Join(others, ", ")),
			"if the other index is not a business rule, drop it; else expect ErrConflict and handle it")
	default:
		diag.add(Info, "other-unique", fmt.Sprintf("other unique indexes: %s. An insert that conflicts on one of them is a real error, not a lost race on the key: getorcreate returns ErrConflict naming it (ON CONFLICT on the key does not cover them).", strings.Join(others, ", ")), "")
	}
}

// identRE is what a collation or character set name from the catalog must
// look like before racecheck puts it in a probe's SQL text.
var identRE = regexp.MustCompile(`^[A-Za-z0-9_.@-]+$`)

// diagnoseCollation asks the database itself whether the key's collation
// makes "Go", "go", "go " or "é"/"e" one key: the database decides key
// equality, not Go's ==. Probing works on every version, where catalogs
// differ (MariaDB 10.11's information_schema.COLLATIONS has no
// PAD_ATTRIBUTE column, for one).
func diagnoseCollation(ctx context.Context, x *database, cols []*dialect.Column, diag *Diagnosis, mod *columnFixes) error {
	for _, c := range cols {
		if !isText(c) {
			continue
		}
		coll := c.Collation
		var probe func(a, b string) (bool, error)
		var err error
		switch {
		case coll == "" && x.kind == "sqlite":
			// Inspect knows a SQLite column's collation only from an
			// index on it; without one, compare through the column.
			coll = "as declared on the column"
			probe = sqliteColumnProbe(ctx, x, diag.Table, c.Name)
		case coll == "" && x.kind == "postgres":
			coll = "default"
		case coll == "":
			continue
		}
		if probe == nil {
			if !identRE.MatchString(coll) {
				diag.add(Info, "collation", fmt.Sprintf("key column %s has collation %q, which doctor does not probe", c.Name, coll), "")
				continue
			}
			if probe, err = collationProbe(ctx, x, coll); err != nil {
				return fmt.Errorf("probing collation %s: %w", coll, err)
			}
		}
		var same []string
		for _, p := range []struct{ a, b, what string }{
			{"Go", "go", "case-insensitive"},
			{"go", "go ", "trailing spaces ignored: PAD SPACE"},
			{"é", "e", "accent-insensitive"},
		} {
			eq, err := probe(p.a, p.b)
			if err != nil {
				return fmt.Errorf("probing collation %s: %w", coll, err)
			}
			if eq {
				same = append(same, fmt.Sprintf("%q = %q (%s)", p.a, p.b, p.what))
			}
		}
		if len(same) == 0 {
			diag.add(OK, "collation", fmt.Sprintf("key column %s, collation %s: \"Go\", \"go\", \"go \" and \"é\"/\"e\" are all different keys, as in Go", c.Name, coll), "")
			continue
		}
		fix := "normalize keys the same way before using them as Go map or cache keys, or give the column a binary collation"
		if x.kind == "mysql" {
			// Binary and NO PAD: bytes decide, trailing spaces count
			// (MariaDB's utf8mb4_bin is still PAD SPACE).
			bin := "utf8mb4_0900_bin"
			if x.name == "mariadb" {
				bin = "utf8mb4_nopad_bin"
			}
			fix = mod.collate(c, bin, len(diag.Findings))
		}
		diag.add(Warn, "collation", fmt.Sprintf("key column %s, collation %s: %s. These are one key to the database: get-or-create returns the stored spelling, and a cache or map keyed by the raw Go string disagrees with it", c.Name, coll, strings.Join(same, ", ")), fix)
	}
	return nil
}

func isText(c *dialect.Column) bool {
	t := strings.ToLower(c.Type)
	return c.Collation != "" || strings.Contains(t, "char") || strings.Contains(t, "text") || strings.Contains(t, "clob") || t == "citext"
}

// sqliteColumnProbe compares two strings the way column col of table
// compares them: a compound SELECT's column carries the collation of its
// first arm, which here is the table's column and returns no row.
func sqliteColumnProbe(ctx context.Context, x *database, table, col string) func(a, b string) (bool, error) {
	q := fmt.Sprintf(`SELECT v = ?2 FROM (SELECT %s AS v FROM %s WHERE 0 UNION ALL SELECT ?1)`, x.d.Quote(col), x.d.Quote(table))
	return func(a, b string) (bool, error) {
		var eq bool
		err := x.db.QueryRowContext(ctx, q, a, b).Scan(&eq)
		return eq, err
	}
}

// collationProbe returns a function that compares two strings under coll,
// in the database.
func collationProbe(ctx context.Context, x *database, coll string) (func(a, b string) (bool, error), error) {
	var q string
	switch x.kind {
	case "postgres":
		q = fmt.Sprintf(`SELECT ($1::text COLLATE "%s") = $2::text`, coll)
	case "sqlite":
		q = fmt.Sprintf(`SELECT ? = ? COLLATE %s`, coll)
	default:
		var cs string
		if err := x.db.QueryRowContext(ctx, "SELECT CHARACTER_SET_NAME FROM information_schema.COLLATIONS WHERE COLLATION_NAME = ?", coll).Scan(&cs); err != nil {
			return nil, err
		}
		if !identRE.MatchString(cs) {
			return nil, fmt.Errorf("unexpected character set name %q", cs)
		}
		q = fmt.Sprintf(`SELECT CONVERT(? USING %s) COLLATE %s = CONVERT(? USING %s)`, cs, coll, cs)
	}
	return func(a, b string) (bool, error) {
		var eq bool
		err := x.db.QueryRowContext(ctx, q, a, b).Scan(&eq)
		return eq, err
	}, nil
}

func diagnoseIsolation(ctx context.Context, x *database, diag *Diagnosis) error {
	iso := x.iso
	switch {
	case x.kind == "sqlite":
		diag.add(Info, "isolation", "SQLite has one writer at a time, so transactions are serializable. Our DSN opens them with BEGIN IMMEDIATE (_txlock=immediate), which takes the write lock first: naive-tx cannot race, but naive (SELECT and INSERT as separate statements) and read-modify-write outside a transaction still do, and a DEFERRED transaction that reads then writes gets SQLITE_BUSY instead of waiting.", "")
	case x.kind == "postgres" && iso == "rc":
		diag.add(Info, "isolation", "default isolation READ COMMITTED: naive and naive-tx leak duplicate-key errors; insert-catch (Django) holds; read-modify-write loses updates; getorcreate holds (ON CONFLICT with a retry loop).", "")
	case x.kind == "postgres":
		diag.add(Warn, "isolation", fmt.Sprintf("default isolation %s: inside a transaction whose snapshot predates the winner's commit, INSERT ... ON CONFLICT fails with 40001 and a plain SELECT cannot see the row, so insert-catch re-raises its duplicate-key error and naive code gets serialization failures. getorcreate returns a retryable error there: the whole transaction must be retried (getorcreate.RunTx).", longIso(iso)),
			"retry whole transactions on 40001 (getorcreate.RunTx), or run request transactions at READ COMMITTED")
	case iso == "rr":
		diag.add(Warn, "isolation", "default isolation REPEATABLE READ (MySQL/MariaDB's default): after a duplicate-key error a plain SELECT reads the transaction's old snapshot and finds nothing (Django's docs: \"get_or_create() will raise an IntegrityError but the object won't appear in a subsequent get()\"), so insert-catch fails inside transactions; read-modify-write loses updates; naive code leaks duplicate-key errors. getorcreate reads the winner with a locking read and holds.",
			"SET GLOBAL TRANSACTION ISOLATION LEVEL READ COMMITTED (what Django does per connection), or use getorcreate")
	case iso == "serializable":
		diag.add(Info, "isolation", "default isolation SERIALIZABLE: plain SELECTs take shared locks, so racing get-or-creates deadlock (1213) instead of duplicating; retry whole transactions on deadlock.", "")
	default:
		diag.add(Info, "isolation", fmt.Sprintf("default isolation %s: naive code leaks duplicate-key errors, insert-catch holds, read-modify-write loses updates, getorcreate holds.", longIso(iso)), "")
	}
	// A sql_mode that is not strict is the library's own refusal (Check's
	// Problem, reported as topic sql-mode above).
	return nil
}

func longIso(s string) string {
	switch s {
	case "rc":
		return "READ COMMITTED"
	case "rr":
		return "REPEATABLE READ"
	case "serializable":
		return "SERIALIZABLE"
	case "ru":
		return "READ UNCOMMITTED"
	}
	return s
}

// diagnoseStatements shows what getorcreate would send, as the dialect
// compiled it for this table (every column mapped).
func diagnoseStatements(x *database, s *dialect.Schema, st []getorcreate.Statement, diag *Diagnosis) {
	if len(st) == 0 {
		diag.add(Info, "statements", fmt.Sprintf("%s %s; getorcreate.Open refuses the table as it is, so it would send nothing", x.name, s.Version), "")
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s; getorcreate would send, for a row that maps every column:", x.name, s.Version)
	for _, st := range st {
		fmt.Fprintf(&b, "\n    %s, %s: %s", st.Path, st.Role, st.SQL)
	}
	diag.add(Info, "statements", b.String(), "")
}

func quoteAll(d dialect.Dialect, names []string) []string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = d.Quote(n)
	}
	return q
}

// WriteDiagnosis writes the findings, one per paragraph, worst first.
func WriteDiagnosis(w io.Writer, d *Diagnosis) error {
	var b strings.Builder
	fmt.Fprintf(&b, "racecheck doctor: %s %s, table %s, key (%s)\n\n", d.DB, d.Version, d.Table, strings.Join(d.Key, ", "))
	order := map[Severity]int{Unsafe: 0, Warn: 1, Info: 2, OK: 3}
	fs := slices.Clone(d.Findings)
	slices.SortStableFunc(fs, func(a, b Finding) int { return order[a.Severity] - order[b.Severity] })
	for _, f := range fs {
		fmt.Fprintf(&b, "%-8s %-13s %s\n", "["+strings.ToUpper(string(f.Severity))+"]", f.Topic, f.Message)
		if f.Fix != "" {
			fmt.Fprintf(&b, "%-8s %-13s fix: %s\n", "", "", f.Fix)
		}
	}
	if d.Safe() {
		b.WriteString("\nverdict: nothing makes get-or-create unsafe on this table\n")
	} else {
		b.WriteString("\nverdict: UNSAFE: concurrent get-or-create can create duplicate rows; apply the fix above\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteDiagnosisJSON writes the diagnosis as one JSON object.
func WriteDiagnosisJSON(w io.Writer, d *Diagnosis) error {
	return json.NewEncoder(w).Encode(d)
}

// columnFixes gathers what doctor would change in each key column on
// MySQL/MariaDB, so that it prints one statement per column: MODIFY
// restates the whole column, and two separate ones undo each other (a
// NOT NULL fix, then a collation fix without NOT NULL, leaves the column
// nullable again).
type columnFixes struct {
	x     *database
	table string
	fixes []*columnFix
}

type columnFix struct {
	c         *dialect.Column
	collation string // the collation to give it; "" keeps the current one
	notNull   bool
	findings  []int // the findings whose Fix is this statement
	note      string
}

func newColumnFixes(x *database, table string) *columnFixes { return &columnFixes{x: x, table: table} }

func (m *columnFixes) get(c *dialect.Column) *columnFix {
	for _, f := range m.fixes {
		if f.c.Name == c.Name {
			return f
		}
	}
	f := &columnFix{c: c}
	m.fixes = append(m.fixes, f)
	return f
}

// notNull asks for NOT NULL on c, for the finding about to be added at
// index idx; apply fills in its fix.
func (m *columnFixes) notNull(c *dialect.Column, idx int) string {
	f := m.get(c)
	f.notNull = true
	f.findings = append(f.findings, idx)
	return ""
}

// collate asks for collation coll on c, for the finding at index idx.
func (m *columnFixes) collate(c *dialect.Column, coll string, idx int) string {
	f := m.get(c)
	f.collation = coll
	f.note = " -- or normalize keys the same way before using them as Go map or cache keys"
	f.findings = append(f.findings, idx)
	return ""
}

// apply writes each column's one statement into every finding that asked
// for a change to it. A key column stays NOT NULL whatever else changes:
// MySQL's unique indexes treat NULLs as distinct, so a NULL key is never
// one key.
func (m *columnFixes) apply(diag *Diagnosis) {
	for _, f := range m.fixes {
		coll := f.collation
		if coll == "" {
			coll = f.c.Collation
		}
		var b strings.Builder
		fmt.Fprintf(&b, "ALTER TABLE %s MODIFY %s %s", m.x.d.Quote(m.table), m.x.d.Quote(f.c.Name), f.c.Type)
		if coll != "" {
			cs, _, _ := strings.Cut(coll, "_")
			fmt.Fprintf(&b, " CHARACTER SET %s COLLATE %s", cs, coll)
		}
		if f.notNull || !f.c.Nullable {
			b.WriteString(" NOT NULL")
		}
		b.WriteString(";")
		if f.c.HasDefault {
			b.WriteString(" -- restate the column's DEFAULT in it, which MODIFY would drop")
		}
		for _, i := range f.findings {
			if i < len(diag.Findings) {
				diag.Findings[i].Fix = b.String() + f.note
			}
		}
	}
}
