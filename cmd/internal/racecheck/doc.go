// Package racecheck shows the get-or-create race on a real database and
// shows it fixed. It runs workloads (a stampede of workers onto one new key,
// workers over many keys, a skewed counter) with several strategies: the
// naive ways people write get-or-create and read-modify-write, Django's
// insert-then-catch algorithm, and getorcreate. Each run uses its own scratch
// tables, checks the invariants on the database afterwards (one row per key,
// no lost increments, exactly one caller told it created the row) and counts
// the errors that reached the caller.
//
// Workers can run in several OS processes (Config.Procs), re-executing the
// current binary, so the race crosses processes as it does between servers.
// A binary that uses Run with Procs > 1 must call [WorkerMain] at the start of
// main (and a test binary in TestMain):
//
//	func main() {
//		if racecheck.IsWorker() {
//			os.Exit(racecheck.WorkerMain(context.Background(), os.Stdin, os.Stdout))
//		}
//		...
//	}
//
// [Doctor] inspects a live table, read-only, and says what in its schema
// makes get-or-create unsafe and the DDL that fixes it.
package racecheck
