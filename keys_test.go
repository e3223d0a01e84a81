package getorcreate_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/getorcreate/getorcreate"
	"github.com/getorcreate/getorcreate/internal/testdb"
)

// wantKeyAltered checks that err is the typed, non-retryable refusal of a
// key, naming the column and the value.
func wantKeyAltered(t *testing.T, err error, col, value string, also ...error) {
	t.Helper()
	var e *getorcreate.Error
	if !errors.Is(err, getorcreate.ErrKeyAltered) || !errors.As(err, &e) || getorcreate.IsRetryable(err) {
		t.Fatalf("want a non-retryable *Error matching ErrKeyAltered, got %v", err)
	}
	for _, k := range also {
		if !errors.Is(err, k) {
			t.Fatalf("%v does not match %v", err, k)
		}
	}
	if !strings.Contains(err.Error(), `"`+col+`"`) || !strings.Contains(err.Error(), value) {
		t.Fatalf("%v does not name column %q and value %s", err, col, value)
	}
}

// stampedeErrs runs op on n goroutines released at once and returns the
// errors they got.
func stampedeErrs(n int, op func() error) []error {
	errs := make([]error, n)
	outs := stampede(n, "", func(string) outcome { return outcome{err: op()} })
	for i, o := range outs {
		errs[i] = o.err
	}
	return errs
}

// wantOneCreator checks a stampede's outcomes: no error, one row, one
// caller that created it.
func wantOneCreator(t *testing.T, outs []outcome) {
	t.Helper()
	created := 0
	for _, o := range outs {
		if o.err != nil || o.id != outs[0].id {
			t.Fatalf("stampede: %+v", o)
		}
		created += b2i(o.created)
	}
	if created != 1 {
		t.Fatalf("stampede: created %d times", created)
	}
}

// NamedRow is a row of a table keyed by name alone.
type NamedRow struct {
	ID   int64  `db:"id"`
	Name string `db:"name"`
}

type CodeAny struct {
	ID   int64 `db:"id"`
	Code any   `db:"code"`
}

// TestKeyTypeRefusedAtOpen: a key field whose Go type the column would
// convert is refused by Open, naming the field, both types and the fix.
func TestKeyTypeRefusedAtOpen(t *testing.T) {
	testdb.EachOf(t, testdb.Kinds(true), func(t *testing.T, db *testdb.DB) {
		id := map[string]string{"sqlite": "INTEGER PRIMARY KEY", "postgres": "BIGSERIAL PRIMARY KEY", "mysql": "BIGINT AUTO_INCREMENT PRIMARY KEY"}[db.Kind]
		txt := map[string]string{"sqlite": "TEXT", "postgres": "TEXT", "mysql": "VARCHAR(32)"}[db.Kind]
		table := db.Create(t, map[string]string{"": "CREATE TABLE %s (id " + id + ", code INT NOT NULL UNIQUE, name " + txt + " UNIQUE)"})
		type StringCode struct {
			ID   int64  `db:"id"`
			Code string `db:"code"`
		}
		_, err := open[StringCode](t, db, table, "code")
		wantSchemaError(t, err, getorcreate.ErrKeyAltered, "Code", "string", `"code"`, "int64")
		type IntName struct {
			ID   int64 `db:"id"`
			Code int64 `db:"code"`
			Name int64 `db:"name"`
		}
		_, err = open[IntName](t, db, table, "name")
		wantSchemaError(t, err, getorcreate.ErrKeyAltered, "Name", `"name"`, "as numbers", "make field Name string")
		type FloatCode struct {
			ID   int64   `db:"id"`
			Code float64 `db:"code"`
		}
		_, err = open[FloatCode](t, db, table, "code")
		wantSchemaError(t, err, getorcreate.ErrKeyAltered, "Code", "round")
		type BytesName struct {
			ID   int64  `db:"id"`
			Code int64  `db:"code"`
			Name []byte `db:"name"`
		}
		_, err = open[BytesName](t, db, table, "name")
		wantSchemaError(t, err, getorcreate.ErrKeyAltered, "Name", "collation")
		if _, err := open[IntName](t, db, table, "code"); err != nil {
			t.Fatalf("an integer key on an integer column: %v", err)
		}
		if _, err := open[CodeAny](t, db, table, "code"); err != nil {
			t.Fatalf("an any key is checked per call, not refused: %v", err)
		}
	})
}

// TestCoercedKey: the case, code INT NOT NULL UNIQUE with an any
// field. "12abc" after 12 exists returned row 12 on MariaDB; "12.9"
// created 13 and then looped into ErrLostRace. Now each is refused before
// anything is sent, sequentially and under a stampede, and nothing is
// written.
func TestCoercedKey(t *testing.T) {
	testdb.EachOf(t, testdb.Kinds(true), func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		id := map[string]string{"sqlite": "INTEGER PRIMARY KEY", "postgres": "BIGSERIAL PRIMARY KEY", "mysql": "BIGINT AUTO_INCREMENT PRIMARY KEY"}[db.Kind]
		table := db.Create(t, map[string]string{"": "CREATE TABLE %s (id " + id + ", code INT NOT NULL UNIQUE)"})
		tb, err := open[CodeAny](t, db, table, "code")
		if err != nil {
			t.Fatal(err)
		}
		r, err := tb.GetOrCreate(ctx, CodeAny{Code: 12})
		if err != nil || !r.Created {
			t.Fatalf("12: %+v %v", r, err)
		}
		for _, v := range []any{"12abc", "12.9", " 12 ", "12", 12.9, 12.0} {
			start := time.Now()
			_, err := tb.GetOrCreate(ctx, CodeAny{Code: v})
			wantKeyAltered(t, err, "code", fmt.Sprint(v))
			if d := time.Since(start); d > time.Second {
				t.Fatalf("%v: refused after %v", v, d)
			}
			_, err = tb.UpdateOrCreate(ctx, CodeAny{Code: v}, getorcreate.SetProposed("code"))
			if !errors.Is(err, getorcreate.ErrKeyAltered) && !errors.Is(err, getorcreate.ErrInvalidUpdate) {
				t.Fatalf("update %v: %v", v, err)
			}
			_, err = tb.GetOrCreateMany(ctx, []CodeAny{{Code: 13}, {Code: v}})
			var e *getorcreate.Error
			if !errors.Is(err, getorcreate.ErrKeyAltered) || !errors.As(err, &e) || e.Input != 1 {
				t.Fatalf("batch with %v: %v", v, err)
			}
			for _, err := range stampedeErrs(32, func() error { _, err := tb.GetOrCreate(ctx, CodeAny{Code: v}); return err }) {
				wantKeyAltered(t, err, "code", fmt.Sprint(v))
			}
		}
		var n int
		var code int64
		if err := db.SQL.QueryRow("SELECT COUNT(*), MAX(code) FROM "+table).Scan(&n, &code); err != nil || n != 1 || code != 12 {
			t.Fatalf("stored %d rows, max code %d (%v); want only 12", n, code, err)
		}
		r, err = tb.GetOrCreate(ctx, CodeAny{Code: int64(12)})
		if err != nil || r.Created || r.Row.ID != 1 {
			t.Fatalf("12 again: %+v %v", r, err)
		}
	})
}

// TestTooLongKey: the case, name varchar(32) and a 40-character
// name. On MariaDB without strict mode it was stored cut to 32 and the
// next call looped for 3 s into ErrLostRace; a second long name with the
// same prefix returned the first one's row. Now it is refused, naming the
// column and the value, on a strict connection and on one whose session
// was made non-strict after Open, sequentially and under a stampede.
func TestTooLongKey(t *testing.T) {
	testdb.EachOf(t, []string{"postgres", "postgres-pgx", "mysql", "mysql-noreturning"}, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		table := db.Create(t, map[string]string{
			"postgres": `CREATE TABLE %s (id BIGSERIAL PRIMARY KEY, name VARCHAR(32) NOT NULL UNIQUE)`,
			"mysql":    `CREATE TABLE %s (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(32) NOT NULL UNIQUE)`,
		})
		tb, err := open[NamedRow](t, db, table, "name")
		if err != nil {
			t.Fatal(err)
		}
		long1 := strings.Repeat("x", 32) + "-first-1"
		long2 := strings.Repeat("x", 32) + "-second2"
		for _, name := range []string{long1, long2} {
			_, err := tb.GetOrCreate(ctx, NamedRow{Name: name})
			wantKeyAltered(t, err, "name", "xxxx", getorcreate.ErrValueTooLong)
			_, err = tb.UpdateOrCreate(ctx, NamedRow{Name: name}, getorcreate.SetProposed("name"))
			if !errors.Is(err, getorcreate.ErrKeyAltered) && !errors.Is(err, getorcreate.ErrInvalidUpdate) {
				t.Fatal(err)
			}
		}
		// 32 characters, multi-byte: fits.
		if r, err := tb.GetOrCreate(ctx, NamedRow{Name: strings.Repeat("é", 32)}); err != nil || !r.Created {
			t.Fatalf("32 characters: %+v %v", r, err)
		}
		for _, err := range stampedeErrs(32, func() error { _, err := tb.GetOrCreate(ctx, NamedRow{Name: long1}); return err }) {
			wantKeyAltered(t, err, "name", "xxxx", getorcreate.ErrValueTooLong)
		}
		if db.Kind == "mysql" {
			// A session made non-strict after Open (Open refuses a pool
			// that is, TestNonStrictModeRefused): the check in Go still
			// holds, on every connection of a stampede.
			errs := stampedeErrs(32, func() error {
				conn, err := db.SQL.Conn(ctx)
				if err != nil {
					return err
				}
				defer conn.Close()
				defer conn.ExecContext(ctx, "SET SESSION sql_mode = @@GLOBAL.sql_mode")
				if _, err := conn.ExecContext(ctx, "SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION'"); err != nil {
					return err
				}
				_, err = tb.GetOrCreateTx(ctx, conn, NamedRow{Name: long2})
				return err
			})
			for _, err := range errs {
				wantKeyAltered(t, err, "name", "xxxx")
			}
		}
		if n := db.Count(t, table); n != 1 {
			t.Fatalf("%d rows, want only the 32-character one", n)
		}
	})
}

// mysqlDSN returns the MariaDB DSN with extra query parameters.
func mysqlDSN(t *testing.T, db *testdb.DB, params string) string {
	t.Helper()
	u, err := url.Parse(db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	if u.RawQuery != "" {
		u.RawQuery += "&"
	}
	u.RawQuery += params
	return u.String()
}

// TestNonStrictModeRefused: Open refuses a MariaDB pool whose sql_mode is
// not strict, with the DSN parameter that fixes it; the fix, applied,
// opens the table, and the long key is refused as on any strict pool.
func TestNonStrictModeRefused(t *testing.T) {
	testdb.EachOf(t, []string{"mysql", "mysql-noreturning"}, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		table := db.Create(t, map[string]string{"": `CREATE TABLE %s (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(32) NOT NULL UNIQUE)`})
		lax := testdb.FreshPool(t, mysqlDSN(t, db, "sql_mode=%27NO_ENGINE_SUBSTITUTION%27"))
		_, err := getorcreate.OpenConfig[NamedRow](ctx, lax, getorcreate.Config{Table: table, Key: []string{"name"}, Dialect: db.Dialect})
		wantSchemaError(t, err, getorcreate.ErrKeyAltered, "sql_mode", "NO_ENGINE_SUBSTITUTION", "not strict")
		var se *getorcreate.SchemaError
		errors.As(err, &se)
		_, mode, ok := strings.Cut(se.Fix, "sql_mode='")
		mode, _, _ = strings.Cut(mode, "'")
		if !ok || !strings.HasPrefix(mode, "STRICT_TRANS_TABLES,") {
			t.Fatalf("fix %q gives no sql_mode", se.Fix)
		}
		fixed := testdb.FreshPool(t, mysqlDSN(t, db, "sql_mode="+url.QueryEscape("'"+mode+"'")))
		tb, err := getorcreate.OpenConfig[NamedRow](ctx, fixed, getorcreate.Config{Table: table, Key: []string{"name"}, Dialect: db.Dialect})
		if err != nil {
			t.Fatalf("after the fix %q: %v", se.Fix, err)
		}
		_, err = tb.GetOrCreate(ctx, NamedRow{Name: strings.Repeat("y", 40)})
		wantKeyAltered(t, err, "name", "yyyy", getorcreate.ErrValueTooLong)
		if n := db.Count(t, table); n != 0 {
			t.Fatalf("%d rows", n)
		}
	})
}

// TestPaddedKeys: keys a fixed-length column would pad or trim are
// refused; keys of the column's length pass and come back as given.
func TestPaddedKeys(t *testing.T) {
	testdb.EachOf(t, []string{"postgres", "mysql"}, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		type Str struct {
			ID int64  `db:"id"`
			K  string `db:"k"`
		}
		type Bin struct {
			ID int64  `db:"id"`
			K  []byte `db:"k"`
		}
		cases := map[string][]struct {
			ddl       string
			bin       bool
			bad, good string
		}{
			"postgres": {
				{ddl: "CHAR(3)", bad: "ab", good: "abc"},
				{ddl: "VARCHAR(3)", bad: "abc  ", good: "ab "}, // PostgreSQL cuts excess spaces silently
			},
			"mysql": {
				{ddl: "CHAR(3)", bad: "ab ", good: "ab"},
				{ddl: "BINARY(4)", bin: true, bad: "ab", good: "abcd"},
				{ddl: "VARBINARY(4)", bin: true, bad: "abcde", good: "ab"},
			},
		}[db.Kind]
		idt := map[string]string{"postgres": "BIGSERIAL PRIMARY KEY", "mysql": "BIGINT AUTO_INCREMENT PRIMARY KEY"}[db.Kind]
		for _, c := range cases {
			table := db.Create(t, map[string]string{"": "CREATE TABLE %s (id " + idt + ", k " + c.ddl + " NOT NULL UNIQUE)"})
			var get func(k string) (string, bool, error)
			if c.bin {
				tb, err := open[Bin](t, db, table, "k")
				if err != nil {
					t.Fatal(err)
				}
				get = func(k string) (string, bool, error) {
					r, err := tb.GetOrCreate(ctx, Bin{K: []byte(k)})
					return string(r.Row.K), r.Created, err
				}
			} else {
				tb, err := open[Str](t, db, table, "k")
				if err != nil {
					t.Fatal(err)
				}
				get = func(k string) (string, bool, error) {
					r, err := tb.GetOrCreate(ctx, Str{K: k})
					return r.Row.K, r.Created, err
				}
			}
			_, _, err := get(c.bad)
			if !errors.Is(err, getorcreate.ErrKeyAltered) || !strings.Contains(err.Error(), `"k"`) {
				t.Fatalf("%s, key %q: %v", c.ddl, c.bad, err)
			}
			for i, wantCreated := range []bool{true, false} {
				got, created, err := get(c.good)
				if err != nil || got != c.good || created != wantCreated {
					t.Fatalf("%s, key %q, call %d: got %q created %v, %v", c.ddl, c.good, i, got, created, err)
				}
			}
			if n := db.Count(t, table); n != 1 {
				t.Fatalf("%s: %d rows", c.ddl, n)
			}
		}
	})
}

// TestKeyOutOfRange: an integer the column cannot hold is refused (it
// would be clamped to the column's limit without strict mode).
func TestKeyOutOfRange(t *testing.T) {
	testdb.EachOf(t, []string{"postgres", "mysql"}, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		table := db.Create(t, map[string]string{
			"postgres": `CREATE TABLE %s (id BIGSERIAL PRIMARY KEY, a INT NOT NULL, b SMALLINT NOT NULL, UNIQUE (a, b))`,
			"mysql":    `CREATE TABLE %s (id BIGINT AUTO_INCREMENT PRIMARY KEY, a INT NOT NULL, b TINYINT UNSIGNED NOT NULL, UNIQUE (a, b))`,
		})
		type Row struct {
			ID int64  `db:"id"`
			A  int64  `db:"a"`
			B  uint16 `db:"b"`
		}
		tb, err := open[Row](t, db, table, "a", "b")
		if err != nil {
			t.Fatal(err)
		}
		maxB := map[string]uint16{"postgres": 32767, "mysql": 255}[db.Kind]
		for _, r := range []Row{{A: 1 << 31, B: 1}, {A: -1<<31 - 1, B: 1}, {A: 1, B: maxB + 1}} {
			_, err := tb.GetOrCreate(ctx, r)
			if !errors.Is(err, getorcreate.ErrKeyAltered) || !errors.Is(err, getorcreate.ErrInvalidValue) {
				t.Fatalf("%+v: %v", r, err)
			}
		}
		for _, r := range []Row{{A: 1<<31 - 1, B: maxB}, {A: -1 << 31, B: 0}} {
			if res, err := tb.GetOrCreate(ctx, r); err != nil || res.Row.A != r.A || res.Row.B != r.B {
				t.Fatalf("%+v: %+v %v", r, res, err)
			}
		}
		if n := db.Count(t, table); n != 2 {
			t.Fatalf("%d rows", n)
		}
	})
}

// TestKeyRewrittenOnTheWayIn: a trigger that rewrites the key is a change
// no check can see before the call. The row it stored comes back as
// stored; the next call for the original key finds nothing, collides, and
// ends with ErrLostRace, within a few loops instead of the whole retry
// budget (the issue measured about 3 s for such a loop).
func TestKeyRewrittenOnTheWayIn(t *testing.T) {
	testdb.EachOf(t, []string{"postgres", "mysql"}, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		table := db.Create(t, map[string]string{
			"postgres": `CREATE TABLE %s (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE)`,
			"mysql":    `CREATE TABLE %s (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(32) COLLATE utf8mb4_bin NOT NULL UNIQUE)`,
		})
		if db.Kind == "postgres" {
			db.Exec(t, "CREATE FUNCTION "+table+"_lower() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.name := lower(NEW.name); RETURN NEW; END $$")
			db.Exec(t, "CREATE TRIGGER l BEFORE INSERT ON "+table+" FOR EACH ROW EXECUTE FUNCTION "+table+"_lower()")
			t.Cleanup(func() { db.SQL.Exec("DROP FUNCTION IF EXISTS " + table + "_lower() CASCADE") })
		} else {
			db.Exec(t, "CREATE TRIGGER "+table+"_lower BEFORE INSERT ON "+table+" FOR EACH ROW SET NEW.name = LOWER(NEW.name)")
		}
		tb, err := open[NamedRow](t, db, table, "name")
		if err != nil {
			t.Fatal(err)
		}
		r, err := tb.GetOrCreate(ctx, NamedRow{Name: "Go"})
		if err != nil || !r.Created || r.Row.Name != "go" {
			t.Fatalf("first call: %+v %v", r, err)
		}
		start := time.Now()
		r, err = tb.GetOrCreate(ctx, NamedRow{Name: "Go"})
		if !errors.Is(err, getorcreate.ErrLostRace) || r.Attempts != 3 {
			t.Fatalf("second call: %+v %v; want ErrLostRace after 3 attempts", r, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("ErrLostRace after %v", d)
		}
		if n := db.Count(t, table); n != 1 {
			t.Fatalf("%d rows", n)
		}
	})
}

// TestSignalledSerializationFailure: a trigger that raises SQLSTATE 40001
// (MariaDB: error 1644 with that state) is a serialization failure
// through the library's own calls: retried, and matched by
// ErrSerialization when it persists.
func TestSignalledSerializationFailure(t *testing.T) {
	testdb.EachOf(t, []string{"mysql", "mysql-noreturning", "postgres"}, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		tags, table := openTags(t, db)
		// The counter survives the statement's rollback: MyISAM is not
		// transactional; on PostgreSQL a sequence is not either.
		counter := db.Create(t, map[string]string{
			"mysql":    "CREATE TABLE %s (n INT NOT NULL) ENGINE=MyISAM;\nINSERT INTO %s VALUES (0)",
			"postgres": "CREATE SEQUENCE %s",
		})
		if db.Kind == "postgres" {
			db.SQL.Exec("DROP TABLE IF EXISTS " + counter) // Table's cleanup drops a table; this is a sequence
			t.Cleanup(func() { db.SQL.Exec("DROP SEQUENCE IF EXISTS " + counter) })
			db.Exec(t, "CREATE FUNCTION "+table+"_retry() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.name LIKE 'always%' OR nextval('"+counter+"') <= 2 THEN RAISE EXCEPTION 'retry me' USING ERRCODE = '40001'; END IF; RETURN NEW; END $$")
			db.Exec(t, "CREATE TRIGGER r BEFORE INSERT ON "+table+" FOR EACH ROW EXECUTE FUNCTION "+table+"_retry()")
			t.Cleanup(func() { db.SQL.Exec("DROP FUNCTION IF EXISTS " + table + "_retry() CASCADE") })
		} else {
			db.Exec(t, "CREATE TRIGGER "+table+"_retry BEFORE INSERT ON "+table+" FOR EACH ROW BEGIN UPDATE "+counter+" SET n = n + 1; IF NEW.name LIKE 'always%' OR (SELECT n FROM "+counter+") <= 2 THEN SIGNAL SQLSTATE '40001' SET MESSAGE_TEXT = 'retry me'; END IF; END")
		}
		r, err := tags.GetOrCreate(ctx, Tag{Name: "twice"})
		if err != nil || !r.Created || r.Attempts != 3 {
			t.Fatalf("want created on the third attempt, got %+v %v", r, err)
		}
		policy, err := testdb.OpenTable[Tag](db, getorcreate.Config{Table: table, Key: []string{"name"}, Retry: getorcreate.RetryPolicy{MaxRetries: 2}})
		if err != nil {
			t.Fatal(err)
		}
		r, err = policy.GetOrCreate(ctx, Tag{Name: "always"})
		if !errors.Is(err, getorcreate.ErrSerialization) || !getorcreate.IsRetryable(err) || r.Attempts != 3 {
			t.Fatalf("want ErrSerialization after 3 attempts, got %+v %v", r, err)
		}
		tx, err := db.SQL.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		_, err = tags.UpdateOrCreateTx(ctx, tx, Tag{Name: "always-tx"}, getorcreate.Add("count", 1))
		if !errors.Is(err, getorcreate.ErrSerialization) {
			t.Fatalf("in the caller's transaction: %v", err)
		}
		if n := db.Count(t, table); n != 1 {
			t.Fatalf("%d rows", n)
		}
	})
}
