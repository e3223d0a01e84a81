package getorcreate_test

import (
	"context"
	"strings"
	"testing"

	"github.com/getorcreate/getorcreate/internal/testdb"
)

// TestExistingRowNeverWritten: GetOrCreate of an existing key fires no
// insert or update trigger, and on PostgreSQL burns no sequence value.
func TestExistingRowNeverWritten(t *testing.T) {
	testdb.EachOf(t, testdb.Kinds(true), func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		tags, table := openTags(t, db)
		audit := db.Create(t, map[string]string{"": "CREATE TABLE %s (n INTEGER NOT NULL)"})
		switch db.Kind {
		case "sqlite":
			for _, ev := range []string{"INSERT", "UPDATE"} {
				db.Exec(t, "CREATE TRIGGER "+table+"_"+ev+" BEFORE "+ev+" ON "+table+" BEGIN INSERT INTO "+audit+" VALUES (1); END")
			}
		case "postgres":
			db.Exec(t, "CREATE FUNCTION "+table+"_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO "+audit+" VALUES (1); RETURN NEW; END $$")
			db.Exec(t, "CREATE TRIGGER a BEFORE INSERT OR UPDATE ON "+table+" FOR EACH ROW EXECUTE FUNCTION "+table+"_audit()")
			t.Cleanup(func() { db.SQL.Exec("DROP FUNCTION IF EXISTS " + table + "_audit() CASCADE") })
		case "mysql":
			for _, ev := range []string{"INSERT", "UPDATE"} {
				db.Exec(t, "CREATE TRIGGER "+table+"_"+strings.ToLower(ev)+" BEFORE "+ev+" ON "+table+" FOR EACH ROW INSERT INTO "+audit+" VALUES (1)")
			}
		}
		first, err := tags.GetOrCreate(ctx, Tag{Name: "kept"})
		if err != nil || !first.Created {
			t.Fatalf("%+v %v", first, err)
		}
		fired := db.Count(t, audit)
		var seqBefore int64
		if db.Kind == "postgres" {
			db.SQL.QueryRow("SELECT last_value FROM " + table + "_id_seq").Scan(&seqBefore)
		}
		for range 5 {
			r, err := tags.GetOrCreate(ctx, Tag{Name: "kept", Count: 7})
			if err != nil || r.Created || r.Row.ID != first.Row.ID {
				t.Fatalf("%+v %v", r, err)
			}
		}
		res, err := tags.GetOrCreateMany(ctx, []Tag{{Name: "kept"}, {Name: "kept"}})
		if err != nil || res[0].Created {
			t.Fatalf("%+v %v", res, err)
		}
		if n := db.Count(t, audit); n != fired {
			t.Fatalf("triggers fired %d times for an existing row", n-fired)
		}
		if db.Kind == "postgres" {
			var seqAfter int64
			db.SQL.QueryRow("SELECT last_value FROM " + table + "_id_seq").Scan(&seqAfter)
			if seqAfter != seqBefore {
				t.Fatalf("sequence moved from %d to %d for an existing key", seqBefore, seqAfter)
			}
		}
	})
}
