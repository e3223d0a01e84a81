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

func TestGetOrCreateManyAlignment(t *testing.T) {
	testdb.EachOf(t, testdb.Kinds(true), func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		tags, table := openTags(t, db)
		pre := map[string]int64{}
		for _, n := range []string{"b", "d", "f"} {
			r, err := tags.GetOrCreate(ctx, Tag{Name: n, Count: 100})
			if err != nil {
				t.Fatal(err)
			}
			pre[n] = r.Row.ID
		}
		in := []Tag{{Name: "a", Count: 1}, {Name: "b", Count: 2}, {Name: "c", Count: 3}, {Name: "a", Count: 4}, {Name: "d", Count: 5}, {Name: "e", Count: 6}, {Name: "b", Count: 7}}
		res, err := tags.GetOrCreateMany(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != len(in) {
			t.Fatalf("%d results for %d inputs", len(res), len(in))
		}
		want := map[string]bool{"a": true, "c": true, "e": true}
		seenCreated := map[string]bool{}
		for i, r := range res {
			if r.Row.Name != in[i].Name {
				t.Fatalf("result %d is %q, want %q", i, r.Row.Name, in[i].Name)
			}
			if id, ok := pre[in[i].Name]; ok {
				if r.Created || r.Row.ID != id || r.Row.Count != 100 {
					t.Fatalf("result %d: existing row must come back unchanged: %+v", i, r)
				}
				continue
			}
			if r.Created {
				if seenCreated[r.Row.Name] {
					t.Fatalf("created twice for %q", r.Row.Name)
				}
				seenCreated[r.Row.Name] = true
				if r.Row.Count != in[i].Count {
					t.Fatalf("created row %d has count %d, want %d", i, r.Row.Count, in[i].Count)
				}
			}
			if r.Row.ID == 0 {
				t.Fatalf("result %d has no id", i)
			}
		}
		for n := range want {
			if !seenCreated[n] {
				t.Fatalf("%q was never reported created", n)
			}
		}
		if res[0].Row.ID != res[3].Row.ID || res[3].Created {
			t.Fatalf("duplicate input must share the row and not be created twice: %+v %+v", res[0], res[3])
		}
		if n := db.Count(t, table); n != 6 {
			t.Fatalf("%d rows, want 6", n)
		}
		// The ids are the stored ones, not arithmetic.
		for i, r := range res {
			var name string
			if err := db.SQL.QueryRow(fmt.Sprintf("SELECT name FROM %s WHERE id = %d", table, r.Row.ID)).Scan(&name); err != nil || name != in[i].Name {
				t.Fatalf("result %d: id %d holds %q (%v), want %q", i, r.Row.ID, name, err, in[i].Name)
			}
		}
		empty, err := tags.GetOrCreateMany(ctx, nil)
		if err != nil || len(empty) != 0 {
			t.Fatalf("empty input: %v %v", empty, err)
		}
	})
}

func TestUpdateOrCreateMany(t *testing.T) {
	testdb.EachOf(t, testdb.Kinds(true), func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		tags, _ := openTags(t, db)
		if _, err := tags.GetOrCreate(ctx, Tag{Name: "x", Count: 10}); err != nil {
			t.Fatal(err)
		}
		in := []Tag{{Name: "y", Count: 1}, {Name: "x", Count: 1}, {Name: "z", Count: 5}, {Name: "y", Count: 1}}
		res, err := tags.UpdateOrCreateMany(ctx, in, getorcreate.Expr("count", "? + ?", getorcreate.Stored("count"), getorcreate.Proposed("count")))
		if err != nil {
			t.Fatal(err)
		}
		want := []struct {
			count   int64
			created bool
		}{{1, true}, {11, false}, {5, true}, {1, false}}
		for i, r := range res {
			if r.Row.Name != in[i].Name || r.Row.Count != want[i].count || r.Created != want[i].created {
				t.Fatalf("result %d: %+v, want count %d created %v", i, r, want[i].count, want[i].created)
			}
		}
		res, err = tags.UpdateOrCreateMany(ctx, []Tag{{Name: "z"}, {Name: "x"}}, getorcreate.Add("count", 1))
		if err != nil {
			t.Fatal(err)
		}
		if res[0].Row.Count != 6 || res[1].Row.Count != 12 || res[0].Created || res[1].Created {
			t.Fatalf("second batch: %+v", res)
		}
	})
}

func TestManyLargerThanChunk(t *testing.T) {
	testdb.EachOf(t, testdb.Kinds(true), func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		tags, table := openTags(t, db)
		const n = 2500
		in := make([]Tag, n)
		for i := range in {
			in[i] = Tag{Name: fmt.Sprintf("k%05d", (i*7919)%n), Count: int64(i)}
		}
		// Half exist already.
		if _, err := tags.GetOrCreateMany(ctx, in[:n/2]); err != nil {
			t.Fatal(err)
		}
		res, err := tags.GetOrCreateMany(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		created := 0
		for i, r := range res {
			if r.Row.Name != in[i].Name || r.Row.Count != in[i].Count {
				t.Fatalf("result %d misaligned: %+v for %+v", i, r.Row, in[i])
			}
			if r.Created {
				created++
			}
		}
		if created != n-n/2 || db.Count(t, table) != n {
			t.Fatalf("created %d (want %d), rows %d (want %d)", created, n-n/2, db.Count(t, table), n)
		}
	})
}

// Two workers write the same keys in opposite orders, 100 batches each; the
// library sorts the keys, so no deadlock ever reaches the caller.
func TestManyOppositeOrders(t *testing.T) {
	testdb.EachOf(t, testdb.Kinds(true), func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		tags, table := openTags(t, db)
		rounds := 100
		if testing.Short() {
			rounds = 20
		}
		var total [2]int64
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		start := make(chan struct{})
		for w := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for r := range rounds {
					in := make([]Tag, 100)
					for i := range in {
						k := i
						if w == 1 {
							k = 99 - i
						}
						in[i] = Tag{Name: fmt.Sprintf("r%03d-k%03d", r%10, k), Count: 1}
					}
					res, err := tags.UpdateOrCreateMany(ctx, in, getorcreate.Add("count", 1))
					if err != nil {
						errs <- err
						return
					}
					// A deadlock would be retried inside the library's own
					// transaction; a second attempt is how it would show.
					if res[0].Attempts != 1 && db.Kind != "sqlite" {
						errs <- fmt.Errorf("batch took %d attempts", res[0].Attempts)
						return
					}
					total[w] += int64(len(res))
				}
			}()
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("a batch failed: %v", err)
		}
		var sum int64
		if err := db.SQL.QueryRow("SELECT COALESCE(SUM(count), 0) FROM " + table).Scan(&sum); err != nil {
			t.Fatal(err)
		}
		if sum != total[0]+total[1] || db.Count(t, table) != 1000 {
			t.Fatalf("sum of counts %d, want %d; rows %d, want 1000", sum, total[0]+total[1], db.Count(t, table))
		}
	})
}

// A batch that fails on a later row leaves nothing written.
func TestManyAllOrNothing(t *testing.T) {
	testdb.EachOf(t, testdb.Kinds(true), func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		table := db.Create(t, map[string]string{
			"sqlite":   `CREATE TABLE %s (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, slug TEXT NOT NULL UNIQUE)`,
			"postgres": `CREATE TABLE %s (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE, slug TEXT NOT NULL UNIQUE)`,
			"mysql":    `CREATE TABLE %s (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(64) NOT NULL UNIQUE, slug VARCHAR(64) NOT NULL UNIQUE)`,
		})
		type Slug struct {
			ID   int64  `db:"id"`
			Name string `db:"name"`
			Slug string `db:"slug"`
		}
		tb, err := testdb.OpenTable[Slug](db, getorcreate.Config{Table: table, Key: []string{"name"}})
		if err != nil {
			t.Fatal(err)
		}
		in := []Slug{{Name: "a", Slug: "s1"}, {Name: "b", Slug: "s2"}, {Name: "c", Slug: "s1"}}
		_, err = tb.GetOrCreateMany(ctx, in)
		var e *getorcreate.Error
		if !errors.Is(err, getorcreate.ErrConflict) || !errors.As(err, &e) || e.Input != 2 {
			t.Fatalf("want ErrConflict naming input 2, got %v", err)
		}
		if n := db.Count(t, table); n != 0 {
			t.Fatalf("%d rows left behind by a failed batch", n)
		}
		_, err = tb.GetOrCreateMany(ctx, []Slug{{Name: "ok"}, {Name: "x", Slug: "s"}, {Name: "y", Slug: "s"}})
		if !errors.Is(err, getorcreate.ErrConflict) || db.Count(t, table) != 0 {
			t.Fatalf("second failing batch: %v, %d rows", err, db.Count(t, table))
		}
	})
}
