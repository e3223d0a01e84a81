package racecheck_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/getorcreate/getorcreate/cmd/internal/racecheck"
	"github.com/getorcreate/getorcreate/internal/dsn"
)

// Increment a hot counter from 8 workers: reading the count and writing
// back read+1 loses updates; getorcreate's UpdateOrCreate with Add loses
// none.
func ExampleRun() {
	dir, _ := os.MkdirTemp("", "racecheck-example-")
	defer os.RemoveAll(dir)
	reports, err := racecheck.Run(context.Background(), racecheck.Config{
		DSN:        "sqlite:" + filepath.Join(dir, "example.db"),
		Workload:   racecheck.Counter,
		Strategies: []string{racecheck.ReadModifyWrite, racecheck.GetOrCreate},
		Workers:    8,
		Rounds:     5,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, r := range reports {
		fmt.Printf("%s: lost updates: %v, held: %v\n", r.Strategy, r.LostUpdates > 0, r.Held())
	}
	fmt.Println("exit status 0:", racecheck.Held(reports))
	// Output:
	// read-modify-write: lost updates: true, held: false
	// getorcreate: lost updates: false, held: true
	// exit status 0: true
}

// Doctor finds that nothing keeps one row per name, and prints the DDL that
// does.
func ExampleDoctor() {
	dir, _ := os.MkdirTemp("", "racecheck-example-")
	defer os.RemoveAll(dir)
	db, _, err := dsn.Open(context.Background(), "sqlite:"+filepath.Join(dir, "example.db"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Close()
	db.Exec(`CREATE TABLE tags (id INTEGER PRIMARY KEY, name TEXT NOT NULL)`)

	d, err := racecheck.Doctor(context.Background(), "sqlite:"+filepath.Join(dir, "example.db"), "tags", []string{"name"})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, f := range d.Findings {
		if f.Severity == racecheck.Unsafe {
			fmt.Println(f.Topic+":", f.Fix)
		}
	}
	fmt.Println("safe:", d.Safe())
	// Output:
	// unique: CREATE UNIQUE INDEX "tags_name_key" ON "tags" ("name");
	// safe: false
}
