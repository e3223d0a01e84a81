package postgres

import (
	"strings"
	"testing"
)

// FuzzQuote checks that a quoted identifier is one double-quoted token per
// dot-separated part, whose content unquotes to the part: no quote inside
// can end it early.
func FuzzQuote(f *testing.F) {
	for _, s := range []string{"tags", `a"b`, `"; DROP TABLE x; --`, "s.t", `""`, "ü"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ident string) {
		q := quote(ident)
		parts := strings.Split(ident, ".")
		rest := q
		for i, p := range parts {
			if !strings.HasPrefix(rest, `"`) {
				t.Fatalf("%q: part %d does not open with a quote: %q", ident, i, rest)
			}
			// Scan to the closing quote: a lone " closes, "" is an escaped quote.
			j, content := 1, strings.Builder{}
			for ; j < len(rest); j++ {
				if rest[j] == '"' {
					if j+1 < len(rest) && rest[j+1] == '"' {
						content.WriteByte('"')
						j++
						continue
					}
					break
				}
				content.WriteByte(rest[j])
			}
			if j >= len(rest) || content.String() != p {
				t.Fatalf("%q: part %d unquotes to %q, want %q (quoted %q)", ident, i, content.String(), p, q)
			}
			rest = rest[j+1:]
			if i < len(parts)-1 {
				if !strings.HasPrefix(rest, ".") {
					t.Fatalf("%q: parts not separated by a dot in %q", ident, q)
				}
				rest = rest[1:]
			}
		}
		if rest != "" {
			t.Fatalf("%q: trailing %q after the last part of %q", ident, rest, q)
		}
	})
}
