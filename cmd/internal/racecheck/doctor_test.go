package racecheck

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/getorcreate/getorcreate/internal/testdb"
)

// noUniqueDDL is a tags table whose name has no unique index, with a
// collation on name that makes "Go" and "go" one key where the database
// has one.
var noUniqueDDL = map[string]string{
	"sqlite":   `CREATE TABLE %s (id INTEGER PRIMARY KEY, name TEXT COLLATE NOCASE NOT NULL, note TEXT)`,
	"postgres": `CREATE TABLE %s (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL, note TEXT)`,
	"mysql":    `CREATE TABLE %s (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NOT NULL, note TEXT) ENGINE=InnoDB`,
}

func finding(d *Diagnosis, topic string) Finding {
	for _, f := range d.Findings {
		if f.Topic == topic {
			return f
		}
	}
	return Finding{}
}

// TestDoctor finds the missing unique index, prints DDL that really fixes
// it (the test applies it and asks again), and reads collations from the
// database.
func TestDoctor(t *testing.T) {
	testdb.EachOf(t, testdb.Kinds(false), func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		table := db.Create(t, noUniqueDDL)
		db.Exec(t, "INSERT INTO "+table+" (name) VALUES ('dup'), ('dup')")

		d, err := Doctor(ctx, db.DSN, table, []string{"name"})
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		WriteDiagnosis(&b, d)
		t.Logf("%s", b.String())
		u := finding(d, "unique")
		if d.Safe() || u.Severity != Unsafe || !strings.Contains(u.Fix, "UNIQUE INDEX") || !strings.Contains(u.Fix, "1 key(s) already have several rows") {
			t.Fatalf("no unique index: want an unsafe finding with the DDL and the duplicates, got %+v", u)
		}
		switch c := finding(d, "collation"); db.Kind {
		case "postgres":
			if c.Severity != OK {
				t.Errorf("deterministic default collation: got %+v", c)
			}
		case "mysql":
			if c.Severity != Warn || !strings.Contains(c.Message, "PAD SPACE") || !strings.Contains(c.Message, "case-insensitive") {
				t.Errorf("utf8mb4_general_ci: want case-insensitive and PAD SPACE, got %+v", c)
			}
		case "sqlite":
			if c.Severity != Warn || !strings.Contains(c.Message, "case-insensitive") || strings.Contains(c.Message, "PAD SPACE") {
				t.Errorf("NOCASE: want case-insensitive only, got %+v", c)
			}
		}

		if db.Kind == "mysql" {
			// The collation fix, applied, makes the probes come out
			// different.
			ddl, _, _ := strings.Cut(finding(d, "collation").Fix, ";")
			db.Exec(t, ddl)
			d, err := Doctor(ctx, db.DSN, table, []string{"name"})
			if err != nil {
				t.Fatal(err)
			}
			if c := finding(d, "collation"); c.Severity != OK {
				t.Errorf("after the collation fix %q: %+v", ddl, c)
			}
		}

		// Apply the printed fix, as a user would, and ask again.
		db.Exec(t, "DELETE FROM "+table+" WHERE id = (SELECT MAX(id) FROM (SELECT id FROM "+table+") x)")
		_, ddl, _ := strings.Cut(u.Fix, "then: ")
		db.Exec(t, strings.TrimSuffix(ddl, ";"))
		d, err = Doctor(ctx, db.DSN, table, []string{"name"})
		if err != nil {
			t.Fatal(err)
		}
		if !d.Safe() || finding(d, "unique").Severity != OK {
			t.Errorf("after the fix: %+v", d.Findings)
		}
	})
}

func TestDoctorBadInput(t *testing.T) {
	testdb.EachOf(t, testdb.Kinds(false), func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		table := db.Create(t, testdb.TagsDDL)
		for _, c := range []struct {
			table string
			key   []string
			want  string
		}{
			{table + "_missing", []string{"name"}, "does not exist"},
			{table, []string{"nmae"}, `column "nmae" does not exist`},
			{table, nil, "--key"},
			{"", []string{"name"}, "--table"},
		} {
			_, err := Doctor(ctx, db.DSN, c.table, c.key)
			if !IsUsage(err) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Doctor(%q, %q) = %v, want a usage error mentioning %q", c.table, c.key, err, c.want)
			}
		}
		d, err := Doctor(ctx, db.DSN, table, []string{"name"})
		if err != nil {
			t.Fatal(err)
		}
		if !d.Safe() {
			t.Errorf("the tags table is safe, got %+v", d.Findings)
		}
	})
}
