// Package clustertest holds the tests of the library beyond one database
// server: a read replica on a streaming standby, PgBouncer in transaction
// mode, a primary killed and its standby promoted under load, and a
// three-node MariaDB Galera cluster with a node killed under load.
//
// They need the servers that .ci/cluster starts, and skip, saying which
// variable to set, without them:
//
//	bash .ci/cluster/pgbouncer up; bash .ci/cluster/pgrepl up sync; bash .ci/cluster/galera up
//	eval "$(bash .ci/cluster/env)"
//	go test -count=1 -v ./internal/clustertest/
//
// .ci/cluster/run does that, one component at a time, and brings each
// down again. Tests that kill servers run the scripts in
// GETORCREATE_CLUSTER_BIN themselves (as root). Each test prints its
// measurements as lines starting with "SCALING |", the source of the
// table in docs/SCALING.md.
package clustertest
