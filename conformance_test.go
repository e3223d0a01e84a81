package getorcreate_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/getorcreate/getorcreate"
	"github.com/getorcreate/getorcreate/internal/testdb"
)

// Tag is the row type of the conformance suite's tags table.
type Tag struct {
	ID        int64     `db:"id"`
	Name      string    `db:"name"`
	Count     int64     `db:"count"`
	Note      *string   `db:"note"`
	CreatedAt time.Time `db:"created_at"`
}

func openTags(t *testing.T, db *testdb.DB) (*getorcreate.Table[Tag], string) {
	t.Helper()
	return openTagsB(t, db)
}

func openTagsB(t testing.TB, db *testdb.DB) (*getorcreate.Table[Tag], string) {
	t.Helper()
	name := db.Create(t, testdb.TagsDDL)
	tags, err := testdb.OpenTable[Tag](db, getorcreate.Config{Table: name, Key: []string{"name"}})
	if err != nil {
		t.Fatal(err)
	}
	return tags, name
}

func ptr[T any](v T) *T { return &v }

func TestGetOrCreate(t *testing.T) {
	testdb.EachOf(t, testdb.Kinds(true), func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		tags, table := openTags(t, db)
		r1, err := tags.GetOrCreate(ctx, Tag{Name: "go", Count: 5, Note: ptr("first")})
		if err != nil {
			t.Fatal(err)
		}
		if !r1.Created || r1.Row.ID == 0 || r1.Row.Count != 5 || r1.Row.Note == nil || *r1.Row.Note != "first" || r1.Row.CreatedAt.IsZero() {
			t.Fatalf("first call: %+v", r1)
		}
		r2, err := tags.GetOrCreate(ctx, Tag{Name: "go", Count: 9, Note: ptr("second")})
		if err != nil {
			t.Fatal(err)
		}
		if r2.Created || r2.Row.ID != r1.Row.ID || r2.Row.Count != 5 || *r2.Row.Note != "first" {
			t.Fatalf("second call must return the stored row unchanged: %+v", r2)
		}
		if !r2.Row.CreatedAt.Equal(r1.Row.CreatedAt) {
			t.Fatalf("created_at changed: %v then %v", r1.Row.CreatedAt, r2.Row.CreatedAt)
		}
		r3, err := tags.GetOrCreate(ctx, Tag{Name: "sql"})
		if err != nil {
			t.Fatal(err)
		}
		if !r3.Created || r3.Row.ID == r1.Row.ID || r3.Row.Count != 0 || r3.Row.Note != nil {
			t.Fatalf("defaults not applied: %+v", r3)
		}
		if n := db.Count(t, table); n != 2 {
			t.Fatalf("%d rows, want 2", n)
		}
	})
}

func TestUpdateOrCreate(t *testing.T) {
	testdb.EachOf(t, testdb.Kinds(true), func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		tags, _ := openTags(t, db)
		r, err := tags.UpdateOrCreate(ctx, Tag{Name: "go", Count: 1}, getorcreate.Add("count", 1))
		if err != nil {
			t.Fatal(err)
		}
		if !r.Created || r.Row.Count != 1 {
			t.Fatalf("create: %+v", r)
		}
		id := r.Row.ID
		r, err = tags.UpdateOrCreate(ctx, Tag{Name: "go", Count: 1}, getorcreate.Add("count", 1))
		if err != nil {
			t.Fatal(err)
		}
		if r.Created || r.Row.Count != 2 || r.Row.ID != id {
			t.Fatalf("update: %+v", r)
		}
		r, err = tags.UpdateOrCreate(ctx, Tag{Name: "go", Count: 7, Note: ptr("n")},
			getorcreate.Greatest("count", 10), getorcreate.SetProposed("note"))
		if err != nil {
			t.Fatal(err)
		}
		if r.Created || r.Row.Count != 10 || r.Row.Note == nil || *r.Row.Note != "n" {
			t.Fatalf("greatest/proposed: %+v", r)
		}
		r, err = tags.UpdateOrCreate(ctx, Tag{Name: "go", Count: 7},
			getorcreate.Least("count", 3), getorcreate.Set("note", "m"))
		if err != nil {
			t.Fatal(err)
		}
		if r.Created || r.Row.Count != 3 || *r.Row.Note != "m" {
			t.Fatalf("least/set: %+v", r)
		}
		r, err = tags.UpdateOrCreate(ctx, Tag{Name: "go", Count: 4},
			getorcreate.Expr("count", "? * 2 + ? + ?", getorcreate.Stored("count"), getorcreate.Proposed("count"), 1))
		if err != nil {
			t.Fatal(err)
		}
		if r.Created || r.Row.Count != 3*2+4+1 {
			t.Fatalf("expr: %+v", r)
		}
		// A no-op update still returns the row, not created.
		r, err = tags.UpdateOrCreate(ctx, Tag{Name: "go"}, getorcreate.Set("count", 11))
		if err != nil {
			t.Fatal(err)
		}
		if r.Created || r.Row.Count != 11 || r.Row.ID != id {
			t.Fatalf("no-op update: %+v", r)
		}
	})
}

func TestGetOrCreateFunc(t *testing.T) {
	testdb.EachOf(t, testdb.Kinds(true), func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		tags, _ := openTags(t, db)
		calls := 0
		create := func(row *Tag) error {
			calls++
			row.Count = 42
			row.Note = ptr("computed")
			return nil
		}
		r, err := tags.GetOrCreateFunc(ctx, Tag{Name: "lazy"}, create)
		if err != nil || !r.Created || r.Row.Count != 42 || *r.Row.Note != "computed" || calls != 1 {
			t.Fatalf("create path: %+v %v, %d calls", r, err, calls)
		}
		r, err = tags.GetOrCreateFunc(ctx, Tag{Name: "lazy"}, create)
		if err != nil || r.Created || r.Row.Count != 42 || calls != 1 {
			t.Fatalf("existing row must not call create: %+v %v, %d calls", r, err, calls)
		}
		conn, err := db.SQL.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		r, err = tags.GetOrCreateFuncTx(ctx, conn, Tag{Name: "lazy2"}, create)
		if err != nil || !r.Created || calls != 2 || r.Attempts != 1 {
			t.Fatalf("Tx form: %+v %v, %d calls", r, err, calls)
		}
		boom := errors.New("boom")
		_, err = tags.GetOrCreateFunc(ctx, Tag{Name: "never"}, func(*Tag) error { return boom })
		if !errors.Is(err, boom) {
			t.Fatalf("create's error must come back: %v", err)
		}
	})
}
