package getorcreate_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/getorcreate/getorcreate"
	_ "github.com/getorcreate/getorcreate/dialect/sqlite" // registers the dialect and modernc.org/sqlite
)

// exampleDB opens a fresh SQLite database with a tags table.
func exampleDB() (*sql.DB, func()) {
	dir, _ := os.MkdirTemp("", "getorcreate-example")
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "ex.db")+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
	if err != nil {
		panic(err)
	}
	_, err = db.Exec(`CREATE TABLE tags (
		id    INTEGER PRIMARY KEY,
		name  TEXT NOT NULL UNIQUE,
		count INTEGER NOT NULL DEFAULT 0)`)
	if err != nil {
		panic(err)
	}
	return db, func() { db.Close(); os.RemoveAll(dir) }
}

type ExampleTag struct {
	ID    int64  `db:"id"`
	Name  string `db:"name"`
	Count int64  `db:"count"`
}

func ExampleTable_GetOrCreate() {
	db, done := exampleDB()
	defer done()
	ctx := context.Background()

	tags, err := getorcreate.Open[ExampleTag](ctx, db, "tags", "name")
	if err != nil {
		panic(err)
	}
	first, _ := tags.GetOrCreate(ctx, ExampleTag{Name: "go"})
	again, _ := tags.GetOrCreate(ctx, ExampleTag{Name: "go", Count: 99}) // Count is used only to create
	fmt.Println(first.Row.ID, first.Row.Name, first.Created)
	fmt.Println(again.Row.ID, again.Row.Count, again.Created)
	// Output:
	// 1 go true
	// 1 0 false
}

func ExampleTable_UpdateOrCreate() {
	db, done := exampleDB()
	defer done()
	ctx := context.Background()

	tags, _ := getorcreate.Open[ExampleTag](ctx, db, "tags", "name")
	for range 3 {
		// Created with count 1, then count = count + 1 in the database.
		res, err := tags.UpdateOrCreate(ctx, ExampleTag{Name: "sql", Count: 1}, getorcreate.Add("count", 1))
		if err != nil {
			panic(err)
		}
		fmt.Println(res.Row.Count, res.Created)
	}
	// Output:
	// 1 true
	// 2 false
	// 3 false
}

func ExampleTable_GetOrCreateMany() {
	db, done := exampleDB()
	defer done()
	ctx := context.Background()

	tags, _ := getorcreate.Open[ExampleTag](ctx, db, "tags", "name")
	tags.GetOrCreate(ctx, ExampleTag{Name: "databases"})
	res, err := tags.GetOrCreateMany(ctx, []ExampleTag{{Name: "go"}, {Name: "databases"}, {Name: "go"}})
	if err != nil {
		panic(err)
	}
	for _, r := range res { // one result per input, in input order
		fmt.Println(r.Row.Name, r.Row.ID, r.Created)
	}
	// Output:
	// go 2 true
	// databases 1 false
	// go 2 false
}

func ExampleRunTx() {
	db, done := exampleDB()
	defer done()
	ctx := context.Background()

	tags, _ := getorcreate.Open[ExampleTag](ctx, db, "tags", "name")
	// The whole function runs again if the database reports a
	// serialization failure, a deadlock or a busy database.
	err := getorcreate.RunTx(ctx, db, nil, func(tx *sql.Tx) error {
		for _, name := range []string{"a", "b"} {
			if _, err := tags.UpdateOrCreateTx(ctx, tx, ExampleTag{Name: name, Count: 1}, getorcreate.Add("count", 1)); err != nil {
				return err
			}
		}
		return nil
	})
	fmt.Println(err)
	// Output:
	// <nil>
}

func ExampleOpen_noUniqueIndex() {
	db, done := exampleDB()
	defer done()
	db.Exec(`CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT NOT NULL)`)

	type Note struct {
		ID    int64  `db:"id"`
		Title string `db:"title"`
	}
	_, err := getorcreate.Open[Note](context.Background(), db, "notes", "title")
	var se *getorcreate.SchemaError
	if errors.As(err, &se) && errors.Is(err, getorcreate.ErrNoUniqueIndex) {
		fmt.Println(se.Fix)
	}
	// Output:
	// CREATE UNIQUE INDEX "notes_title_key" ON "notes" ("title");
}

func ExampleTable_UpdateOrCreateOnce() {
	db, done := exampleDB()
	defer done()
	ctx := context.Background()

	ledger, err := getorcreate.CreateLedger(ctx, db, "requests")
	if err != nil {
		panic(err)
	}
	tags, _ := getorcreate.OpenConfig[ExampleTag](ctx, db, getorcreate.Config{Table: "tags", Key: []string{"name"}, Ledger: ledger})
	// A client sends the same request three times (its answers were lost):
	// the increment is applied once, and each resend gets the first outcome.
	for range 3 {
		res, err := tags.UpdateOrCreateOnce(ctx, "request-7f3a", ExampleTag{Name: "go", Count: 1}, getorcreate.Add("count", 1))
		if err != nil {
			panic(err)
		}
		fmt.Println(res.Row.Count, res.Created, res.Replayed)
	}
	// Output:
	// 1 true false
	// 1 true true
	// 1 true true
}

func ExampleTracer() {
	db, done := exampleDB()
	defer done()
	ctx := context.Background()

	tags, _ := getorcreate.OpenConfig[ExampleTag](ctx, db, getorcreate.Config{Table: "tags", Key: []string{"name"}, Tracer: printTracer{}})
	tags.GetOrCreate(ctx, ExampleTag{Name: "go"})
	tags.GetOrCreate(ctx, ExampleTag{Name: "go"})
	// Output:
	// GetOrCreate tags: created, 2 statements, 1 attempt
	// GetOrCreate tags: existing, 1 statements, 1 attempt
}

// printTracer prints one line per call.
type printTracer struct{}

func (printTracer) TraceCallStart(ctx context.Context, _ getorcreate.TraceCallStartData) context.Context {
	return ctx
}

func (printTracer) TraceCallEnd(_ context.Context, d getorcreate.TraceCallEndData) {
	fmt.Printf("%s %s: %s, %d statements, %d attempt\n", d.Op, d.Table, d.Path, d.Statements, d.Attempts)
}

// With Config.Coalesce, the calls of many goroutines share statements, and
// each caller still gets its own result: here 16 increments of one tag,
// whose callers see the counts 1 to 16 between them.
func ExampleConfig_coalesce() {
	db, done := exampleDB()
	defer done()
	ctx := context.Background()

	tags, err := getorcreate.OpenConfig[ExampleTag](ctx, db, getorcreate.Config{Table: "tags", Key: []string{"name"}, Coalesce: true})
	if err != nil {
		panic(err)
	}
	defer tags.Close()
	var mu sync.Mutex
	var seen []int64
	created := 0
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := tags.UpdateOrCreate(ctx, ExampleTag{Name: "go", Count: 1}, getorcreate.Add("count", 1))
			if err != nil {
				panic(err)
			}
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, res.Row.Count)
			if res.Created {
				created++
			}
		}()
	}
	wg.Wait()
	slices.Sort(seen)
	fmt.Println(seen, created)
	// Output:
	// [1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16] 1
}
