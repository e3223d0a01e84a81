package testdb

import (
	"context"
	"testing"

	"github.com/getorcreate/getorcreate/internal/dsn"
)

// TestOwnServer starts a server of each kind, writes, kills it, starts it
// again and finds the write.
func TestOwnServer(t *testing.T) {
	for _, kind := range []string{"postgres", "mysql"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			s := OwnServer(t, kind)
			db, _, err := dsn.Open(context.Background(), s.DSN)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.Exec("CREATE TABLE t (n int)"); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec("INSERT INTO t VALUES (7)"); err != nil {
				t.Fatal(err)
			}
			s.Kill()
			if err := db.Ping(); err == nil {
				t.Fatal("the killed server still answers")
			}
			s.Start()
			var n int
			if err := db.QueryRow("SELECT n FROM t").Scan(&n); err != nil || n != 7 {
				t.Fatalf("after the restart: %d, %v", n, err)
			}
		})
	}
}
