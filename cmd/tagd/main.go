// Command tagd serves the tag service: a JSON API and a web page for
// submitting tags, on SQLite, PostgreSQL or MariaDB/MySQL. Several tagd
// processes may share one PostgreSQL or MariaDB database. See docs/TAGD.md.
//
//	go run ./cmd/tagd                                   # SQLite in ./tagd.db, http://127.0.0.1:8080
//	tagd --db 'postgres://user@host/db' --addr :8080 --token secret --rate 20
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/getorcreate/getorcreate/cmd/internal/tagd"
)

func main() {
	var (
		cfg      tagd.Config
		logLevel slog.Level
		jsonLogs bool
	)
	flag.StringVar(&cfg.DSN, "db", "sqlite:tagd.db", "database: sqlite:PATH, postgres://... or mysql://...")
	flag.StringVar(&cfg.Addr, "addr", "127.0.0.1:8080", "listen address")
	flag.StringVar(&cfg.Token, "token", os.Getenv("TAGD_TOKEN"), "when set, writes need 'Authorization: Bearer TOKEN' (default $TAGD_TOKEN)")
	flag.Float64Var(&cfg.RateLimit, "rate", 0, "per-client API requests per second; 0 means no limit")
	flag.IntVar(&cfg.RateBurst, "burst", 0, "per-client burst for --rate (default: --rate rounded up)")
	flag.Int64Var(&cfg.MaxBodyBytes, "max-body", 64<<10, "largest request body in bytes")
	flag.IntVar(&cfg.MaxConns, "db-max-conns", 0, "database pool size (0: 8 for SQLite, 64 for servers)")
	flag.StringVar(&cfg.TablePrefix, "table-prefix", "", "prefix for table names, to share a database")
	flag.DurationVar(&cfg.DBTimeout, "db-timeout", 5*time.Second, "database time allowed per request before answering 503")
	flag.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 15*time.Second, "time allowed for in-flight requests on SIGINT/SIGTERM")
	flag.TextVar(&logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn, error")
	flag.BoolVar(&jsonLogs, "log-json", false, "log JSON lines instead of text")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "tagd: unexpected arguments %q\n", flag.Args())
		flag.Usage()
		os.Exit(2)
	}

	hopts := &slog.HandlerOptions{Level: logLevel}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, hopts)
	if jsonLogs {
		h = slog.NewJSONHandler(os.Stderr, hopts)
	}
	cfg.Logger = slog.New(h)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := tagd.Run(ctx, cfg); err != nil {
		cfg.Logger.Error("tagd failed", "err", err)
		os.Exit(1)
	}
}
