package bench

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"
)

// statsReader reads the server's counters that explain a cell's
// throughput. On MariaDB they are global status counters, read before and
// after each of the cell's slices (other sessions on the server add to
// them); on PostgreSQL they are the cell's own table's counters from
// pg_stat_user_tables, read once at the end of the group: PostgreSQL
// reports a backend's counts only every second or so, or when it exits, so
// flush closes the pools' idle connections first. SQLite has none.
type statsReader struct {
	kind  string
	db    *sql.DB
	atEnd bool // read once at the end of the group, after flush
}

func serverStats(e *Env) *statsReader {
	return &statsReader{kind: e.Kind, db: e.DB, atEnd: e.Kind == "postgres"}
}

// mysqlCounters are the MariaDB status counters read around each slice.
var mysqlCounters = []string{"Com_insert", "Com_update", "Com_select", "Com_begin", "Com_commit", "Innodb_row_lock_waits", "Innodb_row_lock_time", "Innodb_rows_inserted", "Innodb_rows_updated"}

// read returns the counters now; on PostgreSQL those of table.
func (s *statsReader) read(ctx context.Context, table string) (map[string]int64, error) {
	if s == nil {
		return nil, errNoStats
	}
	switch s.kind {
	case "mysql":
		rs, err := s.db.QueryContext(ctx, "SHOW GLOBAL STATUS WHERE Variable_name IN ('"+strings.Join(mysqlCounters, "','")+"')")
		if err != nil {
			return nil, err
		}
		defer rs.Close()
		m := map[string]int64{}
		for rs.Next() {
			var k string
			var v int64
			if err := rs.Scan(&k, &v); err != nil {
				return nil, err
			}
			m[k] = v
		}
		return m, rs.Err()
	case "postgres":
		var ins, upd, hot, seq, seqRead, idx int64
		err := s.db.QueryRowContext(ctx, `SELECT n_tup_ins, n_tup_upd, n_tup_hot_upd, COALESCE(seq_scan, 0), COALESCE(seq_tup_read, 0), COALESCE(idx_scan, 0)
			FROM pg_stat_user_tables WHERE relid = $1::regclass`, table).Scan(&ins, &upd, &hot, &seq, &seqRead, &idx)
		if err != nil {
			return nil, err
		}
		return map[string]int64{"n_tup_ins": ins, "n_tup_upd": upd, "n_tup_hot_upd": hot, "seq_scan": seq, "seq_tup_read": seqRead, "idx_scan": idx}, nil
	}
	return nil, errNoStats
}

var errNoStats = fmt.Errorf("no server counters")

// dbCommits is PostgreSQL's count of the database's committed
// transactions, every session's, as reported so far; -1 when unknown.
func dbCommits(ctx context.Context, db *sql.DB) int64 {
	var n int64
	if err := db.QueryRowContext(ctx, "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()").Scan(&n); err != nil {
		return -1
	}
	return n
}

// flush makes PostgreSQL report what the pools' connections did: a backend
// reports its counts when it exits, so the idle connections are closed
// (the next group's warm-up opens them again).
func (s *statsReader) flush(ctx context.Context, e *Env) {
	e.DB.SetMaxIdleConns(0)
	e.DB.SetMaxIdleConns(e.DB.Stats().MaxOpenConnections)
	if e.Pgx != nil {
		e.Pgx.Reset()
	}
	if e.ReadCommitted != nil {
		e.ReadCommitted.SetMaxIdleConns(0)
		e.ReadCommitted.SetMaxIdleConns(e.ReadCommitted.Stats().MaxOpenConnections)
	}
	// Wait until only this session's own connection is left.
	for range 50 {
		var n int
		err := e.DB.QueryRowContext(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND usename = current_user AND pid <> pg_backend_pid() AND backend_type = 'client backend' AND application_name NOT LIKE 'pgbench%' AND state = 'idle'").Scan(&n)
		if err != nil || n == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
}

// addDelta adds after - before to acc, which may be nil.
func addDelta(acc, before, after map[string]int64) map[string]int64 {
	if acc == nil {
		acc = map[string]int64{}
	}
	for k, v := range after {
		acc[k] += v - before[k]
	}
	return acc
}

// serverPerOp describes the cell's server counters per successful call, in
// a few words; empty when there are none. On PostgreSQL the table's
// counters cover the warm-up too, so they are divided by every successful
// call (Result.Calls); on MariaDB they cover the timed rounds only, and
// include other sessions' statements.
func serverPerOp(r Result) string {
	if r.Server == nil {
		return ""
	}
	m := r.Server
	switch r.Kind {
	case "postgres":
		if r.Calls == 0 {
			return ""
		}
		calls := float64(r.Calls)
		s := fmt.Sprintf("%.2f row writes/call", float64(m["n_tup_ins"]+m["n_tup_upd"])/calls)
		if x, ok := m["xact_commit"]; ok {
			s += fmt.Sprintf(", %.2f commits/call (the database's, every session's)", float64(x)/calls)
		}
		if m["seq_tup_read"] > 0 { // index builds count as scans of nothing
			s += fmt.Sprintf(", %d seq scans reading %d rows", m["seq_scan"], m["seq_tup_read"])
		}
		return s
	case "mysql":
		if r.Ops == 0 {
			return ""
		}
		ops := float64(r.Ops)
		return fmt.Sprintf("%.2f stmts/call, %.3f row-lock waits/call (%.2f ms each)",
			float64(m["Com_insert"]+m["Com_update"]+m["Com_select"])/ops, float64(m["Innodb_row_lock_waits"])/ops,
			float64(m["Innodb_row_lock_time"])/float64(max(1, m["Innodb_row_lock_waits"])))
	}
	return ""
}

// serverRaw lists the counters, for the progress log.
func serverRaw(r Result) string {
	var keys []string
	for k := range r.Server {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%d", k, r.Server[k])
	}
	return strings.TrimSpace(b.String())
}

// clientPerFlight describes getorcreate's own counts: calls per flight
// (a batch, or a call that went alone) and statements per flight.
func clientPerFlight(r Result) string {
	m := r.Client
	if m == nil || m["flights"] == 0 {
		return ""
	}
	return fmt.Sprintf("%.1f calls and %.2f stmts per flight", float64(m["calls"])/float64(m["flights"]), float64(m["statements"])/float64(m["flights"]))
}

// counters is the report's counters cell: the client's, then the server's.
func counters(r Result) string {
	var parts []string
	for _, s := range []string{clientPerFlight(r), serverPerOp(r)} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, "; ")
}

func serverLine(r Result) string {
	if len(r.Server) == 0 && r.Client == nil {
		return ""
	}
	return "[" + counters(r) + "; " + serverRaw(r) + "]"
}
