package getorcreate_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/getorcreate/getorcreate/internal/testdb"
)

// BenchmarkManyVsSingle: 1,000 keys, half of them existing, written as one
// GetOrCreateMany call and as 1,000 GetOrCreate calls, on each database.
// Compare the two ns/op of one database from the same run:
//
//	go test -run '^$' -bench ManyVsSingle -benchtime 5x .
func BenchmarkManyVsSingle(b *testing.B) {
	for _, name := range []string{"sqlite", "postgres", "mysql"} {
		b.Run(name, func(b *testing.B) {
			db := testdb.Open(b, name)
			ctx := context.Background()
			tags, _ := openTagsB(b, db)
			round := 0
			batch := func() []Tag {
				// 1,000 keys: 500 created beforehand, 500 new, interleaved.
				round++
				in := make([]Tag, 1000)
				pre := make([]Tag, 0, 500)
				for i := range in {
					in[i] = Tag{Name: fmt.Sprintf("r%d-k%04d", round, i)}
					if i%2 == 0 {
						pre = append(pre, in[i])
					}
				}
				if _, err := tags.GetOrCreateMany(ctx, pre); err != nil {
					b.Fatal(err)
				}
				return in
			}
			b.Run("many", func(b *testing.B) {
				for range b.N {
					b.StopTimer()
					in := batch()
					b.StartTimer()
					if _, err := tags.GetOrCreateMany(ctx, in); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("single", func(b *testing.B) {
				for range b.N {
					b.StopTimer()
					in := batch()
					b.StartTimer()
					for _, row := range in {
						if _, err := tags.GetOrCreate(ctx, row); err != nil {
							b.Fatal(err)
						}
					}
				}
			})
		})
	}
}
