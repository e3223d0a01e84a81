package otelgetorcreate_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"

	"github.com/getorcreate/getorcreate"
	_ "github.com/getorcreate/getorcreate/dialect/sqlite" // registers the dialect and modernc.org/sqlite
	"github.com/getorcreate/getorcreate/otelgetorcreate"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

type Tag struct {
	ID   int64  `db:"id"`
	Name string `db:"name"`
}

func Example() {
	// An application sets up its TracerProvider once, with its exporter;
	// here a recorder stands in for the exporter, to print the spans.
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer tp.Shutdown(context.Background())
	otel.SetTracerProvider(tp)

	dir, _ := os.MkdirTemp("", "otelgetorcreate-example")
	defer os.RemoveAll(dir)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "ex.db")+"?_pragma=busy_timeout(10000)&_txlock=immediate")
	if err != nil {
		panic(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE tags (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)`); err != nil {
		panic(err)
	}

	ctx := context.Background()
	tags, err := getorcreate.OpenConfig[Tag](ctx, db, getorcreate.Config{
		Table:  "tags",
		Key:    []string{"name"},
		Tracer: otelgetorcreate.NewTracer(),
	})
	if err != nil {
		panic(err)
	}
	defer tags.Close()

	tags.GetOrCreate(ctx, Tag{Name: "go"})
	tags.GetOrCreate(ctx, Tag{Name: "go"})
	tags.GetOrCreateMany(ctx, []Tag{{Name: "go"}, {Name: "sql"}})

	for _, s := range spans.Ended() {
		a := map[string]string{}
		for _, kv := range s.Attributes() {
			a[string(kv.Key)] = kv.Value.String()
		}
		fmt.Println(s.Name(), a["getorcreate.path"], a["getorcreate.created"])
	}
	// Output:
	// GetOrCreate tags created 1
	// GetOrCreate tags existing 0
	// GetOrCreateMany tags bulk 1
}

// A Tracer does not know which database its tables are on: say so with
// WithAttributes, which also takes any attribute of your own.
func ExampleWithAttributes() {
	tracer := otelgetorcreate.NewTracer(otelgetorcreate.WithAttributes(
		semconv.DBSystemNamePostgreSQL,
		semconv.DBNamespace("shop"),
	))
	_ = getorcreate.Config{Table: "tags", Key: []string{"name"}, Tracer: tracer}
}
