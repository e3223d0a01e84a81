package dsn

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, c := range []struct{ in, kind, contains string }{
		{"sqlite:/tmp/x.db", "sqlite", "file:/tmp/x.db?"},
		{"sqlite:rel.db", "sqlite", "_txlock=immediate"},
		{"postgres://u@h:5432/db?sslmode=disable", "postgres", "postgres://u@h:5432/db"},
		{"mysql://root@127.0.0.1:3306/test", "mysql", "root@tcp(127.0.0.1:3306)/test"},
		{"mysql://root:pw@db/test?tx_isolation=%27READ-COMMITTED%27", "mysql", "tcp(db:3306)"},
		{"mysql://root@[::1]/test", "mysql", "tcp([::1]:3306)"},
	} {
		p, err := Parse(c.in)
		if err != nil || p.Kind != c.kind || !strings.Contains(p.DataSource, c.contains) {
			t.Errorf("%s: %+v %v, want kind %s and %q", c.in, p, err, c.kind, c.contains)
		}
	}
	for _, bad := range []string{"", "sqlite:", "sqlite::memory:", "sqlite:a?b.db", "mysql://root@h", "redis://x", "postgres://%zz"} {
		if _, err := Parse(bad); !errors.Is(err, ErrBadDSN) {
			t.Errorf("%q: want ErrBadDSN, got %v", bad, err)
		}
	}
}
