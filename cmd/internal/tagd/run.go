package tagd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/getorcreate/getorcreate/internal/dsn"
)

// Config is everything Run needs: where the database and the listener are,
// and the server's Options.
type Config struct {
	// DSN is the database, in the project's forms: sqlite:PATH,
	// postgres://..., mysql://... Default: sqlite:tagd.db.
	DSN string
	// ReplicaDSN, when set, is a read replica of DSN (a hot standby) that
	// serves GET /api/tags/{key} (a tag it lacks is read on DSN) and the
	// tag list (which may then lag DSN by the standby's replay). Writes
	// and everything else go to DSN.
	ReplicaDSN string
	// Addr is the listen address. Default: 127.0.0.1:8080. Port 0 picks a
	// free port (see Ready).
	Addr string
	// TablePrefix is put before every table name, so several services or
	// tests can share one database.
	TablePrefix string
	// MaxConns caps the database pool; zero keeps the dsn package's sizing.
	MaxConns int
	// NoCoalesce turns off getorcreate's Config.Coalesce on the store's
	// tables (on by default: POSTs without an Idempotency-Key that arrive
	// together share their statements).
	NoCoalesce bool
	// OpsAddr, when set, is a second listen address serving /metrics,
	// /readyz and /healthz without the token; the main address then answers
	// 404 for the first two. Meant for a private interface.
	OpsAddr string
	// ShutdownTimeout bounds the wait for in-flight requests after ctx is
	// done. Default 15s.
	ShutdownTimeout time.Duration
	// DrainTime is the part of ShutdownTimeout during which the listeners
	// stay open after ctx is done, answering every request with
	// "Connection: close", so that keep-alive clients are told to go rather
	// than have an idle connection closed under their next request.
	// Default 1s; it ends early once no connection is open.
	DrainTime time.Duration
	// IdempotencyTTL is how long Idempotency-Keys are kept; default 24h.
	IdempotencyTTL time.Duration
	// Ready, when set, is called with the listening address once the schema
	// is migrated and the server accepts connections.
	Ready func(addr net.Addr)
	// OpsReady, when set, is called with the ops listener's address.
	OpsReady func(addr net.Addr)
	Options
}

// Validate refuses settings that make no sense (negative sizes, rates and
// durations, a token no client can send) with a *ConfigError.
func (c Config) Validate() error {
	switch {
	case c.MaxConns < 0:
		return &ConfigError{"MaxConns", fmt.Sprintf("%d connections: use a positive number, or 0 for the default", c.MaxConns)}
	case c.ShutdownTimeout < 0:
		return &ConfigError{"ShutdownTimeout", fmt.Sprintf("%v: use a positive duration, or 0 for the default", c.ShutdownTimeout)}
	case c.DrainTime < 0:
		return &ConfigError{"DrainTime", fmt.Sprintf("%v: use a positive duration, or 0 for the default", c.DrainTime)}
	case c.IdempotencyTTL < 0:
		return &ConfigError{"IdempotencyTTL", fmt.Sprintf("%v: use a positive duration, or 0 for the default", c.IdempotencyTTL)}
	case c.OpsAddr != "" && c.OpsAddr == c.Addr && !strings.HasSuffix(c.Addr, ":0"):
		return &ConfigError{"OpsAddr", "the ops address must differ from the main one"}
	}
	return c.Options.validate()
}

// Run opens and migrates the database, serves until ctx is done, then
// drains (see DrainTime), stops accepting connections, lets in-flight
// requests finish (up to ShutdownTimeout in all) and closes the database. A
// nil error means a clean stop.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if cfg.DSN == "" {
		cfg.DSN = "sqlite:tagd.db"
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:8080"
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 15 * time.Second
	}
	if cfg.DrainTime == 0 {
		cfg.DrainTime = time.Second
	}
	cfg.DrainTime = min(cfg.DrainTime, cfg.ShutdownTimeout/2)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.SeparateOps = cfg.OpsAddr != ""
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
	store, err := OpenStoreCoalescing(ctx, db, parsed.Kind, cfg.TablePrefix, !cfg.NoCoalesce)
	if err != nil {
		return err
	}
	if cfg.ReplicaDSN != "" {
		replica, _, err := dsn.Open(ctx, cfg.ReplicaDSN)
		if err != nil {
			return fmt.Errorf("tagd: opening the replica: %w", err)
		}
		defer replica.Close()
		store.UseReplica(replica)
	}
	handler, err := NewServer(store, cfg.Options)
	if err != nil {
		return err
	}
	conns := &connCount{}
	servers := []*http.Server{newHTTPServer(ctx, handler, cfg, conns)}
	addrs := []string{cfg.Addr}
	if cfg.OpsAddr != "" {
		servers = append(servers, newHTTPServer(ctx, handler.OpsHandler(), cfg, conns))
		addrs = append(addrs, cfg.OpsAddr)
	}
	var lns []net.Listener
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return fmt.Errorf("tagd: %w", err)
		}
		lns = append(lns, &onceCloseListener{Listener: ln})
	}
	log.Info("tagd listening", "addr", lns[0].Addr().String(), "ops_addr", cfg.OpsAddr, "db", parsed.Kind,
		"schema_version", SchemaVersion, "prefix", cfg.TablePrefix, "token", cfg.Token != "")
	errc := make(chan error, len(servers))
	var draining atomic.Bool
	for i, srv := range servers {
		ln := lns[i]
		go func() {
			err := srv.Serve(ln)
			if draining.Load() {
				err = nil // the drain closed the listener
			}
			errc <- err
		}()
	}
	go expireKeys(ctx, store, cfg.IdempotencyTTL, log)
	if cfg.Ready != nil {
		cfg.Ready(lns[0].Addr())
	}
	if cfg.OpsReady != nil && len(lns) > 1 {
		cfg.OpsReady(lns[1].Addr())
	}
	select {
	case err := <-errc:
		for _, srv := range servers {
			srv.Close()
		}
		return fmt.Errorf("tagd: serving: %w", err)
	case <-ctx.Done():
	}
	log.Info("tagd shutting down: draining keep-alive connections, then finishing in-flight requests",
		"drain", cfg.DrainTime, "timeout", cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	// Drain: answers now say "Connection: close", and new connections are
	// refused, which a client knows means nothing was sent. An idle
	// keep-alive connection is left open until its client sends on it (and
	// is answered) or DrainTime ends: closing it at once, as Shutdown does,
	// races with a request the client may be sending on it, which would
	// then get no answer at all.
	handler.startDraining()
	draining.Store(true)
	for _, ln := range lns {
		ln.Close()
	}
	drainEnd := time.Now().Add(cfg.DrainTime)
	for time.Now().Before(drainEnd) && conns.open.Load() > 0 {
		time.Sleep(10 * time.Millisecond)
	}
	var shutdownErr error
	for _, srv := range servers {
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
			shutdownErr = fmt.Errorf("tagd: shutdown: %w", err)
		}
	}
	for range servers {
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("tagd: serving: %w", err)
		}
	}
	if shutdownErr != nil {
		return shutdownErr
	}
	log.Info("tagd stopped")
	return nil
}

// onceCloseListener lets the drain and Shutdown both close the listener.
type onceCloseListener struct {
	net.Listener
	once sync.Once
	err  error
}

func (l *onceCloseListener) Close() error {
	l.once.Do(func() { l.err = l.Listener.Close() })
	return l.err
}

// connCount counts the listeners' open connections, for the drain.
type connCount struct{ open atomic.Int64 }

func (c *connCount) track(_ net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		c.open.Add(1)
	case http.StateClosed, http.StateHijacked:
		c.open.Add(-1)
	}
}

func newHTTPServer(ctx context.Context, h http.Handler, cfg Config, conns *connCount) *http.Server {
	bodyTimeout := cfg.BodyTimeout
	if bodyTimeout == 0 {
		bodyTimeout = 15 * time.Second
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		// The handler gives the body BodyTimeout and answers 408 past it;
		// this bound is the backstop for what no handler reads.
		ReadTimeout:    5*time.Second + bodyTimeout + time.Second,
		WriteTimeout:   30 * time.Second,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 16 << 10,
		ErrorLog:       slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
		ConnState:      conns.track,
		// Requests keep their own context: a shutdown must let them finish,
		// not cancel them.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
}

// expireKeys deletes the Idempotency-Keys older than ttl, now and every ten
// minutes until ctx is done. Every process does it; the DELETEs are cheap
// and harmless together.
func expireKeys(ctx context.Context, store *Store, ttl time.Duration, log *slog.Logger) {
	if ttl == 0 {
		ttl = 24 * time.Hour
	}
	tick := time.NewTicker(10 * time.Minute)
	defer tick.Stop()
	for {
		if n, err := store.ExpireRequests(ctx, time.Now().Add(-ttl)); err != nil && ctx.Err() == nil {
			log.Warn("expiring Idempotency-Keys", "err", err)
		} else if n > 0 {
			log.Info("expired Idempotency-Keys", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
