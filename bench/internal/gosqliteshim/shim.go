// Package sqlite stands in for github.com/glebarez/go-sqlite, the pure-Go
// SQLite driver that GORM's github.com/glebarez/sqlite dialector imports.
//
// That driver is a fork of modernc.org/sqlite and registers itself with
// database/sql under the same name, "sqlite", as modernc.org/sqlite, which
// getorcreate uses: linking both into one binary panics at init. The bench
// module replaces the fork with this package, so every SQLite contender,
// GORM included, runs on one driver: modernc.org/sqlite.
package sqlite

import "modernc.org/sqlite"

// Error is the driver's error type; the GORM dialector matches it to
// translate constraint violations.
type Error = sqlite.Error
