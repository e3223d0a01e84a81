package mysql

import (
	"testing"

	"github.com/getorcreate/getorcreate/internal/quotetest"
)

// FuzzQuote checks that a quoted identifier is one backquoted token per
// dot-separated part, whose content unquotes to the part.
func FuzzQuote(f *testing.F) {
	for _, s := range []string{"tags", "a`b", "`; DROP TABLE x; --", "s.t", "``", "ü"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ident string) { quotetest.Check(t, ident, quote(ident), '`') })
}
