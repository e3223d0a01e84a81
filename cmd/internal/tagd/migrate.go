package tagd

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"hash/fnv"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The migrations are SQL files, one set per database, embedded in the
// binary: migrations/<kind>/NNN_name.sql, applied in order of NNN, each once
// per database and prefix; the table <prefix>tagd_schema records which ran.
// {p} in a file stands for the prefix, and statements are separated by a
// semicolon at the end of a line. Add new versions; never edit an applied
// one: databases migrated by earlier builds keep their version numbers.
//
// Not goose or golang-migrate: either would add a dependency and a version
// table of its own (so existing databases would need converting) for three
// small sets of files, and the runner below already takes the cross-process
// lock that lets several tagd processes start together.
//
//go:embed migrations
var migrationFS embed.FS

// migrations[kind][v] is the SQL of version v (index 0 unused).
var migrations = loadMigrations()

// SchemaVersion is the schema version this build migrates to.
var SchemaVersion = len(migrations["sqlite"]) - 1

var migrationName = regexp.MustCompile(`^([0-9]{3})_[a-z0-9_]+\.sql$`)

// loadMigrations reads the embedded files and checks that every database
// has the same versions, numbered from 1 without a gap. A build that breaks
// this fails every test at start.
func loadMigrations() map[string][]string {
	out := map[string][]string{}
	for _, kind := range []string{"sqlite", "postgres", "mysql"} {
		entries, err := migrationFS.ReadDir("migrations/" + kind)
		if err != nil {
			panic(err)
		}
		out[kind] = []string{""}
		for _, e := range entries { // ReadDir sorts by name
			m := migrationName.FindStringSubmatch(e.Name())
			if m == nil {
				panic("tagd: migration file name " + kind + "/" + e.Name() + " is not NNN_name.sql")
			}
			if v, _ := strconv.Atoi(m[1]); v != len(out[kind]) {
				panic(fmt.Sprintf("tagd: migration %s/%s: want version %d next", kind, e.Name(), len(out[kind])))
			}
			b, err := migrationFS.ReadFile("migrations/" + kind + "/" + e.Name())
			if err != nil {
				panic(err)
			}
			out[kind] = append(out[kind], string(b))
		}
	}
	if len(out["postgres"]) != len(out["sqlite"]) || len(out["mysql"]) != len(out["sqlite"]) {
		panic("tagd: the databases' migrations differ in number")
	}
	return out
}

// migrate brings the schema up to SchemaVersion. Several processes may start
// at once: each takes a database-wide lock first (an advisory lock, GET_LOCK,
// or SQLite's write lock), so exactly one applies each migration.
func migrate(ctx context.Context, db *sql.DB, kind, prefix string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("tagd: migrate: %w", err)
	}
	defer conn.Close()
	h := fnv.New64a()
	h.Write([]byte("tagd-migrate:" + prefix))
	lockID := int64(h.Sum64() >> 1)
	exec := func(q string, args ...any) error {
		_, err := conn.ExecContext(ctx, q, args...)
		return err
	}
	switch kind {
	case "postgres":
		if err := exec("SELECT pg_advisory_lock($1)", lockID); err != nil {
			return fmt.Errorf("tagd: migrate: lock: %w", err)
		}
		defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", lockID)
	case "mysql":
		var got sql.NullInt64
		name := fmt.Sprintf("tagd_migrate_%x", lockID)
		if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 60)", name).Scan(&got); err != nil || got.Int64 != 1 {
			return fmt.Errorf("tagd: migrate: could not take lock %s: %v", name, err)
		}
		defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT RELEASE_LOCK(?)", name)
	case "sqlite":
		// The DSN makes every transaction BEGIN IMMEDIATE: the write lock
		// is taken below, before the version is read.
	default:
		return fmt.Errorf("tagd: unknown database kind %q", kind)
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("tagd: migrate: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+prefix+"tagd_schema (version INTEGER NOT NULL PRIMARY KEY)"); err != nil {
		return fmt.Errorf("tagd: migrate: %w", err)
	}
	var have sql.NullInt64
	if err := tx.QueryRowContext(ctx, "SELECT MAX(version) FROM "+prefix+"tagd_schema").Scan(&have); err != nil {
		return fmt.Errorf("tagd: migrate: %w", err)
	}
	if int(have.Int64) > SchemaVersion {
		return fmt.Errorf("tagd: database schema is version %d, newer than this build's %d: upgrade tagd", have.Int64, SchemaVersion)
	}
	ph := "?"
	if kind == "postgres" {
		ph = "$1"
	}
	// MySQL commits DDL implicitly, so a failed migration there can leave a
	// partial schema; the lock still keeps two processes from racing on it.
	for v := int(have.Int64) + 1; v <= SchemaVersion; v++ {
		for _, stmt := range strings.Split(migrations[kind][v], ";\n") {
			if strings.TrimSpace(stmt) == "" {
				continue
			}
			if _, err := tx.ExecContext(ctx, strings.ReplaceAll(stmt, "{p}", prefix)); err != nil {
				return fmt.Errorf("tagd: migrate to version %d: %w", v, err)
			}
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO "+prefix+"tagd_schema (version) VALUES ("+ph+")", v); err != nil {
			return fmt.Errorf("tagd: migrate to version %d: %w", v, err)
		}
	}
	return tx.Commit()
}
