package pgxv5_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/getorcreate/getorcreate"
	"github.com/getorcreate/getorcreate/internal/testdb"
	"github.com/getorcreate/getorcreate/pgxv5"
	"github.com/jackc/pgx/v5"
)

type Tag struct {
	ID    int64  `db:"id"`
	Name  string `db:"name"`
	Count int64  `db:"count"`
}

func setup(t *testing.T) (*testdb.DB, *getorcreate.Table[Tag], string) {
	db := testdb.Open(t, "postgres-pgx")
	table := db.Create(t, map[string]string{"": `CREATE TABLE %s (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE, count BIGINT NOT NULL DEFAULT 0)`})
	tags, err := pgxv5.Open[Tag](context.Background(), db.Pool, table, "name")
	if err != nil {
		t.Fatal(err)
	}
	return db, tags, table
}

// Inside a pgx.Tx whose snapshot is pinned before a competitor commits the
// key: READ COMMITTED returns the competitor's row and the transaction
// commits; REPEATABLE READ and SERIALIZABLE return a retryable error, and
// RunTx's retry succeeds.
func TestCallerTx(t *testing.T) {
	for _, iso := range []pgx.TxIsoLevel{pgx.ReadCommitted, pgx.RepeatableRead, pgx.Serializable} {
		t.Run(string(iso), func(t *testing.T) {
			ctx := context.Background()
			db, tags, table := setup(t)
			tx, err := db.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: iso})
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			if _, err := tx.Exec(ctx, "SELECT COUNT(*) FROM "+table); err != nil {
				t.Fatal(err)
			}
			winner, err := tags.GetOrCreate(ctx, Tag{Name: "k"})
			if err != nil || !winner.Created {
				t.Fatalf("%+v %v", winner, err)
			}
			res, err := tags.UpdateOrCreateTx(ctx, pgxv5.Tx(tx), Tag{Name: "k"}, getorcreate.Add("count", 1))
			if iso != pgx.ReadCommitted {
				if !getorcreate.IsRetryable(err) {
					t.Fatalf("want a retryable error, got %v", err)
				}
				tx.Rollback(ctx)
				err = pgxv5.RunTx(ctx, db.Pool, pgx.TxOptions{IsoLevel: iso}, func(tx pgx.Tx) error {
					res, err = tags.UpdateOrCreateTx(ctx, pgxv5.Tx(tx), Tag{Name: "k"}, getorcreate.Add("count", 1))
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if err := tx.Commit(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if res.Created || res.Row.ID != winner.Row.ID || res.Row.Count != 1 {
				t.Fatalf("%+v, want the competitor's row incremented once", res)
			}
		})
	}
}

// 64 goroutines, each in its own SERIALIZABLE pgx.Tx run by RunTx, on one
// new key: one row, one creator, exact count.
func TestStampedeInPgxTx(t *testing.T) {
	ctx := context.Background()
	db, tags, table := setup(t)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	var mu sync.Mutex
	created, errs := 0, 0
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			var res getorcreate.Result[Tag]
			err := pgxv5.RunTx(ctx, db.Pool, pgx.TxOptions{IsoLevel: pgx.Serializable}, func(tx pgx.Tx) error {
				var err error
				res, err = tags.UpdateOrCreateTx(ctx, pgxv5.Tx(tx), Tag{Name: "hot", Count: 1}, getorcreate.Add("count", 1))
				return err
			})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs++
				t.Error(err)
			}
			if res.Created {
				created++
			}
		}()
	}
	close(gate)
	wg.Wait()
	var count int64
	if err := db.SQL.QueryRow("SELECT count FROM " + table).Scan(&count); err != nil {
		t.Fatal(err)
	}
	if errs != 0 || created != 1 || count != 64 || db.Count(t, table) != 1 {
		t.Fatalf("errors %d, created %d, count %d, rows %d", errs, created, count, db.Count(t, table))
	}
}

func TestManyInPgxTx(t *testing.T) {
	ctx := context.Background()
	db, tags, table := setup(t)
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	in := make([]Tag, 10)
	for i := range in {
		in[i] = Tag{Name: fmt.Sprintf("t%d", i%7)}
	}
	res, err := tags.GetOrCreateManyTx(ctx, pgxv5.Tx(tx), in)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Row.Name != in[i].Name || r.Created != (i < 7) {
			t.Fatalf("result %d: %+v", i, r)
		}
	}
	// Rolled back with the caller's transaction.
	if n := db.Count(t, table); n != 0 {
		t.Fatalf("%d rows survived the caller's rollback", n)
	}
	if _, err := tags.GetOrCreateTx(ctx, pgxv5.Tx(db.Pool), Tag{Name: ""}); err != nil {
		t.Fatal(err)
	}
	var e *getorcreate.Error
	_, err = pgxv5.Open[Tag](ctx, db.Pool, "goc_missing", "name")
	if !errors.Is(err, getorcreate.ErrNoTable) || errors.As(err, &e) {
		t.Fatalf("want a *SchemaError for ErrNoTable, got %v", err)
	}
}
