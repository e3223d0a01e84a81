package tagd_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/getorcreate/getorcreate/cmd/internal/tagd"
	"github.com/getorcreate/getorcreate/internal/dsn"
)

// Three spellings of one tag: the first creates it, the others count.
func ExampleStore_Submit() {
	dir, _ := os.MkdirTemp("", "tagd-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	db, parsed, err := dsn.Open(ctx, "sqlite:"+filepath.Join(dir, "tags.db"))
	if err != nil {
		panic(err)
	}
	defer db.Close()
	store, err := tagd.OpenStore(ctx, db, parsed.Kind, "")
	if err != nil {
		panic(err)
	}
	for _, name := range []string{"Go", " go ", "GO"} {
		tag, o, err := store.Submit(ctx, name)
		if err != nil {
			panic(err)
		}
		fmt.Printf("%q: key %q, name %q, count %d, created %v\n", name, tag.Key, tag.Name, tag.Count, o.Created)
	}
	// Output:
	// "Go": key "go", name "Go", count 1, created true
	// " go ": key "go", name "Go", count 2, created false
	// "GO": key "go", name "Go", count 3, created false
}
