package getorcreate_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // America/New_York without the system's zoneinfo

	"github.com/getorcreate/getorcreate"
	"github.com/getorcreate/getorcreate/internal/testdb"
)

type TimeRow struct {
	ID int64     `db:"id"`
	K  time.Time `db:"k"`
	V  time.Time `db:"v"`
}

// timeDDL has a time key and a time value, in the two date-time types of
// each database, either way round.
var timeDDL = map[string][]string{
	"postgres": {
		`CREATE TABLE %s (id BIGSERIAL PRIMARY KEY, k TIMESTAMPTZ NOT NULL UNIQUE, v TIMESTAMP NOT NULL)`,
		`CREATE TABLE %s (id BIGSERIAL PRIMARY KEY, k TIMESTAMP NOT NULL UNIQUE, v TIMESTAMPTZ NOT NULL)`,
	},
	"mysql": {
		`CREATE TABLE %s (id BIGINT AUTO_INCREMENT PRIMARY KEY, k DATETIME(6) NOT NULL UNIQUE, v TIMESTAMP(6) NOT NULL)`,
		`CREATE TABLE %s (id BIGINT AUTO_INCREMENT PRIMARY KEY, k TIMESTAMP(6) NOT NULL UNIQUE, v DATETIME(6) NOT NULL)`,
	},
	"sqlite": {
		`CREATE TABLE %s (id INTEGER PRIMARY KEY, k DATETIME NOT NULL UNIQUE, v TIMESTAMP NOT NULL)`,
		`CREATE TABLE %s (id INTEGER PRIMARY KEY, k TIMESTAMP NOT NULL UNIQUE, v DATETIME NOT NULL)`,
	},
}

// zonedTimes are one instant each in UTC, a named zone and a zone with
// only an offset (what time.Parse returns for "+05:30").
func zonedTimes(t *testing.T) []time.Time {
	t.Helper()
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	offset, err := time.Parse(time.RFC3339, "2024-03-10T12:34:56.123456+05:30")
	if err != nil {
		t.Fatal(err)
	}
	return []time.Time{
		time.Date(2024, 1, 2, 3, 4, 5, 678901000, time.UTC),
		time.Date(2024, 7, 1, 9, 30, 0, 250000000, ny), // summer time
		offset,
	}
}

// roundTrip checks that time keys and values come back as the instants
// they were, that the same instant in another zone is the same key, and
// that a stampede on a new time key creates it once.
func roundTrip(t *testing.T, db *sql.DB, dialectOf func(*getorcreate.Config), table string, count func() int) {
	t.Helper()
	ctx := context.Background()
	cfg := getorcreate.Config{Table: table, Key: []string{"k"}}
	dialectOf(&cfg)
	tb, err := getorcreate.OpenConfig[TimeRow](ctx, db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := zonedTimes(t)
	ids := map[int]int64{}
	for i, tm := range ts {
		for call, wantCreated := range []bool{true, false} {
			r, err := tb.GetOrCreate(ctx, TimeRow{K: tm, V: tm})
			if err != nil || r.Created != wantCreated || !r.Row.K.Equal(tm) || !r.Row.V.Equal(tm) {
				t.Fatalf("%v, call %d: %+v %v", tm, call, r, err)
			}
			ids[i] = r.Row.ID
		}
		// The same instant written in another zone is the same key.
		for _, loc := range []*time.Location{time.UTC, time.FixedZone("", -7*3600), time.FixedZone("X", 3600)} {
			r, err := tb.GetOrCreate(ctx, TimeRow{K: tm.In(loc), V: tm})
			if err != nil || r.Created || r.Row.ID != ids[i] {
				t.Fatalf("%v in %v: %+v %v", tm, loc, r, err)
			}
		}
		r, err := tb.UpdateOrCreate(ctx, TimeRow{K: tm.In(time.FixedZone("", 3*3600)), V: tm.Add(time.Hour)}, getorcreate.SetProposed("v"))
		if err != nil || r.Created || r.Row.ID != ids[i] || !r.Row.V.Equal(tm.Add(time.Hour)) {
			t.Fatalf("update %v: %+v %v", tm, r, err)
		}
	}
	in := make([]TimeRow, 0, 2*len(ts))
	for _, tm := range ts {
		in = append(in, TimeRow{K: tm.In(time.FixedZone("", 2*3600)), V: tm}, TimeRow{K: tm.Add(time.Minute), V: tm})
	}
	res, err := tb.GetOrCreateMany(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	for j, r := range res {
		if r.Created != (j%2 == 1) || !r.Row.K.Equal(in[j].K) || (j%2 == 0 && r.Row.ID != ids[j/2]) {
			t.Fatalf("batch result %d: %+v for %+v", j, r, in[j])
		}
	}
	key := ts[2].Add(24 * time.Hour)
	wantOneCreator(t, stampede(32, "", func(string) outcome {
		r, err := tb.GetOrCreate(ctx, TimeRow{K: key, V: key})
		return outcome{r.Row.ID, r.Created, err}
	}))
	if n := count(); n != 2*len(ts)+1 {
		t.Fatalf("%d rows, want %d", n, 2*len(ts)+1)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestTimeRoundTrip: time.Time keys and values in UTC, a named zone and a
// fixed offset round-trip on every database, with the project's DSNs and
// through every driver variant.
func TestTimeRoundTrip(t *testing.T) {
	testdb.EachOf(t, testdb.Kinds(true), func(t *testing.T, db *testdb.DB) {
		for i, ddl := range timeDDL[db.Kind] {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				table := db.Create(t, map[string]string{"": ddl})
				if db.Pool != nil {
					t.Skip("pgxv5 has its own Open; the postgres variants cover the dialect")
				}
				roundTrip(t, db.SQL, func(c *getorcreate.Config) { c.Dialect = db.Dialect }, table, func() int { return db.Count(t, table) })
			})
		}
	})
}

// TestTimePlainDSN: with a plain sql.Open, SQLite round-trips times too
// (on main a time with only an offset was written as text it could not
// read back, and every later call for that key failed), and MariaDB,
// which cannot without parseTime, is refused by Open before anything is
// written, with the DSN parameter that fixes it.
func TestTimePlainDSN(t *testing.T) {
	noDialect := func(*getorcreate.Config) {}
	t.Run("sqlite", func(t *testing.T) {
		for i, ddl := range timeDDL["sqlite"] {
			for _, params := range []string{"", "?_time_format=sqlite", "?_time_format=string_no_monotonic"} {
				path := filepath.Join(t.TempDir(), "plain.db")
				db, err := sql.Open("sqlite", path+params)
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
				table := fmt.Sprintf("plain%d", i)
				if _, err := db.Exec(strings.ReplaceAll(ddl, "%s", table)); err != nil {
					t.Fatal(err)
				}
				roundTrip(t, db, noDialect, table, func() (n int) { db.QueryRow("SELECT COUNT(*) FROM " + table).Scan(&n); return n })
			}
		}
	})
	t.Run("sqlite-seconds", func(t *testing.T) {
		// _time_format=datetime keeps whole seconds: a key with a fraction
		// would be cut, so it is refused; whole seconds round-trip.
		db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "s.db")+"?_time_format=datetime")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		db.Exec(`CREATE TABLE s (id INTEGER PRIMARY KEY, k DATETIME NOT NULL UNIQUE, v DATETIME NOT NULL)`)
		tb, err := getorcreate.Open[TimeRow](context.Background(), db, "s", "k")
		if err != nil {
			t.Fatal(err)
		}
		tm := zonedTimes(t)[2]
		_, err = tb.GetOrCreate(context.Background(), TimeRow{K: tm, V: tm})
		if !errors.Is(err, getorcreate.ErrKeyAltered) || !strings.Contains(err.Error(), "0 fractional digits") {
			t.Fatalf("a fraction of a second in a key the format drops: %v", err)
		}
		tm = tm.Truncate(time.Second)
		for _, want := range []bool{true, false} {
			r, err := tb.GetOrCreate(context.Background(), TimeRow{K: tm, V: tm})
			if err != nil || r.Created != want || !r.Row.K.Equal(tm) {
				t.Fatalf("%+v %v", r, err)
			}
		}
	})
	t.Run("sqlite-text-column", func(t *testing.T) {
		db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "t.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		db.Exec(`CREATE TABLE s (id INTEGER PRIMARY KEY, k TEXT NOT NULL UNIQUE, v TEXT NOT NULL)`)
		_, err = getorcreate.Open[TimeRow](context.Background(), db, "s", "k")
		wantSchemaError(t, err, getorcreate.ErrKeyAltered, "time.Time", "TEXT")
		type ValueOnly struct {
			ID int64     `db:"id"`
			K  string    `db:"k"`
			V  time.Time `db:"v"`
		}
		_, err = getorcreate.Open[ValueOnly](context.Background(), db, "s", "k")
		wantSchemaError(t, err, getorcreate.ErrMapping, "time.Time", "DATETIME")
	})
	testdb.EachOf(t, []string{"mysql"}, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		host := strings.TrimPrefix(strings.SplitN(strings.TrimPrefix(db.DSN, "mysql://"), "/", 2)[0], "root@")
		plainDSN := func(params string) *sql.DB {
			db, err := sql.Open("mysql", "root@tcp("+host+")/test"+params)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return db
		}
		for i, ddl := range timeDDL["mysql"] {
			table := db.Create(t, map[string]string{"": ddl})
			_, err := getorcreate.Open[TimeRow](ctx, plainDSN(""), table, "k")
			wantSchemaError(t, err, getorcreate.ErrMapping, "time.Time", "parseTime=true")
			if n := db.Count(t, table); n != 0 {
				t.Fatalf("%d rows", n)
			}
			roundTrip(t, plainDSN("?parseTime=true"), noDialect, table, func() int { return db.Count(t, table) })
			// A session time zone the driver's loc does not share would
			// store each TIMESTAMP as another instant: refused.
			shifted := plainDSN("?parseTime=true&time_zone=%27%2B01%3A00%27")
			_, err = getorcreate.Open[TimeRow](ctx, shifted, table, "k")
			wantSchemaError(t, err, getorcreate.ErrMapping, "TIMESTAMP", "time_zone")
			if i == 0 {
				// A table whose times are all DATETIME does not depend on
				// the session's time zone.
				dt := db.Create(t, map[string]string{"": `CREATE TABLE %s (id BIGINT AUTO_INCREMENT PRIMARY KEY, k DATETIME(6) NOT NULL UNIQUE, v DATETIME(6) NOT NULL)`})
				roundTrip(t, shifted, noDialect, dt, func() int { return db.Count(t, dt) })
			}
		}
	})
}

// TestTimeKeyPrecision: a time key finer than its column is refused, not
// rounded into a key no lookup finds (MariaDB DATETIME keeps whole
// seconds; PostgreSQL microseconds).
func TestTimeKeyPrecision(t *testing.T) {
	testdb.EachOf(t, []string{"postgres", "mysql"}, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		table := db.Create(t, map[string]string{
			"postgres": `CREATE TABLE %s (id BIGSERIAL PRIMARY KEY, k TIMESTAMPTZ NOT NULL UNIQUE, v TIMESTAMPTZ NOT NULL, d DATE NOT NULL DEFAULT '2000-01-01')`,
			"mysql":    `CREATE TABLE %s (id BIGINT AUTO_INCREMENT PRIMARY KEY, k DATETIME NOT NULL UNIQUE, v DATETIME NOT NULL, d DATE NOT NULL DEFAULT '2000-01-01')`,
		})
		tb, err := open[TimeRow](t, db, table, "k")
		if err != nil {
			t.Fatal(err)
		}
		fine := map[string]time.Duration{"postgres": time.Microsecond, "mysql": time.Second}[db.Kind]
		tm := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
		_, err = tb.GetOrCreate(ctx, TimeRow{K: tm, V: tm})
		wantKeyAltered(t, err, "k", "2024-05-06T07:08:09.123456789Z")
		for _, err := range stampedeErrs(32, func() error { _, err := tb.GetOrCreate(ctx, TimeRow{K: tm, V: tm}); return err }) {
			wantKeyAltered(t, err, "k", "07:08:09")
		}
		for _, want := range []bool{true, false} {
			r, err := tb.GetOrCreate(ctx, TimeRow{K: tm.Truncate(fine), V: tm})
			if err != nil || r.Created != want || !r.Row.K.Equal(tm.Truncate(fine)) {
				t.Fatalf("%+v %v", r, err)
			}
		}
		if n := db.Count(t, table); n != 1 {
			t.Fatalf("%d rows", n)
		}
		// A DATE keeps the day: a key with a time of day is refused.
		dayTable := db.Create(t, map[string]string{"": `CREATE TABLE %s (d DATE NOT NULL PRIMARY KEY)`})
		type Day struct {
			D time.Time `db:"d"`
		}
		days, err := open[Day](t, db, dayTable, "d")
		if err != nil {
			t.Fatal(err)
		}
		_, err = days.GetOrCreate(ctx, Day{D: tm.Truncate(time.Second)})
		wantKeyAltered(t, err, "d", "time of day")
		day := time.Date(2024, 5, 6, 0, 0, 0, 0, time.UTC)
		for _, want := range []bool{true, false} {
			r, err := days.GetOrCreate(ctx, Day{D: day})
			if err != nil || r.Created != want || !r.Row.D.Equal(day) {
				t.Fatalf("%+v %v", r, err)
			}
		}
	})
}
