package bench

import (
	"context"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/getorcreate/getorcreate/pgxv5"
)

// The pgx contenders run on PostgreSQL through pgx's own pool, without
// database/sql; their ratios are to floor-pgx, the floor on that pool.
func init() {
	extraContenders = append(extraContenders,
		Contender{Name: "floor-pgx", Kinds: []string{"postgres"}, Open: openFloorPgx,
			Note: "the floor's statements through pgxpool.Pool.QueryRow, without database/sql"},
		Contender{Name: "getorcreate-pgx", Kinds: []string{"postgres"}, Open: openGOCPgx,
			Note: "this library through package pgxv5 on the same pgxpool.Pool; its ratio is to floor-pgx"},
	)
}

// openPgxPool opens a pgx pool as large as the database/sql pool.
func openPgxPool(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = 64
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("opening pgx pool: %w", err)
	}
	return pool, nil
}

// warmPgx opens n connections of the pgx pool.
func warmPgx(ctx context.Context, pool *pgxpool.Pool, n int) error {
	var wg sync.WaitGroup
	conns := make([]*pgxpool.Conn, n)
	errs := make([]error, n)
	for i := range min(n, int(pool.Config().MaxConns)) {
		wg.Go(func() { conns[i], errs[i] = pool.Acquire(ctx) })
	}
	wg.Wait()
	for i, c := range conns {
		if c != nil {
			c.Release()
		}
		if errs[i] != nil {
			return errs[i]
		}
	}
	return nil
}

func openFloorPgx(ctx context.Context, e *Env, table string) (Ops, error) {
	if e.Pgx == nil {
		return Ops{}, fmt.Errorf("no pgx pool")
	}
	p := e.Pgx
	one := func(q string, created, known bool) OpFunc {
		return func(ctx context.Context, key string) (Outcome, error) {
			var r Row
			err := p.QueryRow(ctx, q, key).Scan(&r.ID, &r.Name, &r.Count)
			return Outcome{Created: created, Known: known}, err
		}
	}
	return Ops{
		Existing: one("SELECT id, name, count FROM "+table+" WHERE name = $1", false, true),
		New:      one("INSERT INTO "+table+" (name) VALUES ($1) RETURNING id, name, count", true, true),
		Update:   one("INSERT INTO "+table+" AS t (name, count) VALUES ($1, 1) ON CONFLICT (name) DO UPDATE SET count = t.count + 1 RETURNING id, name, count", false, false),
	}, nil
}

func openGOCPgx(ctx context.Context, e *Env, table string) (Ops, error) {
	if e.Pgx == nil {
		return Ops{}, fmt.Errorf("no pgx pool")
	}
	t, err := pgxv5.Open[Row](ctx, e.Pgx, table, "name")
	if err != nil {
		return Ops{}, err
	}
	return gocOps(t, nil), nil
}
