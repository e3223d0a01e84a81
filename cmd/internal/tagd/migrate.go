package tagd

import (
	"context"
	"database/sql"
	"fmt"
	"hash/fnv"
	"strings"
	"time"
)

// migrations are applied in order, each once per database and prefix; the
// table <prefix>tagd_schema records which ran. {p} stands for the prefix.
// Append new versions; never edit an applied one.
var migrations = []map[string]string{
	0: nil, // versions start at 1
	1: {
		"sqlite": `
CREATE TABLE {p}tags (
	id INTEGER PRIMARY KEY,
	tag_key TEXT NOT NULL UNIQUE,
	name TEXT NOT NULL,
	count INTEGER NOT NULL DEFAULT 0,
	created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
	updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP);
CREATE INDEX {p}tags_by_count ON {p}tags (count DESC, id);
CREATE TABLE {p}item_tags (
	item TEXT NOT NULL,
	tag_id INTEGER NOT NULL REFERENCES {p}tags (id),
	created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
	PRIMARY KEY (item, tag_id))`,
		"postgres": `
CREATE TABLE {p}tags (
	id BIGSERIAL PRIMARY KEY,
	tag_key TEXT NOT NULL,
	name TEXT NOT NULL,
	count BIGINT NOT NULL DEFAULT 0,
	created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
	updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
	CONSTRAINT {p}tags_key UNIQUE (tag_key));
CREATE INDEX {p}tags_by_count ON {p}tags (count DESC, id);
CREATE TABLE {p}item_tags (
	item TEXT NOT NULL,
	tag_id BIGINT NOT NULL REFERENCES {p}tags (id),
	created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
	PRIMARY KEY (item, tag_id))`,
		// utf8mb4_bin: equality must be exactly the canonical key; a _ci or
		// accent-insensitive collation would merge tags we keep apart.
		"mysql": `
CREATE TABLE {p}tags (
	id BIGINT AUTO_INCREMENT PRIMARY KEY,
	tag_key VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
	name VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
	count BIGINT NOT NULL DEFAULT 0,
	created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
	updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
	UNIQUE KEY {p}tags_key (tag_key),
	KEY {p}tags_by_count (count, id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE {p}item_tags (
	item VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
	tag_id BIGINT NOT NULL,
	created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
	PRIMARY KEY (item, tag_id),
	FOREIGN KEY (tag_id) REFERENCES {p}tags (id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
	},
}

// SchemaVersion is the schema version this build migrates to.
var SchemaVersion = len(migrations) - 1

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
		for _, stmt := range strings.Split(migrations[v][kind], ";\n") {
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
