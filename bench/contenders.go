package bench

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/getorcreate/getorcreate"
)

// Outcome is what one call tells its caller beyond the row.
type Outcome struct {
	Created bool // the call says it inserted the row
	Known   bool // the contender can tell whether it inserted the row
}

// OpFunc is one call of a contender on one key.
type OpFunc func(ctx context.Context, key string) (Outcome, error)

// Ops are a contender's calls for the workloads: Existing for keys that all
// exist, New for keys that are all new (and the fresh workload's), Update
// for count = count + 1. A contender that is a program of its own sets
// Slice instead; one whose program is missing sets Missing to say so.
type Ops struct {
	Existing, New, Update OpFunc
	Slice                 SliceFunc
	Missing               string
	Close                 func() // releases what Open prepared; may be nil
	// Counters, when set, returns the contender's own counts so far, warm-up
	// included (getorcreate's, from its Tracer: calls, statements, flights).
	Counters func() map[string]int64
}

// SliceFunc runs n clients of an external program on a workload for about
// d and reports what they did.
type SliceFunc func(ctx context.Context, workload string, n int, d time.Duration) (Slice, error)

// Slice is what an external program reports for one slice.
type Slice struct {
	Ops       int64           // successful calls (transactions)
	Errors    int64           // failed calls
	ErrSample string          // the first failure, if any
	Elapsed   time.Duration   // the time the calls took, without connecting
	Latencies []time.Duration // of the successful calls, if known
}

// Env is one database under benchmark, shared by every contender.
type Env struct {
	Kind string // "sqlite", "postgres" or "mysql"
	// DataSource is the driver's DSN (on PostgreSQL a libpq URL, which
	// pgbench takes as is).
	DataSource string
	DB         *sql.DB
	Gorm       *gorm.DB
	Pgx        *pgxpool.Pool // PostgreSQL only: pgx's own pool, for the pgx contenders
	// ReadCommitted is a pool whose sessions run at READ COMMITTED, as
	// Django's MySQL/MariaDB connections do; nil elsewhere.
	ReadCommitted *sql.DB
}

// Contender is one way of doing get-or-create and update-or-create.
type Contender struct {
	Name string
	Note string // one line for the report
	// Open prepares the contender's calls on a table.
	Open func(ctx context.Context, e *Env, table string) (Ops, error)
	// Kinds limits the contender to some databases; nil means all.
	Kinds []string
	// Workloads limits the contender to some workloads; nil means all.
	Workloads []string
}

// Contenders lists every contender, the floor first.
func Contenders() []Contender {
	cs := []Contender{
		{Name: "floor", Note: "plain SELECT / plain INSERT ... RETURNING / one raw upsert ... RETURNING on the same driver and pool: the cost floor, neither race-safe nor aware of what it created", Open: openFloor},
		{Name: "floor-prepared", Kinds: []string{"sqlite", "mysql"}, Note: "the floor's statements prepared once (*sql.Stmt), as getorcreate prepares its own; on PostgreSQL pgx already caches prepared statements, so the plain floor is this", Open: openFloorPrepared},
		{Name: "getorcreate", Note: "this library: Table.GetOrCreate and Table.UpdateOrCreate(row, getorcreate.Add(\"count\", 1))", Open: openGOC},
		{Name: "getorcreate-coalesced", Note: "this library with Config.Coalesce: calls that arrive while one of the same shape is in flight go together as the next batch (one bulk statement per chunk, in one transaction of the library's own; a one-chunk PostgreSQL upsert batch without BEGIN and COMMIT), each caller with its own Result", Open: openGOCCoalesced},
		{Name: "gorm-firstorcreate", Note: "GORM Where(row).FirstOrCreate; for update-or-create Attrs(count=1).FirstOrCreate, then UpdateColumn(count+1) when it found the row", Open: openGormFOC},
		{Name: "gorm-onconflict", Note: "GORM Clauses(clause.OnConflict{...}).Create: DoNothing then First when nothing was inserted; DoUpdates count = count + 1 (GORM returns only the id, not the stored count)", Open: openGormOC},
		{Name: "django", Note: "a Go port of Django's QuerySet.get_or_create / update_or_create (get; create inside atomic(); on IntegrityError get again; update_or_create under select_for_update in a transaction)", Open: openDjango},
	}
	return append(cs, extraContenders...)
}

// extraContenders are added by files built only when their dependencies
// exist (the pgx adapter).
var extraContenders []Contender

// floor: the SQL a careful engineer would write by hand, one statement per
// call, with no created flag and no race handling.
func openFloor(ctx context.Context, e *Env, table string) (Ops, error) {
	db := e.DB
	sel, ins, ups := floorSQL(e.Kind, db, table)
	one := func(q string, created, known bool) OpFunc {
		return func(ctx context.Context, key string) (Outcome, error) {
			var r Row
			err := db.QueryRowContext(ctx, q, key).Scan(&r.ID, &r.Name, &r.Count)
			return Outcome{Created: created, Known: known}, err
		}
	}
	return Ops{Existing: one(sel, false, true), New: one(ins, true, true), Update: one(ups, false, false)}, nil
}

// floorSQL returns the floor's three statements: the plain SELECT by key,
// the plain INSERT ... RETURNING and the raw upsert ... RETURNING.
func floorSQL(kind string, db *sql.DB, table string) (sel, ins, ups string) {
	sel = rebind(db, "SELECT id, name, count FROM "+table+" WHERE name = ?")
	ins = rebind(db, "INSERT INTO "+table+" (name) VALUES (?) RETURNING id, name, count")
	switch kind {
	case "mysql":
		ups = "INSERT INTO " + table + " (name, count) VALUES (?, 1) ON DUPLICATE KEY UPDATE count = count + 1 RETURNING id, name, count"
	case "postgres":
		ups = "INSERT INTO " + table + " AS t (name, count) VALUES ($1, 1) ON CONFLICT (name) DO UPDATE SET count = t.count + 1 RETURNING id, name, count"
	default:
		ups = "INSERT INTO " + table + " (name, count) VALUES (?, 1) ON CONFLICT (name) DO UPDATE SET count = count + 1 RETURNING id, name, count"
	}
	return sel, ins, ups
}

// floor-prepared: the floor's statements through *sql.Stmt, prepared once
// per connection by database/sql.
func openFloorPrepared(ctx context.Context, e *Env, table string) (Ops, error) {
	db := e.DB
	var stmts []*sql.Stmt
	closeAll := func() {
		for _, s := range stmts {
			s.Close()
		}
	}
	one := func(q string, created, known bool) (OpFunc, error) {
		st, err := db.PrepareContext(ctx, q)
		if err != nil {
			return nil, err
		}
		stmts = append(stmts, st)
		return func(ctx context.Context, key string) (Outcome, error) {
			var r Row
			err := st.QueryRowContext(ctx, key).Scan(&r.ID, &r.Name, &r.Count)
			return Outcome{Created: created, Known: known}, err
		}, nil
	}
	sel, ins, ups := floorSQL(e.Kind, db, table)
	var ops Ops
	var err error
	if ops.Existing, err = one(sel, false, true); err == nil {
		if ops.New, err = one(ins, true, true); err == nil {
			ops.Update, err = one(ups, false, false)
		}
	}
	if err != nil {
		closeAll()
		return Ops{}, err
	}
	ops.Close = closeAll
	return ops, nil
}

func openGOC(ctx context.Context, e *Env, table string) (Ops, error) {
	tr := &countingTracer{}
	t, err := getorcreate.OpenConfig[Row](ctx, e.DB, getorcreate.Config{Table: table, Key: []string{"name"}, Tracer: tr})
	if err != nil {
		return Ops{}, err
	}
	return gocOps(t, tr), nil
}

func openGOCCoalesced(ctx context.Context, e *Env, table string) (Ops, error) {
	tr := &countingTracer{}
	t, err := getorcreate.OpenConfig[Row](ctx, e.DB, getorcreate.Config{Table: table, Key: []string{"name"}, Coalesce: true, Tracer: tr})
	if err != nil {
		return Ops{}, err
	}
	return gocOps(t, tr), nil
}

// countingTracer counts what a table's calls sent: calls, statements
// (BEGIN and COMMIT aside), flights (calls that sent statements: with
// Config.Coalesce a batch's statements are counted on its first caller
// only, so flights are the batches and the calls that went alone) and
// calls that went in a batch with others.
type countingTracer struct {
	calls, statements, flights, batched atomic.Int64
}

func (c *countingTracer) TraceCallStart(ctx context.Context, _ getorcreate.TraceCallStartData) context.Context {
	return ctx
}

func (c *countingTracer) TraceCallEnd(_ context.Context, d getorcreate.TraceCallEndData) {
	c.calls.Add(1)
	c.statements.Add(int64(d.Statements))
	if d.Statements > 0 {
		c.flights.Add(1)
	}
	if d.Batch > 1 {
		c.batched.Add(1)
	}
}

func (c *countingTracer) counts() map[string]int64 {
	return map[string]int64{"calls": c.calls.Load(), "statements": c.statements.Load(), "flights": c.flights.Load(), "batched": c.batched.Load()}
}

func gocOps(t *getorcreate.Table[Row], tr *countingTracer) Ops {
	get := func(ctx context.Context, key string) (Outcome, error) {
		res, err := t.GetOrCreate(ctx, Row{Name: key})
		if err == nil && (res.Row.ID == 0 || res.Row.Name != key) {
			err = fmt.Errorf("GetOrCreate(%q) returned row %+v", key, res.Row)
		}
		return Outcome{Created: res.Created, Known: true}, err
	}
	add := getorcreate.Add("count", 1)
	upd := func(ctx context.Context, key string) (Outcome, error) {
		res, err := t.UpdateOrCreate(ctx, Row{Name: key, Count: 1}, add)
		if err == nil && (res.Row.ID == 0 || res.Row.Count < 1) {
			err = fmt.Errorf("UpdateOrCreate(%q) returned row %+v", key, res.Row)
		}
		return Outcome{Created: res.Created, Known: true}, err
	}
	ops := Ops{Existing: get, New: get, Update: upd}
	if tr != nil {
		ops.Counters = tr.counts
	}
	return ops
}

// gorm-firstorcreate: the call GORM's documentation gives for get-or-create.
func openGormFOC(ctx context.Context, e *Env, table string) (Ops, error) {
	g := e.Gorm
	get := func(ctx context.Context, key string) (Outcome, error) {
		var r Row
		tx := g.WithContext(ctx).Table(table).Where(Row{Name: key}).FirstOrCreate(&r)
		return Outcome{Created: tx.RowsAffected == 1, Known: true}, tx.Error
	}
	upd := func(ctx context.Context, key string) (Outcome, error) {
		var r Row
		tx := g.WithContext(ctx).Table(table).Where(Row{Name: key}).Attrs(Row{Count: 1}).FirstOrCreate(&r)
		if tx.Error != nil {
			return Outcome{Known: true}, tx.Error
		}
		if tx.RowsAffected == 1 {
			return Outcome{Created: true, Known: true}, nil
		}
		err := g.WithContext(ctx).Table(table).Where("id = ?", r.ID).UpdateColumn("count", gorm.Expr("count + ?", 1)).Error
		return Outcome{Known: true}, err
	}
	return Ops{Existing: get, New: get, Update: upd}, nil
}

// gorm-onconflict: GORM's upsert clause.
func openGormOC(ctx context.Context, e *Env, table string) (Ops, error) {
	g := e.Gorm
	get := func(ctx context.Context, key string) (Outcome, error) {
		r := Row{Name: key}
		tx := g.WithContext(ctx).Table(table).Clauses(clause.OnConflict{DoNothing: true}).Create(&r)
		if tx.Error != nil {
			return Outcome{Known: true}, tx.Error
		}
		if tx.RowsAffected == 1 {
			return Outcome{Created: true, Known: true}, nil
		}
		r = Row{}
		err := g.WithContext(ctx).Table(table).Where("name = ?", key).First(&r).Error
		return Outcome{Known: true}, err
	}
	inc := "count + 1"
	if e.Kind == "postgres" {
		inc = table + ".count + 1"
	}
	oc := clause.OnConflict{
		Columns:   []clause.Column{{Name: "name"}},
		DoUpdates: clause.Assignments(map[string]any{"count": gorm.Expr(inc)}),
	}
	upd := func(ctx context.Context, key string) (Outcome, error) {
		r := Row{Name: key, Count: 1}
		err := g.WithContext(ctx).Table(table).Clauses(oc).Create(&r).Error
		if err == nil && r.ID == 0 && e.Kind != "mysql" {
			err = errors.New("upsert returned no id")
		}
		return Outcome{}, err
	}
	return Ops{Existing: get, New: get, Update: upd}, nil
}
