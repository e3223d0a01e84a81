// Package facts checks, against the real servers, the database behaviour
// that the library's design rests on. Each test is named after a label of
// docs/DATABASE-FACTS.md (TestPG6_..., TestMY8_..., TestSQ7_...) and asserts
// what the server here actually does, so a test fails when a server
// upgrade, a configuration change or a wrong reading of the documentation
// makes the fact untrue.
//
// SQLite always runs (a temporary file through modernc.org/sqlite). The
// PostgreSQL and MariaDB/MySQL tests run when their DSNs are set, and skip
// with a message otherwise:
//
//	GETORCREATE_POSTGRES=postgres://postgres@127.0.0.1:5432/test?sslmode=disable
//	GETORCREATE_MYSQL=mysql://root@127.0.0.1:3306/test
//
// Races are produced in a fixed order with two or three real sessions: a
// statement that must block is started in a goroutine, the test waits until
// the server reports it waiting for a lock (pg_stat_activity,
// information_schema.INNODB_TRX), and only then lets the other session go
// on. Every test makes its own uniquely named tables and drops them, and
// every session that changes a setting is discarded afterwards, so the
// tests run in parallel and leave the servers as they found them.
//
// The package has no non-test code and depends on no other package of the
// module.
package facts
