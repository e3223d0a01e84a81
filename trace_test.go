package getorcreate_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/getorcreate/getorcreate"
	"github.com/getorcreate/getorcreate/internal/testdb"
)

// recorder is a Tracer that keeps what it was told.
type recorder struct {
	mu     sync.Mutex
	starts []getorcreate.TraceCallStartData
	ends   []getorcreate.TraceCallEndData
}

type traceKey struct{}

func (r *recorder) TraceCallStart(ctx context.Context, d getorcreate.TraceCallStartData) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.starts = append(r.starts, d)
	return context.WithValue(ctx, traceKey{}, len(r.starts))
}

func (r *recorder) TraceCallEnd(ctx context.Context, d getorcreate.TraceCallEndData) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ctx.Value(traceKey{}) == nil {
		panic("TraceCallEnd did not get the context TraceCallStart returned")
	}
	r.ends = append(r.ends, d)
}

func (r *recorder) last() getorcreate.TraceCallEndData {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ends[len(r.ends)-1]
}

func openTraced(t *testing.T, db *testdb.DB, order getorcreate.Order) (*getorcreate.Table[Tag], *recorder, string) {
	t.Helper()
	rec := &recorder{}
	table := db.Create(t, testdb.TagsDDL)
	tags, err := testdb.OpenTable[Tag](db, getorcreate.Config{Table: table, Key: []string{"name"}, Tracer: rec, Order: order})
	if err != nil {
		t.Fatal(err)
	}
	return tags, rec, table
}

// TestTracer: each call is one start and one end, with the path it took,
// the statements it sent (as TestStatementCounts counts them), its
// attempts and whether it created the row.
func TestTracer(t *testing.T) {
	testdb.EachOf(t, testdb.Kinds(true), func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		tags, rec, _ := openTraced(t, db, getorcreate.ReadFirst)
		check := func(what string, want getorcreate.TraceCallEndData) {
			t.Helper()
			got := rec.last()
			if got.Op != want.Op || got.Path != want.Path || got.Created != want.Created || got.Attempts != 1 || got.Rows != want.Rows ||
				got.Table != tags.Name() || (want.Statements > 0 && got.Statements != want.Statements) || got.Statements == 0 ||
				len(got.Retries) != 0 || (got.Err == nil) != (want.Err == nil) {
				t.Errorf("%s: traced %+v, want %+v", what, got, want)
			}
		}
		one := func(n int) int { // statements where every dialect sends the same
			if db.Name == "mysql-noreturning" {
				return 0 // MySQL reads back what it wrote: more statements
			}
			return n
		}
		if _, err := tags.GetOrCreate(ctx, Tag{Name: "go"}); err != nil {
			t.Fatal(err)
		}
		check("new key", getorcreate.TraceCallEndData{TraceCallStartData: getorcreate.TraceCallStartData{Op: "GetOrCreate", Rows: 1}, Path: getorcreate.PathCreated, Created: 1, Statements: one(2)})
		if _, err := tags.GetOrCreate(ctx, Tag{Name: "go"}); err != nil {
			t.Fatal(err)
		}
		check("existing key", getorcreate.TraceCallEndData{TraceCallStartData: getorcreate.TraceCallStartData{Op: "GetOrCreate", Rows: 1}, Path: getorcreate.PathExisting, Statements: 1})
		if _, err := tags.UpdateOrCreate(ctx, Tag{Name: "go"}, getorcreate.Add("count", 1)); err != nil {
			t.Fatal(err)
		}
		check("update", getorcreate.TraceCallEndData{TraceCallStartData: getorcreate.TraceCallStartData{Op: "UpdateOrCreate", Rows: 1}, Path: getorcreate.PathUpdated, Statements: one(1)})
		if _, err := tags.GetOrCreateMany(ctx, []Tag{{Name: "go"}, {Name: "sql"}, {Name: "db"}}); err != nil {
			t.Fatal(err)
		}
		check("bulk", getorcreate.TraceCallEndData{TraceCallStartData: getorcreate.TraceCallStartData{Op: "GetOrCreateMany", Rows: 3}, Path: getorcreate.PathBulk, Created: 2})
		_, err := tags.UpdateOrCreate(ctx, Tag{Name: "go"}, getorcreate.Add("nope", 1))
		if !errors.Is(err, getorcreate.ErrInvalidUpdate) {
			t.Fatalf("bad update: %v", err)
		}
		got := rec.last()
		if got.Path != getorcreate.PathFailed || !errors.Is(got.Err, getorcreate.ErrInvalidUpdate) || getorcreate.Kind(got.Err) != getorcreate.ErrInvalidUpdate {
			t.Errorf("failed call traced as %+v", got)
		}
		if len(rec.starts) != len(rec.ends) {
			t.Errorf("%d starts, %d ends", len(rec.starts), len(rec.ends))
		}
	})
}

// TestTracerStampede: 32 callers on one new key; the tracer sees exactly
// one creation, and every other caller found the row (some after losing
// the race to the winner).
func TestTracerStampede(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		tags, rec, _ := openTraced(t, db, getorcreate.ReadFirst)
		for round := range 10 {
			var wg sync.WaitGroup
			start := make(chan struct{})
			for range 32 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					if _, err := tags.GetOrCreate(ctx, Tag{Name: fmt.Sprint("k", round)}); err != nil {
						t.Error(err)
					}
				}()
			}
			close(start)
			wg.Wait()
		}
		paths := map[getorcreate.Path]int{}
		created := 0
		for _, e := range rec.ends {
			paths[e.Path]++
			created += e.Created
		}
		if created != 10 || paths[getorcreate.PathCreated] != 10 || paths[getorcreate.PathExisting]+paths[getorcreate.PathRaced] != 310 {
			t.Errorf("paths %v, created %d; want 10 created and 310 found", paths, created)
		}
		t.Logf("paths: %v", paths)
	})
}

// TestTracerRetries: a serialization failure the server raises on the
// first two insert attempts (a sequence counts them: nextval is not rolled
// back) is retried, and the tracer says why each retry happened.
func TestTracerRetries(t *testing.T) {
	testdb.EachOf(t, []string{"postgres", "postgres-pgx", "postgres-pq"}, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		tags, rec, table := openTraced(t, db, getorcreate.WriteFirst)
		db.Exec(t, fmt.Sprintf(`CREATE SEQUENCE %s_tries`, table))
		t.Cleanup(func() { db.SQL.Exec(fmt.Sprintf(`DROP SEQUENCE IF EXISTS %s_tries`, table)) })
		db.Exec(t, fmt.Sprintf(`CREATE FUNCTION %[1]s_f() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF nextval('%[1]s_tries') <= 2 THEN
    RAISE EXCEPTION 'injected' USING ERRCODE = '40001';
  END IF;
  RETURN NEW;
END $$`, table))
		t.Cleanup(func() { db.SQL.Exec(fmt.Sprintf(`DROP FUNCTION IF EXISTS %s_f() CASCADE`, table)) })
		db.Exec(t, fmt.Sprintf(`CREATE TRIGGER %[1]s_t BEFORE INSERT ON %[1]s FOR EACH ROW EXECUTE FUNCTION %[1]s_f()`, table))
		res, err := tags.GetOrCreate(ctx, Tag{Name: "go"})
		if err != nil {
			t.Fatal(err)
		}
		got := rec.last()
		if !res.Created || res.Attempts != 3 || got.Attempts != 3 || got.Path != getorcreate.PathCreated || len(got.Retries) != 2 ||
			got.Retries[0] != getorcreate.ErrSerialization || got.Retries[1] != getorcreate.ErrSerialization || got.Statements != 3 {
			t.Errorf("result %+v, traced %+v", res, got)
		}
	})
}
