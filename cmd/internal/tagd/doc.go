// Package tagd is the tag service built on getorcreate: people submit tags,
// a known tag's count goes up, an unknown one is created, and items carry
// several tags. It stays exact under any concurrency, in one process or
// several on one PostgreSQL or MariaDB database, because every write is one
// of the library's race-free calls.
//
// [Store] holds the data (tables created and migrated by [OpenStore]),
// [Server] is the HTTP handler (JSON API, embedded web page, /healthz,
// /readyz, /metrics), and [Run] wires both to a listener with graceful
// shutdown; cmd/tagd only parses flags into a [Config]. Tag identity is
// [Canonical]'s key. See docs/TAGD.md for the API and operations.
package tagd
