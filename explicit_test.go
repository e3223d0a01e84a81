package getorcreate_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/getorcreate/getorcreate"
	"github.com/getorcreate/getorcreate/internal/testdb"
)

var defaultsDDL = map[string]string{
	"sqlite":   `CREATE TABLE %s (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, active BOOLEAN NOT NULL DEFAULT TRUE, score INTEGER NOT NULL DEFAULT 10, note TEXT DEFAULT 'n/a', hits INTEGER NOT NULL DEFAULT 7)`,
	"postgres": `CREATE TABLE %s (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE, active BOOLEAN NOT NULL DEFAULT TRUE, score BIGINT NOT NULL DEFAULT 10, note TEXT DEFAULT 'n/a', hits BIGINT NOT NULL DEFAULT 7)`,
	"mysql":    `CREATE TABLE %s (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(32) NOT NULL UNIQUE, active BOOLEAN NOT NULL DEFAULT TRUE, score BIGINT NOT NULL DEFAULT 10, note VARCHAR(16) DEFAULT 'n/a', hits BIGINT NOT NULL DEFAULT 7)`,
}

// Defaulted leaves zero values to the columns' defaults (the rule without
// options).
type Defaulted struct {
	ID     int64   `db:"id"`
	Name   string  `db:"name"`
	Active bool    `db:"active"`
	Score  int64   `db:"score"`
	Note   *string `db:"note"`
	Hits   int64   `db:"hits"`
}

// Explicit says that false, 0 and NULL are meant.
type Explicit struct {
	ID     int64   `db:"id"`
	Name   string  `db:"name"`
	Active bool    `db:"active,explicit"`
	Score  int64   `db:"score,explicit"`
	Note   *string `db:"note,explicit"`
	Hits   int64   `db:"hits"`
}

type stored struct {
	active bool
	score  int64
	note   sql.NullString
	hits   int64
}

func storedRow(t *testing.T, db *testdb.DB, table, name string) stored {
	t.Helper()
	var s stored
	if err := db.SQL.QueryRow("SELECT active, score, note, hits FROM "+table+" WHERE name = "+placeholder(db), name).Scan(&s.active, &s.score, &s.note, &s.hits); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return s
}

var (
	allDefaults = stored{active: true, score: 10, note: sql.NullString{String: "n/a", Valid: true}, hits: 7}
	allZero     = stored{active: false, score: 0, hits: 7}
)

// TestExplicitValues: the cases. Active false and Score 0 were
// stored as true and 10 on every database, a nil pointer on a nullable
// column with a default stored the default, and a batch stored 0 where a
// single call stored the default. Now one rule holds for single and bulk
// calls (a zero value in a column with a DEFAULT is the default), and a
// field tagged `db:",explicit"` stores its zero value, false or NULL.
func TestExplicitValues(t *testing.T) {
	testdb.EachOf(t, testdb.Kinds(true), func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		table := db.Create(t, defaultsDDL)
		def, err := open[Defaulted](t, db, table, "name")
		if err != nil {
			t.Fatal(err)
		}
		exp, err := open[Explicit](t, db, table, "name")
		if err != nil {
			t.Fatal(err)
		}
		check := func(name string, want stored) {
			t.Helper()
			if got := storedRow(t, db, table, name); got != want {
				t.Fatalf("%s: stored %+v, want %+v", name, got, want)
			}
		}
		r, err := def.GetOrCreate(ctx, Defaulted{Name: "single-default"})
		if err != nil || !r.Created || !r.Row.Active || r.Row.Score != 10 || r.Row.Note == nil || *r.Row.Note != "n/a" || r.Row.Hits != 7 {
			t.Fatalf("defaults: %+v %v", r, err)
		}
		check("single-default", allDefaults)
		e, err := exp.GetOrCreate(ctx, Explicit{Name: "single-explicit"})
		if err != nil || !e.Created || e.Row.Active || e.Row.Score != 0 || e.Row.Note != nil || e.Row.Hits != 7 {
			t.Fatalf("explicit: %+v %v", e, err)
		}
		check("single-explicit", allZero)
		e, err = exp.UpdateOrCreate(ctx, Explicit{Name: "update-explicit"}, getorcreate.Add("hits", 1))
		if err != nil || !e.Created {
			t.Fatalf("%+v %v", e, err)
		}
		check("update-explicit", allZero)

		// Bulk: each row by the rule a single call follows, also when the
		// rows of one batch differ in which columns they leave zero.
		res, err := def.GetOrCreateMany(ctx, []Defaulted{{Name: "bulk-0", Hits: 0}, {Name: "bulk-5", Hits: 5}, {Name: "bulk-z", Active: true, Score: 3}})
		if err != nil || !res[0].Created || res[0].Row.Hits != 7 || res[1].Row.Hits != 5 || res[2].Row.Score != 3 {
			t.Fatalf("bulk: %+v %v", res, err)
		}
		check("bulk-0", allDefaults)
		check("bulk-5", stored{active: true, score: 10, note: allDefaults.note, hits: 5})
		check("bulk-z", stored{active: true, score: 3, note: allDefaults.note, hits: 7})
		ures, err := def.UpdateOrCreateMany(ctx, []Defaulted{{Name: "ubulk-0"}, {Name: "ubulk-5", Hits: 5}}, getorcreate.Add("score", 1))
		if err != nil || ures[0].Row.Hits != 7 || ures[1].Row.Hits != 5 {
			t.Fatalf("update bulk: %+v %v", ures, err)
		}
		check("ubulk-0", allDefaults)
		eres, err := exp.GetOrCreateMany(ctx, []Explicit{{Name: "ebulk-a"}, {Name: "ebulk-b", Active: true, Hits: 2}})
		if err != nil || eres[0].Row.Active || eres[0].Row.Note != nil {
			t.Fatalf("explicit bulk: %+v %v", eres, err)
		}
		check("ebulk-a", allZero)
		check("ebulk-b", stored{active: true, hits: 2})

		// A stampede of explicit zeros: one row, as given.
		wantOneCreator(t, stampede(32, "", func(string) outcome {
			r, err := exp.GetOrCreate(ctx, Explicit{Name: "stampede"})
			return outcome{r.Row.ID, r.Created, err}
		}))
		check("stampede", allZero)
		if n := db.Count(t, table); n != 11 {
			t.Fatalf("%d rows, want 11", n)
		}
	})
}

// TestUnknownTagOption: a misspelt option is an error, not a silent
// default.
func TestUnknownTagOption(t *testing.T) {
	testdb.EachOf(t, []string{"sqlite"}, func(t *testing.T, db *testdb.DB) {
		table := db.Create(t, defaultsDDL)
		type Typo struct {
			ID     int64  `db:"id"`
			Name   string `db:"name"`
			Active bool   `db:"active,explict"`
		}
		_, err := open[Typo](t, db, table, "name")
		wantSchemaError(t, err, getorcreate.ErrMapping, "Active", `"explict"`, "explicit")
	})
}
