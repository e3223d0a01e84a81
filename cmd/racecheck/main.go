// Command racecheck shows the get-or-create race on a real database, and
// shows getorcreate holding where the naive ways fail:
//
//	racecheck                 demo on a temporary SQLite database
//	racecheck run --db DSN [--workload storm|keys|counter] [--strategy LIST] [--workers N] [--procs P]
//	              [--duration D | --rounds R] [--isolation rc|rr|serializable] [--in-tx] [--json] [--keep] [--no-unique]
//	racecheck doctor --db DSN --table T --key col[,col...] [--json]
//
// It exits 0 when getorcreate held every invariant (doctor: when nothing is
// unsafe), 1 when not, and 2 on bad usage or an unreachable database. The
// logic is in package racecheck; this file only wires flags to it. See
// docs/RACECHECK.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/getorcreate/getorcreate/cmd/internal/racecheck"
)

func main() {
	if racecheck.IsWorker() {
		os.Exit(racecheck.WorkerMain(context.Background(), os.Stdin, os.Stdout))
	}
	// A closed stdout (racecheck | head) must not kill the process before
	// it has dropped its scratch tables and removed the demo's directory:
	// writes then fail with EPIPE instead.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := racecheck.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
