package getorcreate_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"

	"github.com/getorcreate/getorcreate"
	"github.com/getorcreate/getorcreate/dialect"
	"github.com/getorcreate/getorcreate/internal/testdb"
)

// TestDialectFoundThroughWrappers: behind a wrapping driver, or through
// lib/pq, the driver's type names no dialect, and Open finds it by asking
// the server. (The whole conformance suite runs on these variants too.)
func TestDialectFoundThroughWrappers(t *testing.T) {
	testdb.EachOf(t, []string{"sqlite-wrapped", "postgres-wrapped", "mysql-wrapped", "postgres-pq"}, func(t *testing.T, db *testdb.DB) {
		if _, ok := dialect.ForDriver(db.SQL.Driver()); ok {
			t.Fatalf("driver %T is known by its type: the test would prove nothing", db.SQL.Driver())
		}
		tags, _ := openTags(t, db)
		if tags.Dialect() != db.Kind {
			t.Fatalf("found dialect %q, want %q", tags.Dialect(), db.Kind)
		}
	})
}

// TestDriverErrorsClassified: an error straight from the driver, from a
// statement of the caller's own, has its kind: a serialization failure
// raised by the server is retryable through pgx, lib/pq and go-sql-driver
// alike (on MariaDB it arrives as error 1644 with SQLSTATE 40001).
func TestDriverErrorsClassified(t *testing.T) {
	raise := map[string]string{
		"postgres": `DO $$ BEGIN RAISE EXCEPTION 'test' USING ERRCODE = '40001'; END $$`,
		"mysql":    `BEGIN NOT ATOMIC SIGNAL SQLSTATE '40001' SET MESSAGE_TEXT = 'test'; END`,
	}
	testdb.EachOf(t, []string{"postgres", "postgres-pq", "postgres-wrapped", "mysql", "mysql-wrapped"}, func(t *testing.T, db *testdb.DB) {
		_, err := db.SQL.Exec(raise[db.Kind])
		if err == nil {
			t.Fatal("the statement did not fail")
		}
		if !getorcreate.IsRetryable(err) || getorcreate.Kind(err) != getorcreate.ErrSerialization {
			t.Fatalf("%T %v: IsRetryable %v, Kind %v; want a retryable serialization failure", err, err, getorcreate.IsRetryable(err), getorcreate.Kind(err))
		}
		// RunTx retries it, as it would a real one, and then gives up.
		tries := 0
		err = getorcreate.RunTxPolicy(context.Background(), db.SQL, nil, getorcreate.RetryPolicy{MaxRetries: 2}, func(tx *sql.Tx) error {
			tries++
			_, err := tx.Exec(raise[db.Kind])
			return err
		})
		if tries != 3 || !getorcreate.IsRetryable(err) {
			t.Fatalf("RunTx ran %d times and returned %v; want 3 tries", tries, err)
		}
	})
}

// TestDialectNotFound: when the server cannot be asked, Open says so and
// names the driver.
func TestDialectNotFound(t *testing.T) {
	db, err := sql.Open(testdb.WrapDriver("pgx"), "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, err = getorcreate.Open[Tag](context.Background(), db, "tags", "name")
	if err == nil || !strings.Contains(err.Error(), "finding the dialect of driver") || errors.Is(err, getorcreate.ErrNoTable) {
		t.Fatalf("Open on an unreachable wrapped driver: %v", err)
	}
}
