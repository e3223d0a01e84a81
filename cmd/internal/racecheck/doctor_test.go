package racecheck

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
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

// TestDoctorMariaDBFixesCombine: a nullable key column with a
// case-insensitive collation gets one MODIFY for both findings, and that
// statement leaves the column NOT NULL with the binary collation, however
// many times it is applied.
func TestDoctorMariaDBFixesCombine(t *testing.T) {
	testdb.EachOf(t, []string{"mysql"}, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		table := db.Create(t, map[string]string{"mysql": `CREATE TABLE %s (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NULL UNIQUE) ENGINE=InnoDB`})
		d, err := Doctor(ctx, db.DSN, table, []string{"name"})
		if err != nil {
			t.Fatal(err)
		}
		nulls, coll := finding(d, "nulls"), finding(d, "collation")
		if nulls.Severity != Warn || coll.Severity != Warn {
			t.Fatalf("want warnings on nulls and collation, got %+v and %+v", nulls, coll)
		}
		ddl, _, _ := strings.Cut(nulls.Fix, ";")
		if c, _, _ := strings.Cut(coll.Fix, ";"); c != ddl || !strings.Contains(ddl, "NOT NULL") || !strings.Contains(ddl, "nopad_bin") {
			t.Fatalf("want one combined MODIFY, got %q and %q", nulls.Fix, coll.Fix)
		}
		for range 2 { // in either order, or twice, the same statement
			db.Exec(t, ddl)
		}
		var nullable, collation string
		if err := db.SQL.QueryRow(`SELECT IS_NULLABLE, COLLATION_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND COLUMN_NAME = 'name'`, table).Scan(&nullable, &collation); err != nil {
			t.Fatal(err)
		}
		if nullable != "NO" || collation != "utf8mb4_nopad_bin" {
			t.Fatalf("after %q: nullable %s, collation %s", ddl, nullable, collation)
		}
		d, err = Doctor(ctx, db.DSN, table, []string{"name"})
		if err != nil {
			t.Fatal(err)
		}
		if finding(d, "nulls").Severity != OK || finding(d, "collation").Severity != OK {
			t.Errorf("after the fix: %+v", d.Findings)
		}
	})
}

// TestDoctorNeverCreatesAFile: doctor is read-only, and a SQLite path with
// no database behind it is a usage error, not a new empty file.
func TestDoctorNeverCreatesAFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing.db")
	_, err := Doctor(context.Background(), "sqlite:"+path, "tags", []string{"name"})
	if !IsUsage(err) || !strings.Contains(err.Error(), "no database file") {
		t.Errorf("Doctor on a missing file: %v, want a usage error", err)
	}
	if _, serr := os.Stat(path); !os.IsNotExist(serr) {
		t.Errorf("doctor created %s (stat: %v)", path, serr)
	}
}

// TestDoctorStatements: doctor prints the statements the library's own
// plan holds for the table, not a description of them.
func TestDoctorStatements(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *testdb.DB) {
		table := db.Create(t, testdb.TagsDDL)
		d, err := Doctor(context.Background(), db.DSN, table, []string{"name"})
		if err != nil {
			t.Fatal(err)
		}
		st := finding(d, "statements")
		want := map[string]string{"postgres": "WHERE NOT EXISTS", "mysql": "LOCK IN SHARE MODE", "sqlite": "ON CONFLICT"}[db.Kind]
		if st.Severity != Info || !strings.Contains(st.Message, "INSERT INTO") || !strings.Contains(st.Message, want) || !strings.Contains(st.Message, "update-or-create") {
			t.Errorf("statements finding: %+v", st)
		}
	})
}

// TestDoctorPartialIndex: doctor understands partial unique indexes. Without
// --where it says the key is not unique and names the predicate to pass;
// with it, the table is safe; MariaDB has none, and says so.
func TestDoctorPartialIndex(t *testing.T) {
	testdb.EachOf(t, testdb.Kinds(false), func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		table := db.Create(t, map[string]string{
			"sqlite":   "CREATE TABLE %s (id INTEGER PRIMARY KEY, name TEXT NOT NULL, deleted_at TIMESTAMP);\nCREATE UNIQUE INDEX %s_live ON %s (name) WHERE deleted_at IS NULL",
			"postgres": "CREATE TABLE %s (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL, deleted_at TIMESTAMPTZ);\nCREATE UNIQUE INDEX %s_live ON %s (name) WHERE deleted_at IS NULL",
			"mysql":    "CREATE TABLE %s (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(64) NOT NULL, deleted_at DATETIME NULL, UNIQUE (name))",
		})
		if db.Kind == "mysql" {
			d, err := DoctorWhere(ctx, db.DSN, table, []string{"name"}, "deleted_at IS NULL")
			if err != nil {
				t.Fatal(err)
			}
			if f := finding(d, "schema"); d.Safe() || f.Severity != Unsafe || !strings.Contains(f.Message, "no partial indexes") {
				t.Fatalf("--where on MariaDB: %+v", d.Findings)
			}
			return
		}
		db.Exec(t, "INSERT INTO "+table+" (name, deleted_at) VALUES ('a', CURRENT_TIMESTAMP), ('a', CURRENT_TIMESTAMP), ('a', NULL)")
		d, err := Doctor(ctx, db.DSN, table, []string{"name"})
		if err != nil {
			t.Fatal(err)
		}
		u := finding(d, "unique")
		if d.Safe() || u.Severity != Unsafe || !strings.Contains(u.Fix, `--where "deleted_at IS NULL"`) && !strings.Contains(u.Fix, `--where "(deleted_at IS NULL)"`) || !strings.Contains(u.Fix, "1 key(s) already have several rows") {
			t.Fatalf("no --where: want unsafe, with the predicate to pass and the soft-deleted duplicates counted, got %+v", u)
		}
		d, err = DoctorWhere(ctx, db.DSN, table, []string{"name"}, "deleted_at IS NULL")
		if err != nil {
			t.Fatal(err)
		}
		if u := finding(d, "unique"); !d.Safe() || u.Severity != OK || !strings.Contains(u.Message, "partial") || !strings.Contains(finding(d, "statements").Message, "deleted_at IS NULL") {
			t.Fatalf("--where: %+v", d.Findings)
		}
	})
}

// TestDoctorNonStrict: a MariaDB connection whose sql_mode is not strict is
// unsafe, with the DSN parameter that fixes it.
func TestDoctorNonStrict(t *testing.T) {
	testdb.EachOf(t, []string{"mysql"}, func(t *testing.T, db *testdb.DB) {
		table := db.Create(t, testdb.TagsDDL)
		d, err := Doctor(context.Background(), db.DSN+"?sql_mode=%27NO_ENGINE_SUBSTITUTION%27", table, []string{"name"})
		if err != nil {
			t.Fatal(err)
		}
		if f := finding(d, "sql-mode"); d.Safe() || f.Severity != Unsafe || !strings.Contains(f.Fix, "sql_mode='STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION'") {
			t.Fatalf("%+v", d.Findings)
		}
	})
}
