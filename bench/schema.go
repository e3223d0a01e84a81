package bench

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/getorcreate/getorcreate"
	"modernc.org/sqlite"

	gomysql "github.com/go-sql-driver/mysql"
)

// Row is the benchmark's row: a surrogate id, the key, and a counter. The
// db tags map it for getorcreate, the gorm tags for GORM.
type Row struct {
	ID    int64  `db:"id" gorm:"column:id;primaryKey"`
	Name  string `db:"name" gorm:"column:name"`
	Count int64  `db:"count" gorm:"column:count"`
}

var ddl = map[string]string{
	"sqlite":   `CREATE TABLE %s (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, count INTEGER NOT NULL DEFAULT 0)`,
	"postgres": `CREATE TABLE %s (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE, count BIGINT NOT NULL DEFAULT 0)`,
	"mysql":    `CREATE TABLE %s (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(64) NOT NULL UNIQUE, count BIGINT NOT NULL DEFAULT 0) ENGINE=InnoDB`,
}

// createTable creates a fresh, uniquely named scratch table.
func createTable(ctx context.Context, db *sql.DB, kind string) (string, error) {
	b := make([]byte, 4)
	rand.Read(b)
	name := "gocbench_" + hex.EncodeToString(b)
	if _, err := db.ExecContext(ctx, fmt.Sprintf(ddl[kind], name)); err != nil {
		return "", fmt.Errorf("creating %s on %s: %w", name, kind, err)
	}
	return name, nil
}

func dropTable(db *sql.DB, name string) {
	db.Exec("DROP TABLE IF EXISTS " + name)
}

// fill inserts the keys into table in batches.
func fill(ctx context.Context, db *sql.DB, table string, keys []string) error {
	const batch = 500
	for i := 0; i < len(keys); i += batch {
		part := keys[i:min(i+batch, len(keys))]
		var b strings.Builder
		args := make([]any, len(part))
		fmt.Fprintf(&b, "INSERT INTO %s (name) VALUES ", table)
		for j, k := range part {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("(?)")
			args[j] = k
		}
		if _, err := db.ExecContext(ctx, rebind(db, b.String()), args...); err != nil {
			return err
		}
	}
	return nil
}

// rebind turns ? placeholders into $n for PostgreSQL.
func rebind(db *sql.DB, q string) string {
	if kindOf(db) != "postgres" {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func kindOf(db *sql.DB) string {
	switch db.Driver().(type) {
	case *sqlite.Driver:
		return "sqlite"
	case *gomysql.MySQLDriver, gomysql.MySQLDriver:
		return "mysql"
	}
	return "postgres"
}

// isIntegrity reports whether err is an integrity error in Django's sense
// (a constraint violation), as getorcreate classifies it: a unique
// violation or a NULL in a NOT NULL column. (Django's also covers foreign
// keys and CHECK constraints, which the benchmark's table has none of.)
func isIntegrity(err error) bool {
	k := getorcreate.Kind(err)
	return k == getorcreate.ErrConflict || k == getorcreate.ErrNotNull
}
