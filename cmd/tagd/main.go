// Command tagd serves the tag service: a JSON API and a web page for
// submitting tags, on SQLite, PostgreSQL or MariaDB/MySQL. Several tagd
// processes may share one PostgreSQL or MariaDB database. See docs/TAGD.md.
//
//	go run ./cmd/tagd                                   # SQLite in ./tagd.db, http://127.0.0.1:8080
//	tagd --db 'postgres://user@host/db' --addr :8080 --token-file /run/secrets/tagd --rate 20
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/getorcreate/getorcreate/cmd/internal/tagd"
)

// flags binds the command line to cfg. The token is not a flag: a flag's
// value shows in the process list, and its default in --help.
func flags(cfg *tagd.Config, tokenFile *string, logLevel *slog.Level, jsonLogs *bool) *flag.FlagSet {
	fs := flag.NewFlagSet("tagd", flag.ContinueOnError)
	fs.StringVar(&cfg.DSN, "db", "sqlite:tagd.db", "database: sqlite:PATH, postgres://... or mysql://...")
	fs.StringVar(&cfg.ReplicaDSN, "db-replica", "", "read replica of --db (a hot standby): serves tag lookups and lists; writes go to --db")
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:8080", "listen address")
	fs.StringVar(&cfg.OpsAddr, "ops-addr", "", "serve /metrics and /readyz on this address only, without the token")
	fs.StringVar(tokenFile, "token-file", "", "file holding the token that writes need (else $TAGD_TOKEN; none: writes are open)")
	fs.Float64Var(&cfg.RateLimit, "rate", 0, "per-client requests per second; 0 means no limit")
	fs.IntVar(&cfg.RateBurst, "burst", 0, "per-client burst for --rate (default: --rate rounded up)")
	fs.IntVar(&cfg.RateIPv6Prefix, "rate-ipv6-prefix", 64, "leading bits of an IPv6 address that name one client for --rate")
	fs.Int64Var(&cfg.MaxBodyBytes, "max-body", 64<<10, "largest request body in bytes")
	fs.DurationVar(&cfg.BodyTimeout, "body-timeout", 15*time.Second, "time a client has to send a request body (408 after)")
	fs.IntVar(&cfg.MaxConns, "db-max-conns", 0, "database pool size (0: 8 for SQLite, 64 for servers)")
	fs.StringVar(&cfg.TablePrefix, "table-prefix", "", "prefix for table names, to share a database")
	fs.BoolFunc("coalesce", "coalesce concurrent tag submissions into shared statements (default true; --coalesce=false turns it off)", func(v string) error {
		on, err := strconv.ParseBool(v)
		cfg.NoCoalesce = !on
		return err
	})
	fs.DurationVar(&cfg.DBTimeout, "db-timeout", 5*time.Second, "database time allowed per request before answering 503")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 15*time.Second, "time allowed for in-flight requests on SIGINT/SIGTERM")
	fs.DurationVar(&cfg.IdempotencyTTL, "idempotency-ttl", 24*time.Hour, "how long Idempotency-Keys are kept (a resend after that is applied again)")
	fs.DurationVar(&cfg.DrainTime, "drain-time", time.Second, "on SIGINT/SIGTERM, how long keep-alive clients are told to close before idle connections are")
	fs.TextVar(logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn, error")
	fs.BoolVar(jsonLogs, "log-json", false, "log JSON lines instead of text")
	return fs
}

func main() {
	var (
		cfg       tagd.Config
		tokenFile string
		logLevel  slog.Level
		jsonLogs  bool
	)
	fs := flags(&cfg, &tokenFile, &logLevel, &jsonLogs)
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "tagd: unexpected arguments %q\n", fs.Args())
		fs.Usage()
		os.Exit(2)
	}
	var err error
	if cfg.Token, err = tagd.LoadToken(tokenFile, os.Getenv); err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
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
