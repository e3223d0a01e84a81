package getorcreate_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/getorcreate/getorcreate"
	"github.com/getorcreate/getorcreate/internal/testdb"
)

// BenchmarkCoalesce: 32 goroutines adding 1 to a count, on one hot key and
// on Zipf(1.1)-distributed keys out of 10,000, with Coalesce off and on
// (with one and two batches of a shape in flight at once); and one
// goroutine on Zipf keys ("one"), where coalescing must cost nothing. ns/op is per
// call; compare the sub-benchmarks of one database and workload from the
// same run:
//
//	go test -run '^$' -bench Coalesce -benchtime 2s .
func BenchmarkCoalesce(b *testing.B) {
	for _, name := range []string{"sqlite", "postgres", "mysql"} {
		b.Run(name, func(b *testing.B) {
			db := testdb.Open(b, name)
			for _, load := range []string{"hot", "zipf", "one"} {
				b.Run(load, func(b *testing.B) {
					for _, mode := range []string{"off", "flight1", "flight2"} {
						if mode == "flight2" && (db.Kind == "sqlite" || load == "one") {
							continue // one writer: a second batch would only wait
						}
						b.Run(mode, func(b *testing.B) { benchCoalesce(b, db, load, mode) })
					}
				})
			}
		})
	}
}

func benchCoalesce(b *testing.B, db *testdb.DB, load, mode string) {
	ctx := context.Background()
	name := db.Create(b, testdb.TagsDDL)
	tags, err := testdb.OpenTable[Tag](db, getorcreate.Config{Table: name, Key: []string{"name"}, Coalesce: mode != "off"})
	if err != nil {
		b.Fatal(err)
	}
	defer tags.Close()
	switch mode {
	case "flight1":
		getorcreate.SetMaxFlight(tags, 1)
	case "flight2":
		getorcreate.SetMaxFlight(tags, 2)
	}
	if load == "one" {
		z := rand.NewZipf(rand.New(rand.NewPCG(1, 0)), 1.1, 1, 9999)
		b.ResetTimer()
		for range b.N {
			if _, err := tags.UpdateOrCreate(ctx, Tag{Name: fmt.Sprintf("z%d", z.Uint64()), Count: 1}, getorcreate.Add("count", 1)); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	b.SetParallelism((32 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		z := rand.NewZipf(rand.New(rand.NewPCG(rand.Uint64(), 0)), 1.1, 1, 9999)
		for pb.Next() {
			key := "hot"
			if load == "zipf" {
				key = fmt.Sprintf("z%d", z.Uint64())
			}
			if _, err := tags.UpdateOrCreate(ctx, Tag{Name: key, Count: 1}, getorcreate.Add("count", 1)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
