// Package quotetest checks quoted identifiers for the dialects' fuzz tests.
package quotetest

import (
	"strings"
	"testing"
)

// Check fails t unless quoted is one q-quoted token per dot-separated part
// of ident, each unquoting to its part: no q inside a part can end the token
// early, whatever ident holds.
func Check(t *testing.T, ident, quoted string, q byte) {
	t.Helper()
	parts := strings.Split(ident, ".")
	rest := quoted
	for i, p := range parts {
		if rest == "" || rest[0] != q {
			t.Fatalf("%q: part %d does not open with %c: %q", ident, i, q, rest)
		}
		var content strings.Builder
		j := 1
		for ; j < len(rest); j++ {
			if rest[j] == q {
				if j+1 < len(rest) && rest[j+1] == q { // a doubled quote is one quote
					content.WriteByte(q)
					j++
					continue
				}
				break
			}
			content.WriteByte(rest[j])
		}
		if j >= len(rest) || content.String() != p {
			t.Fatalf("%q: part %d unquotes to %q, want %q (quoted %q)", ident, i, content.String(), p, quoted)
		}
		rest = rest[j+1:]
		if i < len(parts)-1 {
			if !strings.HasPrefix(rest, ".") {
				t.Fatalf("%q: parts not separated by a dot in %q", ident, quoted)
			}
			rest = rest[1:]
		}
	}
	if rest != "" {
		t.Fatalf("%q: trailing %q after the last part of %q", ident, rest, quoted)
	}
}
