package getorcreate_test

// Regression tests from a review of the fault handling: each was a way to
// apply a write twice, or to report a write that may have committed as
// definitely failed, or to lose data on replay.

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/getorcreate/getorcreate"
	"github.com/getorcreate/getorcreate/dialect"
	"github.com/getorcreate/getorcreate/dialect/postgres"
	"github.com/getorcreate/getorcreate/internal/faultproxy"
	"github.com/getorcreate/getorcreate/internal/testdb"
	"github.com/jackc/pgx/v5"
)

// An attempt whose write committed but whose answer was lost (inDoubt), then
// retries that fail to connect: the call reports ErrConnection ("nothing
// committed"), though the first attempt's write is in the table.
func TestRegressionInDoubtThenRefused(t *testing.T) {
	ctx := context.Background()
	testdb.EachOf(t, []string{"postgres", "mysql"}, func(t *testing.T, db *testdb.DB) {
		for _, op := range []string{"get", "set", "once"} {
			t.Run(op, func(t *testing.T) {
				via, p := db.ThroughProxy(t)
				pool := testdb.FreshPool(t, via)
				pool.SetMaxOpenConns(1)
				table := db.Create(t, testdb.TagsDDL)
				l, err := getorcreate.CreateLedger(ctx, db.SQL, db.Table(t))
				if err != nil {
					t.Fatal(err)
				}
				tags, err := getorcreate.OpenConfig[Tag](ctx, pool, getorcreate.Config{Table: table, Key: []string{"name"}, Dialect: db.Dialect, Ledger: l,
					Order: getorcreate.ReadFirst, Retry: getorcreate.RetryPolicy{MaxRetries: 2, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := tags.GetOrCreate(ctx, Tag{Name: "warm"}); err != nil {
					t.Fatal(err)
				}
				p.Refuse(true)
				match := "insert "
				if op == "once" {
					match = "commit"
				}
				p.Cut(faultproxy.Rule{Match: []byte(match), When: faultproxy.AfterSend})
				var res getorcreate.Result[Tag]
				switch op {
				case "get":
					res, err = tags.GetOrCreate(ctx, Tag{Name: "k"})
				case "set":
					res, err = tags.UpdateOrCreate(ctx, Tag{Name: "k", Count: 5}, getorcreate.Set("count", 5))
				case "once":
					res, err = tags.UpdateOrCreateOnce(ctx, "req-1", Tag{Name: "k", Count: 1}, getorcreate.Add("count", 1))
				}
				p.Refuse(false)
				rows := 0
				if err := db.SQL.QueryRow("SELECT COUNT(*) FROM " + table + " WHERE name = 'k'").Scan(&rows); err != nil {
					t.Fatal(err)
				}
				t.Logf("res=%+v err=%v; Indeterminate=%v Connection=%v Retryable=%v; rows stored for k: %d",
					res, err, errors.Is(err, getorcreate.ErrIndeterminate), errors.Is(err, getorcreate.ErrConnection), getorcreate.IsRetryable(err), rows)
				if rows == 1 && err != nil && !errors.Is(err, getorcreate.ErrIndeterminate) {
					t.Errorf("the write committed, yet the caller is told %v (Kind %v: nothing committed, retryable)", err, getorcreate.Kind(err))
				}
			})
		}
	})
}

// Uncommitted of a library *Error whose Kind is ErrIndeterminate (what every
// table call returns for a lost autocommit write) loses the *Error: the
// result is a bare *dialect.Error that errors.Is does not match with
// ErrConnection, although Kind says ErrConnection.
func TestRegressionUncommittedUnwrapsLibraryError(t *testing.T) {
	lib := &getorcreate.Error{Op: "UpdateOrCreate", Table: "tags", Kind: getorcreate.ErrIndeterminate, Input: -1,
		Err: &dialect.Error{Class: dialect.ClassConnection, MayHaveRun: true, Err: io.ErrUnexpectedEOF}}
	got := getorcreate.Uncommitted(lib)
	var e *getorcreate.Error
	t.Logf("%T %v; Kind=%v Is(ErrConnection)=%v As(*Error)=%v", got, got, getorcreate.Kind(got), errors.Is(got, getorcreate.ErrConnection), errors.As(got, &e))
	if !errors.Is(got, getorcreate.ErrConnection) || !errors.As(got, &e) {
		t.Errorf("Uncommitted returned %T, which does not match ErrConnection with errors.Is (Kind says %v)", got, getorcreate.Kind(got))
	}
}

// With default_query_exec_mode=simple_protocol (which the library accepts
// as pooler-safe and recommends in ErrTransactionPooler's message), pgx
// reports a connection lost after the upsert was sent as SafeToRetry, the
// stdlib turns that into driver.ErrBadConn, and database/sql runs the Add
// again on a new connection: applied twice, no error reported.
func TestRegressionSimpleProtocolReRunsAdd(t *testing.T) {
	ctx := context.Background()
	for _, mode := range []string{"exec", "simple_protocol"} {
		t.Run(mode, func(t *testing.T) {
			db := testdb.Open(t, "postgres")
			via, p := db.ThroughProxy(t)
			pool := testdb.FreshPool(t, via+"&default_query_exec_mode="+mode)
			table := db.Create(t, testdb.TagsDDL)
			tags, err := getorcreate.OpenConfig[Tag](ctx, pool, getorcreate.Config{Table: table, Key: []string{"name"}})
			if err != nil {
				t.Fatal(err)
			}
			inc := getorcreate.Add("count", 1)
			if _, err := tags.UpdateOrCreate(ctx, Tag{Name: "k", Count: 1}, inc); err != nil {
				t.Fatal(err)
			}
			if _, err := tags.GetOrCreate(ctx, Tag{Name: "warm"}); err != nil {
				t.Fatal(err)
			}
			p.Cut(faultproxy.Rule{Match: []byte("insert "), When: faultproxy.AfterSend})
			p.Cut(faultproxy.Rule{Match: []byte("update "), When: faultproxy.AfterSend})
			res, err := tags.UpdateOrCreate(ctx, Tag{Name: "k", Count: 1}, inc)
			var count int64
			if err := db.SQL.QueryRow("SELECT count FROM " + table + " WHERE name = 'k'").Scan(&count); err != nil {
				t.Fatal(err)
			}
			st := p.Stats()
			t.Logf("mode %s: res.Count=%d attempts=%d err=%v; stored count %d (cut after send: %d)", mode, res.Row.Count, res.Attempts, err, count, st.CutAfter)
			if count > 2 {
				t.Errorf("one UpdateOrCreate(Add 1) raised the count from 1 to %d", count)
			}
		})
	}
}

// A deadline that expires while an autocommit Add waits for a row lock: the
// caller gets context.DeadlineExceeded with Kind nil (not ErrIndeterminate),
// but the server goes on and commits the increment once the lock is free.
func TestRegressionDeadlineDuringAdd(t *testing.T) {
	ctx := context.Background()
	testdb.EachOf(t, []string{"mysql", "postgres"}, func(t *testing.T, db *testdb.DB) {
		table := db.Create(t, testdb.TagsDDL)
		pool := testdb.FreshPool(t, db.DSN)
		tags, err := getorcreate.OpenConfig[Tag](ctx, pool, getorcreate.Config{Table: table, Key: []string{"name"}, Dialect: db.Dialect})
		if err != nil {
			t.Fatal(err)
		}
		inc := getorcreate.Add("count", 1)
		if _, err := tags.UpdateOrCreate(ctx, Tag{Name: "k", Count: 1}, inc); err != nil {
			t.Fatal(err)
		}
		locker, err := db.SQL.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := locker.Exec("UPDATE " + table + " SET note = 'x' WHERE name = 'k'"); err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		_, err = tags.UpdateOrCreate(cctx, Tag{Name: "k", Count: 1}, inc)
		cancel()
		locker.Commit()
		time.Sleep(500 * time.Millisecond)
		var count int64
		if err := db.SQL.QueryRow("SELECT count FROM " + table + " WHERE name = 'k'").Scan(&count); err != nil {
			t.Fatal(err)
		}
		t.Logf("err=%v Kind=%v Indeterminate=%v; count after %d", err, getorcreate.Kind(err), errors.Is(err, getorcreate.ErrIndeterminate), count)
		if count == 2 && !errors.Is(err, getorcreate.ErrIndeterminate) {
			t.Errorf("the increment committed after the call returned %v, whose Kind is %v", err, getorcreate.Kind(err))
		}
	})
}

// A struct whose json tags serve the caller's API: the ledger records the
// outcome with encoding/json, so a replay returns the row without the
// fields json skips.
type apiTag struct {
	ID        int64     `db:"id" json:"id"`
	Name      string    `db:"name" json:"name"`
	Count     int64     `db:"count" json:"-"`
	Note      *string   `db:"note" json:"-"`
	CreatedAt time.Time `db:"created_at" json:"-"`
}

func TestRegressionReplayDropsJSONSkippedFields(t *testing.T) {
	ctx := context.Background()
	testdb.EachOf(t, []string{"sqlite"}, func(t *testing.T, db *testdb.DB) {
		table := db.Create(t, testdb.TagsDDL)
		l, err := getorcreate.CreateLedger(ctx, db.SQL, db.Table(t))
		if err != nil {
			t.Fatal(err)
		}
		tags, err := getorcreate.OpenConfig[apiTag](ctx, db.SQL, getorcreate.Config{Table: table, Key: []string{"name"}, Ledger: l})
		if err != nil {
			t.Fatal(err)
		}
		note := "n"
		first, err := tags.UpdateOrCreateOnce(ctx, "r1", apiTag{Name: "k", Count: 5, Note: &note}, getorcreate.Add("count", 1))
		if err != nil {
			t.Fatal(err)
		}
		again, err := tags.UpdateOrCreateOnce(ctx, "r1", apiTag{Name: "k", Count: 5, Note: &note}, getorcreate.Add("count", 1))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("first  %+v", first.Row)
		t.Logf("replay %+v (Replayed=%v)", again.Row, again.Replayed)
		if again.Row.Count != first.Row.Count || again.Row.Note == nil || !again.Row.CreatedAt.Equal(first.Row.CreatedAt) {
			t.Errorf("the replayed row lost the fields json skips: %+v, want %+v", again.Row, first.Row)
		}
	})
}

// Kind of pgx's error for a statement whose context was already done (sent
// nothing): ErrIndeterminate, because the postgres dialect reads
// SafeToRetry as a lost connection that may have run.
func TestRegressionKindOfCancelledPgx(t *testing.T) {
	dsn := os.Getenv("GETORCREATE_POSTGRES")
	if dsn == "" {
		t.Skip()
	}
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = conn.Exec(ctx, "UPDATE pg_class SET relname = relname WHERE false")
	t.Logf("err=%v Is(Canceled)=%v Kind=%v", err, errors.Is(err, context.Canceled), getorcreate.Kind(err))
	if getorcreate.Kind(err) != nil {
		t.Errorf("a statement never sent (context already done) has Kind %v", getorcreate.Kind(err))
	}
	err = getorcreate.Uncommitted(err)
	t.Logf("Uncommitted: %v Kind=%v retryable=%v", err, getorcreate.Kind(err), getorcreate.IsRetryable(err))
}

// Set/Add/Greatest/Least take a value; given a Ref (which Expr accepts), the
// Ref is dropped from the bound arguments but the statement still has its
// placeholder: an index-out-of-range panic instead of ErrInvalidUpdate.
func TestRegressionSetWithRef(t *testing.T) {
	ctx := context.Background()
	testdb.EachOf(t, []string{"sqlite"}, func(t *testing.T, db *testdb.DB) {
		table := db.Create(t, testdb.TagsDDL)
		tags, err := getorcreate.Open[Tag](ctx, db.SQL, table, "name")
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			if r := recover(); r != nil {
				t.Errorf("panic: %v", r)
			}
		}()
		_, err = tags.UpdateOrCreate(ctx, Tag{Name: "k"}, getorcreate.Add("count", getorcreate.Proposed("count")))
		t.Logf("err=%v", err)
	})
}

// lib/pq (the postgres-pq variant) through the fault proxy: what does a
// connection lost after the Add was sent give?
func TestRegressionLibPQLostAfterSend(t *testing.T) {
	ctx := context.Background()
	db := testdb.Open(t, "postgres")
	via, p := db.ThroughProxy(t)
	pool, err := sql.Open("postgres", via)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	table := db.Create(t, testdb.TagsDDL)
	tags, err := getorcreate.OpenConfig[Tag](ctx, pool, getorcreate.Config{Table: table, Key: []string{"name"}, Dialect: postgres.Dialect})
	if err != nil {
		t.Fatal(err)
	}
	inc := getorcreate.Add("count", 1)
	if _, err := tags.UpdateOrCreate(ctx, Tag{Name: "k", Count: 1}, inc); err != nil {
		t.Fatal(err)
	}
	if _, err := tags.UpdateOrCreate(ctx, Tag{Name: "warm", Count: 1}, inc); err != nil {
		t.Fatal(err)
	}
	p.Cut(faultproxy.Rule{Match: []byte("insert "), When: faultproxy.AfterSend})
	p.Cut(faultproxy.Rule{Match: []byte("update "), When: faultproxy.AfterSend})
	res, err := tags.UpdateOrCreate(ctx, Tag{Name: "k", Count: 1}, inc)
	var count int64
	if err := db.SQL.QueryRow("SELECT count FROM " + table + " WHERE name = 'k'").Scan(&count); err != nil {
		t.Fatal(err)
	}
	t.Logf("res.Count=%d attempts=%d err=%v Indeterminate=%v; stored %d; cut after %d", res.Row.Count, res.Attempts, err, errors.Is(err, getorcreate.ErrIndeterminate), count, p.Stats().CutAfter)
	if count > 2 {
		t.Errorf("one Add raised the count from 1 to %d", count)
	}
}

func TestRegressionOnceBinaryOutcome(t *testing.T) {
	ctx := context.Background()
	testdb.EachOf(t, []string{"postgres", "mysql", "sqlite"}, func(t *testing.T, db *testdb.DB) {
		l, err := getorcreate.CreateLedger(ctx, db.SQL, db.Table(t))
		if err != nil {
			t.Fatal(err)
		}
		out := []byte{0x1f, 0x8b, 0x00, 0xff, 0xfe} // e.g. a gzip'd answer
		_, _, err = l.Once(ctx, "bin-1", "fp", func(tx *sql.Tx) ([]byte, error) { return out, nil })
		if err != nil {
			t.Errorf("Once with a binary outcome: %v", err)
			return
		}
		got, replayed, err := l.Once(ctx, "bin-1", "fp", func(tx *sql.Tx) ([]byte, error) { return out, nil })
		if err != nil || !replayed || string(got) != string(out) {
			t.Errorf("replay: %x %v %v, want %x", got, replayed, err, out)
		}
	})
}
