package tagd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/getorcreate/getorcreate/internal/dsn"
)

// Config is everything Run needs: where the database and the listener are,
// and the server's Options.
type Config struct {
	// DSN is the database, in the project's forms: sqlite:PATH,
	// postgres://..., mysql://... Default: sqlite:tagd.db.
	DSN string
	// Addr is the listen address. Default: 127.0.0.1:8080. Port 0 picks a
	// free port (see Ready).
	Addr string
	// TablePrefix is put before every table name, so several services or
	// tests can share one database.
	TablePrefix string
	// MaxConns caps the database pool; zero keeps the dsn package's sizing.
	MaxConns int
	// ShutdownTimeout bounds the wait for in-flight requests after ctx is
	// done. Default 15s.
	ShutdownTimeout time.Duration
	// Ready, when set, is called with the listening address once the schema
	// is migrated and the server accepts connections.
	Ready func(addr net.Addr)
	Options
}

// Run opens and migrates the database, serves until ctx is done, then stops
// accepting connections, lets in-flight requests finish (up to
// ShutdownTimeout) and closes the database. A nil error means a clean stop.
func Run(ctx context.Context, cfg Config) error {
	if cfg.DSN == "" {
		cfg.DSN = "sqlite:tagd.db"
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:8080"
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 15 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	log := cfg.Logger
	db, parsed, err := dsn.Open(ctx, cfg.DSN)
	if err != nil {
		return fmt.Errorf("tagd: opening the database: %w", err)
	}
	defer db.Close()
	if cfg.MaxConns > 0 {
		db.SetMaxOpenConns(cfg.MaxConns)
		db.SetMaxIdleConns(cfg.MaxConns)
	}
	store, err := OpenStore(ctx, db, parsed.Kind, cfg.TablePrefix)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("tagd: %w", err)
	}
	srv := &http.Server{
		Handler:           NewServer(store, cfg.Options),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		// Requests keep their own context: a shutdown must let them finish,
		// not cancel them.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	log.Info("tagd listening", "addr", ln.Addr().String(), "db", parsed.Kind, "schema_version", SchemaVersion, "prefix", cfg.TablePrefix)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if cfg.Ready != nil {
		cfg.Ready(ln.Addr())
	}
	select {
	case err := <-errc:
		return fmt.Errorf("tagd: serving: %w", err)
	case <-ctx.Done():
	}
	log.Info("tagd shutting down: finishing in-flight requests", "timeout", cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
		return fmt.Errorf("tagd: shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("tagd: serving: %w", err)
	}
	log.Info("tagd stopped")
	return nil
}
