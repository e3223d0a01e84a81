package getorcreate_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getorcreate/getorcreate"
	"github.com/getorcreate/getorcreate/internal/testdb"
)

// openLedgerTags opens a fresh tags table with a fresh ledger on db.
func openLedgerTags(t *testing.T, db *testdb.DB) (*getorcreate.Table[Tag], *getorcreate.Ledger, string) {
	t.Helper()
	ctx := context.Background()
	name := db.Table(t)
	l, err := getorcreate.CreateLedger(ctx, db.SQL, name)
	if err != nil {
		t.Fatal(err)
	}
	table := db.Create(t, testdb.TagsDDL)
	tags, err := testdb.OpenTable[Tag](db, getorcreate.Config{Table: table, Key: []string{"name"}, Ledger: l})
	if err != nil {
		t.Fatal(err)
	}
	return tags, l, table
}

func countOf(t *testing.T, db *testdb.DB, table, name string) int64 {
	t.Helper()
	var n int64
	q := fmt.Sprintf("SELECT count FROM %s WHERE name = '%s'", table, name)
	if err := db.SQL.QueryRow(q).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// TestLedgerOnce: a request applied once, however often it is sent; its
// first outcome comes back to every resend.
func TestLedgerOnce(t *testing.T) {
	testdb.EachOf(t, testdb.Kinds(true), func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		tags, _, table := openLedgerTags(t, db)
		first, err := tags.UpdateOrCreateOnce(ctx, "req-1", Tag{Name: "go", Count: 1}, getorcreate.Add("count", 1))
		if err != nil {
			t.Fatal(err)
		}
		if !first.Created || first.Replayed || first.Row.Count != 1 {
			t.Fatalf("first: %+v", first)
		}
		for range 3 {
			again, err := tags.UpdateOrCreateOnce(ctx, "req-1", Tag{Name: "go", Count: 1}, getorcreate.Add("count", 1))
			if err != nil {
				t.Fatal(err)
			}
			if !again.Replayed || !again.Created || again.Row.ID != first.Row.ID || again.Row.Count != 1 {
				t.Fatalf("resend: %+v, want the first outcome replayed", again)
			}
		}
		second, err := tags.UpdateOrCreateOnce(ctx, "req-2", Tag{Name: "go", Count: 1}, getorcreate.Add("count", 1))
		if err != nil {
			t.Fatal(err)
		}
		if second.Replayed || second.Created || second.Row.Count != 2 {
			t.Fatalf("a new request: %+v", second)
		}
		if n := countOf(t, db, table, "go"); n != 2 {
			t.Fatalf("count %d after two distinct requests, want 2", n)
		}
		// The same id for another request is refused, and writes nothing.
		_, err = tags.UpdateOrCreateOnce(ctx, "req-1", Tag{Name: "sql", Count: 1}, getorcreate.Add("count", 1))
		if !errors.Is(err, getorcreate.ErrRequestReused) || getorcreate.IsRetryable(err) {
			t.Fatalf("reused id: %v", err)
		}
		_, err = tags.UpdateOrCreateOnce(ctx, "req-1", Tag{Name: "go", Count: 1}, getorcreate.Add("count", 5))
		if !errors.Is(err, getorcreate.ErrRequestReused) {
			t.Fatalf("reused id with other updates: %v", err)
		}
		if n := db.Count(t, table); n != 1 {
			t.Fatalf("%d rows, want 1: a refused request wrote", n)
		}
		if _, err := tags.UpdateOrCreateOnce(ctx, "", Tag{Name: "go"}); !errors.Is(err, getorcreate.ErrInvalidRequestID) {
			t.Fatalf("empty id: %v", err)
		}
		if _, err := tags.UpdateOrCreateOnce(ctx, strings.Repeat("x", getorcreate.MaxRequestIDLength+1), Tag{Name: "go"}); !errors.Is(err, getorcreate.ErrInvalidRequestID) {
			t.Fatalf("long id: %v", err)
		}
	})
}

// TestLedgerStampede: 32 goroutines send each of 20 requests at once; each
// request is applied exactly once, and exactly one sender of each sees it
// applied (the others see it replayed).
func TestLedgerStampede(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		tags, _, table := openLedgerTags(t, db)
		const senders, requests = 32, 20
		applied := make([]int, requests)
		var mu sync.Mutex
		for r := range requests {
			var wg sync.WaitGroup
			start := make(chan struct{})
			for range senders {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					res, err := tags.UpdateOrCreateOnce(ctx, fmt.Sprint("stampede-", r), Tag{Name: "hot", Count: 1}, getorcreate.Add("count", 1))
					if err != nil {
						t.Error(err)
						return
					}
					if !res.Replayed {
						mu.Lock()
						applied[r]++
						mu.Unlock()
					}
				}()
			}
			close(start)
			wg.Wait()
		}
		for r, n := range applied {
			if n != 1 {
				t.Errorf("request %d applied by %d senders, want 1", r, n)
			}
		}
		if n := countOf(t, db, table, "hot"); n != requests {
			t.Fatalf("count %d after %d distinct requests sent %d times each", n, requests, senders)
		}
	})
}

// TestLedgerExpire: expired ids are gone, and a request sent again after
// its id expired is applied again, as the docs warn.
func TestLedgerExpire(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		tags, l, table := openLedgerTags(t, db)
		for _, id := range []string{"a", "b"} {
			if _, err := tags.UpdateOrCreateOnce(ctx, id, Tag{Name: "go", Count: 1}, getorcreate.Add("count", 1)); err != nil {
				t.Fatal(err)
			}
		}
		n, err := l.Expire(ctx, time.Now().Add(-time.Hour))
		if err != nil || n != 0 {
			t.Fatalf("Expire an hour back: %d, %v", n, err)
		}
		n, err = l.Expire(ctx, time.Now().Add(time.Second))
		if err != nil || n != 2 {
			t.Fatalf("Expire now: %d, %v; want 2", n, err)
		}
		res, err := tags.UpdateOrCreateOnce(ctx, "a", Tag{Name: "go", Count: 1}, getorcreate.Add("count", 1))
		if err != nil || res.Replayed {
			t.Fatalf("after expiry: %+v, %v", res, err)
		}
		if c := countOf(t, db, table, "go"); c != 3 {
			t.Fatalf("count %d, want 3", c)
		}
	})
}

// TestLedgerSchema: a missing ledger table is a SchemaError with the DDL
// that creates it; CreateLedger can run twice; a table without a ledger
// cannot be asked for UpdateOrCreateOnce.
func TestLedgerSchema(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		name := db.Table(t)
		_, err := getorcreate.OpenLedger(ctx, db.SQL, name)
		var se *getorcreate.SchemaError
		if !errors.As(err, &se) || se.Kind != getorcreate.ErrNoTable || !strings.Contains(se.Fix, "CREATE TABLE") {
			t.Fatalf("OpenLedger on a missing table: %v", err)
		}
		for _, stmt := range strings.Split(strings.TrimSuffix(se.Fix, "; "), "; ") {
			db.Exec(t, stmt)
		}
		if _, err := getorcreate.CreateLedger(ctx, db.SQL, name); err != nil {
			t.Fatalf("CreateLedger on the table the Fix made: %v", err)
		}
		tags, _ := openTags(t, db)
		if _, err := tags.UpdateOrCreateOnce(ctx, "x", Tag{Name: "go"}); err == nil {
			t.Fatal("UpdateOrCreateOnce without a ledger succeeded")
		}
	})
}

// TestLedgerOnceTx: a transaction of several writes, run once per request
// id by 16 concurrent senders of each of 10 requests; every sender gets the
// first outcome, and the counts equal the requests.
func TestLedgerOnceTx(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		tags, l, table := openLedgerTags(t, db)
		var mu sync.Mutex
		outcomes := map[string]map[string]int{} // request -> outcome -> senders
		for r := range 10 {
			id := fmt.Sprint("tx-", r)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					out, _, err := l.Once(ctx, id, "fp", func(tx *sql.Tx) ([]byte, error) {
						a, err := tags.UpdateOrCreateTx(ctx, tx, Tag{Name: "a", Count: 1}, getorcreate.Add("count", 1))
						if err != nil {
							return nil, err
						}
						b, err := tags.UpdateOrCreateTx(ctx, tx, Tag{Name: "b", Count: 1}, getorcreate.Add("count", 1))
						if err != nil {
							return nil, err
						}
						return []byte(fmt.Sprint(a.Row.Count, b.Row.Count)), nil
					})
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					if outcomes[id] == nil {
						outcomes[id] = map[string]int{}
					}
					outcomes[id][string(out)]++
					mu.Unlock()
				}()
			}
			close(start)
			wg.Wait()
		}
		for id, o := range outcomes {
			if len(o) != 1 {
				t.Errorf("request %s: senders got different outcomes %v", id, o)
			}
		}
		if a, b := countOf(t, db, table, "a"), countOf(t, db, table, "b"); a != 10 || b != 10 {
			t.Fatalf("counts %d, %d after 10 requests sent 16 times each", a, b)
		}
		if _, _, err := l.Once(ctx, "tx-0", "other", func(*sql.Tx) ([]byte, error) { return nil, nil }); !errors.Is(err, getorcreate.ErrRequestReused) {
			t.Fatalf("another fingerprint: %v", err)
		}
	})
}

// TestLedgerStatements pins what a request id costs, as the README's table
// of statements says: the update, and the ledger's get-or-create of the id
// (an insert; on MariaDB and SQLite a lookup and an insert), in one transaction (its
// BEGIN and COMMIT not counted).
func TestLedgerStatements(t *testing.T) {
	want := map[string]int{"postgres": 2, "mysql": 3, "sqlite": 3}
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		rec := &recorder{}
		name := db.Table(t)
		l, err := getorcreate.CreateLedger(ctx, db.SQL, name)
		if err != nil {
			t.Fatal(err)
		}
		table := db.Create(t, testdb.TagsDDL)
		tags, err := testdb.OpenTable[Tag](db, getorcreate.Config{Table: table, Key: []string{"name"}, Ledger: l, Tracer: rec, Order: getorcreate.ReadFirst})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tags.UpdateOrCreate(ctx, Tag{Name: "go", Count: 1}, getorcreate.Add("count", 1)); err != nil {
			t.Fatal(err)
		}
		if _, err := tags.UpdateOrCreateOnce(ctx, "r1", Tag{Name: "go", Count: 1}, getorcreate.Add("count", 1)); err != nil {
			t.Fatal(err)
		}
		if got := rec.last(); got.Op != "UpdateOrCreateOnce" || got.Statements != want[db.Kind] {
			t.Errorf("UpdateOrCreateOnce of an existing key: %d statements, want %d (%+v)", got.Statements, want[db.Kind], got)
		}
	})
}
