package getorcreate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/getorcreate/getorcreate/dialect"
	"github.com/getorcreate/getorcreate/internal/mapping"
)

// Config configures a Table. Only Table and Key are required.
type Config struct {
	// Table is the table's name, optionally schema-qualified ("app.tags").
	Table string
	// Key are the columns that identify a row. A PRIMARY KEY or a
	// non-partial, non-deferrable UNIQUE constraint or index must cover
	// exactly these columns.
	Key []string
	// Retry bounds the retries of the library's own transactions. The zero
	// value means DefaultRetry.
	Retry RetryPolicy
	// Dialect, when set, is used instead of the one registered for the
	// driver.
	Dialect dialect.Dialect
}

// Result is the outcome of a single-row call.
type Result[T any] struct {
	// Row is the row as stored after the call: every mapped column,
	// generated ids and database defaults included.
	Row T
	// Created is true when this call inserted the row. Among concurrent
	// calls for the same new key, exactly one sees true.
	Created bool
	// Attempts counts the tries of the library's own transaction: 1 unless
	// a serialization failure, deadlock or busy database was retried.
	Attempts int
}

// Table is a handle on one table, with the struct mapping and the SQL built
// once. It is safe for concurrent use.
type Table[T any] struct {
	tableCore
}

// tableCore is the part of a Table that does not depend on T.
type tableCore struct {
	name   string
	d      dialect.Dialect
	feat   dialect.Features
	own    dialect.Querier // the handle Open was given, for the library's own calls
	beg    dialect.Beginner
	m      *mapping.Mapping
	dt     *dialect.Table
	retry  RetryPolicy
	keyPos []int // positions of the key fields
	// nullKeyOK[i] is true when key column i may be NULL and the index
	// treats NULLs as equal.
	nullKeyOK   []bool
	defaultable []int // positions of fields whose column the database can fill
	plans       sync.Map
	// finds counts recent calls that found their key (up) against those
	// that created it (down), clamped; plans use it to pick their order.
	finds atomic.Int32
}

const findsClamp = 32

// learn records whether a call found its key.
func (t *tableCore) learn(found bool) {
	for {
		v := t.finds.Load()
		n := v - 1
		if found {
			n = v + 1
		}
		if n > findsClamp || n < -findsClamp || t.finds.CompareAndSwap(v, n) {
			return
		}
	}
}

type planKey struct {
	omit  uint64
	nulls uint64
	sig   string
	op    uint8
}

// Open inspects the table once and returns a handle for get-or-create and
// update-or-create of rows of type T. T's exported fields map to columns by
// their `db` tag or their snake_case name; `db:"-"` skips a field.
//
// Open fails with a *SchemaError when no unique index covers exactly the key
// columns (ErrNoUniqueIndex, with the DDL that fixes it), when a field or key
// column maps to nothing (ErrMapping), or when the table does not exist
// (ErrNoTable). The database's dialect is found from db's driver; import the
// dialect package for it.
func Open[T any](ctx context.Context, db *sql.DB, table string, key ...string) (*Table[T], error) {
	return OpenConfig[T](ctx, db, Config{Table: table, Key: key})
}

// OpenConfig is Open with a Config.
func OpenConfig[T any](ctx context.Context, db *sql.DB, cfg Config) (*Table[T], error) {
	if db == nil {
		return nil, errors.New("getorcreate: Open: nil *sql.DB")
	}
	d := cfg.Dialect
	if d == nil {
		var err error
		if d, err = dialect.ForDriver(db.Driver()); err != nil {
			return nil, fmt.Errorf("getorcreate: %w", err)
		}
	}
	t, err := OpenDriver[T](ctx, d, sqlDB{db: db}, sqlDB{db: db}, cfg)
	if err == nil && t.feat.PrepareOnce {
		t.own = sqlDB{db: db, stmts: &stmtCache{db: db}}
	}
	return t, err
}

// OpenDriver opens a table on a handle that is not a *sql.DB, such as a pgx
// pool adapted by package pgxv5. Most users want Open.
func OpenDriver[T any](ctx context.Context, d dialect.Dialect, q dialect.Querier, b dialect.Beginner, cfg Config) (*Table[T], error) {
	var zero T
	m, err := mapping.For(reflect.TypeOf(zero))
	if err != nil {
		return nil, &SchemaError{Table: cfg.Table, Key: cfg.Key, Kind: ErrMapping, Problem: err.Error()}
	}
	t := &Table[T]{tableCore{name: cfg.Table, d: d, own: q, beg: b, m: m, retry: cfg.Retry.orDefault()}}
	if err := t.inspect(ctx, cfg); err != nil {
		return nil, err
	}
	return t, nil
}

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
		return fmt.Errorf("getorcreate: inspecting table %s: %w", cfg.Table, err)
	}
	t.feat = feat
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
	arbiter, ok := findArbiter(schema.Unique, cfg.Key)
	if !ok {
		return se(ErrNoUniqueIndex, nearMiss(schema.Unique, cfg.Key)+"; without it concurrent calls can create duplicate rows", t.d.CreateIndexDDL(cfg.Table, cfg.Key)+";")
	}
	dt := &dialect.Table{Name: cfg.Table, Columns: t.m.Columns(), Arbiter: arbiter, Schema: schema, Key: t.keyPos}
	for _, ix := range schema.Unique {
		if ix.Name != arbiter.Name {
			dt.OtherUnique = append(dt.OtherUnique, ix)
		}
	}
	t.dt = dt
	for _, k := range cfg.Key {
		c := schema.Column(k)
		t.nullKeyOK = append(t.nullKeyOK, c.Nullable && arbiter.NullsNotDistinct)
	}
	for i, f := range t.m.Fields {
		if c := schema.Column(f.Column); c.HasDefault && !t.isKey(f.Column) && len(t.defaultable) < 64 {
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
			notes = append(notes, fmt.Sprintf("unique constraint %s on the key is DEFERRABLE", ix.Name))
		case ix.Expression:
			notes = append(notes, fmt.Sprintf("unique index %s is on expressions, not the plain key columns", ix.Name))
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

// Close releases the statements the table prepared on its *sql.DB (on
// SQLite and MariaDB/MySQL). Open a table once and share it; Close it when
// the program no longer needs it. It does not close the *sql.DB.
func (t *tableCore) Close() error {
	if s, ok := t.own.(sqlDB); ok && s.stmts != nil {
		return s.stmts.close()
	}
	return nil
}

// Name returns the table's name.
func (t *tableCore) Name() string { return t.name }

// Dialect returns the name of the table's database dialect: "postgres",
// "mysql" or "sqlite".
func (t *tableCore) Dialect() string { return t.d.Name() }

func (t *tableCore) errf(op string, kind error, format string, args ...any) error {
	return &Error{Op: op, Table: t.name, Kind: kind, Input: -1, Err: fmt.Errorf(format, args...)}
}

// GetOrCreate returns the row whose key columns equal row's, creating it
// from row if there is none. Fields beyond the key are used only to create.
// An existing row is never written. It runs in the library's own
// transaction and retries serialization failures, deadlocks and busy errors.
func (t *Table[T]) GetOrCreate(ctx context.Context, row T) (Result[T], error) {
	return t.getOrCreate(ctx, t.own, false, row, nil)
}

// GetOrCreateTx is GetOrCreate inside the caller's transaction (or on a
// *sql.Conn). It never re-runs statements behind the caller's back: where
// the database cannot show the row that won a race (PostgreSQL REPEATABLE
// READ or SERIALIZABLE with an older snapshot), it returns an error for
// which IsRetryable is true, and the caller should retry the whole
// transaction (see RunTx).
func (t *Table[T]) GetOrCreateTx(ctx context.Context, tx Querier, row T) (Result[T], error) {
	return t.getOrCreate(ctx, adapt(tx), true, row, nil)
}

// GetOrCreateFunc is GetOrCreate with create values computed lazily: key
// holds the key columns, and create is called, with a copy of key to fill,
// only when the row must be created. It costs one extra lookup on the
// create path.
func (t *Table[T]) GetOrCreateFunc(ctx context.Context, key T, create func(row *T) error) (Result[T], error) {
	return t.getOrCreate(ctx, t.own, false, key, create)
}

// GetOrCreateFuncTx is GetOrCreateFunc inside the caller's transaction.
func (t *Table[T]) GetOrCreateFuncTx(ctx context.Context, tx Querier, key T, create func(row *T) error) (Result[T], error) {
	return t.getOrCreate(ctx, adapt(tx), true, key, create)
}

// UpdateOrCreate applies the updates to the row whose key columns equal
// row's, or creates it from row. The database evaluates the updates
// atomically; none is a read-modify-write in Go. Without updates it is
// GetOrCreate. It returns the row as stored after the write.
func (t *Table[T]) UpdateOrCreate(ctx context.Context, row T, updates ...Update) (Result[T], error) {
	return t.updateOrCreate(ctx, t.own, false, row, updates)
}

// UpdateOrCreateTx is UpdateOrCreate inside the caller's transaction.
func (t *Table[T]) UpdateOrCreateTx(ctx context.Context, tx Querier, row T, updates ...Update) (Result[T], error) {
	return t.updateOrCreate(ctx, adapt(tx), true, row, updates)
}

const (
	opGet uint8 = iota
	opUpdate
)

// call prepares the values, targets and plan for one row.
func (t *Table[T]) call(op string, res *Result[T], inTx bool) (*dialect.Call, shapeKey, error) {
	p := reflect.ValueOf(&res.Row)
	c := &dialect.Call{InTx: inTx}
	c.Values = t.m.Values(p, make([]any, 0, len(t.m.Fields)))
	var sk shapeKey
	for i, pos := range t.keyPos {
		if mapping.IsNull(c.Values[pos]) {
			if !t.nullKeyOK[i] {
				return nil, sk, t.errf(op, ErrNullKey, "key column %q is NULL; the unique index treats NULLs as distinct, so a NULL key never matches", t.m.Fields[pos].Column)
			}
			sk.nulls |= 1 << i
		}
	}
	for i, pos := range t.defaultable {
		if t.m.IsZero(p, pos) {
			sk.omit |= 1 << i
		}
	}
	c.Dest = t.m.Addrs(p, make([]any, 0, len(t.m.Fields)))
	// Write first only when most recent calls created their key; one
	// creation in a fresh table is no trend.
	c.LikelyExists = t.finds.Load() > -8
	return c, sk, nil
}

// shapeKey is what varies a statement's text from call to call: which
// defaultable columns are left out, which key columns are NULL.
type shapeKey struct{ omit, nulls uint64 }

func (t *tableCore) plan(op uint8, sk shapeKey, ups []Update) (dialect.Plan, error) {
	k := planKey{omit: sk.omit, nulls: sk.nulls, op: op}
	if len(ups) > 0 {
		k.sig = signature(ups)
	}
	if p, ok := t.plans.Load(k); ok {
		return p.(dialect.Plan), nil
	}
	shape, err := t.shape(sk, ups)
	if err != nil {
		return nil, err
	}
	p, err := t.d.Compile(t.dt, shape, t.feat)
	if err != nil {
		return nil, fmt.Errorf("getorcreate: compiling statements for %s: %w", t.name, err)
	}
	t.plans.Store(k, p)
	return p, nil
}

// shape lists the columns an insert gives and the update assignments.
func (t *tableCore) shape(sk shapeKey, ups []Update) (*dialect.Shape, error) {
	shape := &dialect.Shape{NullKeys: sk.nulls}
	for i := range t.m.Fields {
		if j := slices.Index(t.defaultable, i); j >= 0 && sk.omit&(1<<j) != 0 {
			continue
		}
		shape.Insert = append(shape.Insert, i)
	}
	if len(ups) > 0 {
		as, err := t.assignments(ups)
		if err != nil {
			return nil, err
		}
		shape.Updates = as
	}
	return shape, nil
}

func (t *Table[T]) getOrCreate(ctx context.Context, q dialect.Querier, inTx bool, row T, create func(*T) error) (Result[T], error) {
	const op = "GetOrCreate"
	res := Result[T]{Row: row}
	c, sk, err := t.call(op, &res, inTx)
	if err != nil {
		return res, err
	}
	if create != nil {
		found, err := t.find(ctx, q, inTx, c, sk)
		if err != nil || found {
			res.Attempts = 1
			return res, err
		}
		if err := create(&res.Row); err != nil {
			return res, err
		}
		if c, sk, err = t.call(op, &res, inTx); err != nil {
			return res, err
		}
		c.LikelyExists = false // it was just looked up
	}
	plan, err := t.plan(opGet, sk, nil)
	if err != nil {
		return res, err
	}
	res.Created, res.Attempts, err = t.run(ctx, op, inTx, func() (bool, error) { return plan.GetOrCreate(ctx, q, c) })
	if err != nil {
		return Result[T]{Row: row, Attempts: res.Attempts}, err
	}
	t.learn(!res.Created)
	return res, nil
}

func (t *Table[T]) find(ctx context.Context, q dialect.Querier, inTx bool, c *dialect.Call, sk shapeKey) (bool, error) {
	plan, err := t.plan(opGet, shapeKey{nulls: sk.nulls}, nil)
	if err != nil {
		return false, err
	}
	found, _, err := t.run(ctx, "GetOrCreate", inTx, func() (bool, error) { return plan.Find(ctx, q, c) })
	return found, err
}

func (t *Table[T]) updateOrCreate(ctx context.Context, q dialect.Querier, inTx bool, row T, ups []Update) (Result[T], error) {
	if len(ups) == 0 {
		return t.getOrCreate(ctx, q, inTx, row, nil)
	}
	const op = "UpdateOrCreate"
	res := Result[T]{Row: row}
	c, sk, err := t.call(op, &res, inTx)
	if err != nil {
		return res, err
	}
	plan, err := t.plan(opUpdate, sk, ups)
	if err != nil {
		return res, err
	}
	c.UpdateArgs = bindArgs(ups, nil)
	fn := func() (bool, error) { return plan.UpdateOrCreate(ctx, q, c) }
	if !inTx && t.feat.UpdateNeedsTx {
		fn = func() (bool, error) {
			return t.inOwnTx(ctx, func(tx dialect.Tx) (bool, error) { return plan.UpdateOrCreate(ctx, tx, c) })
		}
	}
	res.Created, res.Attempts, err = t.run(ctx, op, inTx, fn)
	if err != nil {
		// Whatever a failed attempt scanned is not the caller's row.
		return Result[T]{Row: row, Attempts: res.Attempts}, err
	}
	t.learn(!res.Created)
	return res, nil
}

// inOwnTx runs fn in a transaction of the library's own and commits it.
func (t *tableCore) inOwnTx(ctx context.Context, fn func(tx dialect.Tx) (bool, error)) (bool, error) {
	tx, err := t.beg.Begin(ctx, sql.LevelDefault)
	if err != nil {
		return false, err
	}
	ok, err := fn(tx)
	if err != nil {
		_ = tx.Rollback(ctx)
		return false, err
	}
	return ok, tx.Commit(ctx)
}

// run runs fn, retrying retryable failures when the library owns the
// transaction, and classifies the final error.
func (t *tableCore) run(ctx context.Context, op string, inTx bool, fn func() (bool, error)) (bool, int, error) {
	for attempt := 1; ; attempt++ {
		ok, err := fn()
		if err == nil {
			return ok, attempt, nil
		}
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			// The driver saw the cancellation as a broken statement; say so.
			err = fmt.Errorf("%w: %w", cerr, err)
		}
		e := t.wrap(op, err)
		if inTx || !IsRetryable(e) || attempt > t.retry.MaxRetries || ctx.Err() != nil {
			return false, attempt, e
		}
		if err := t.retry.Wait(ctx, attempt); err != nil {
			return false, attempt, t.wrap(op, err)
		}
	}
}

// wrap turns a driver error into an *Error with its kind.
func (t *tableCore) wrap(op string, err error) error {
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &Error{Op: op, Table: t.name, Input: -1, Err: err}
	}
	if errors.Is(err, dialect.ErrLostRace) {
		return &Error{Op: op, Table: t.name, Kind: ErrLostRace, Input: -1, Err: err}
	}
	cls := t.d.Classify(err)
	e = &Error{Op: op, Table: t.name, Kind: kindOf(cls), Input: -1, Err: err}
	if cls == dialect.ClassUnique {
		e.Constraint = t.d.Constraint(err)
	}
	return e
}
