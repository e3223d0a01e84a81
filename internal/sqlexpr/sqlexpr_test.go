package sqlexpr

import (
	"slices"
	"testing"
)

func TestNormalize(t *testing.T) {
	same := [][]string{
		{"deleted_at IS NULL", "(deleted_at IS NULL)", "  deleted_at   is null ", `("deleted_at" IS NULL)`, "((deleted_at IS NULL))", "deleted_at /* soft */ IS NULL"},
		{"((status <> 'deleted'::text) AND (NOT archived))", "(status <> 'deleted'::text) AND (NOT archived)", "(STATUS<>'deleted'::TEXT) and (not ARCHIVED)"},
		{`"Deleted" IS NULL`, `("Deleted" IS NULL)`},
	}
	for _, group := range same {
		for _, s := range group[1:] {
			if Normalize(s) != Normalize(group[0]) {
				t.Errorf("Normalize(%q) = %q, want %q", s, Normalize(s), Normalize(group[0]))
			}
		}
	}
	differ := [][2]string{
		{"deleted_at IS NULL", "deleted_at IS NOT NULL"},
		{"status <> 'deleted'", "status <> 'Deleted'"},
		{"status <> 'deleted'", "status <> 'deleted'::text"},
		{`"Deleted" IS NULL`, "deleted IS NULL"},
		{"(a) AND (b)", "a AND b"},
		{"(a OR b) AND c", "a OR b AND c"},
		{"x = 'it''s'", "x = 'it'"},
	}
	for _, d := range differ {
		if Normalize(d[0]) == Normalize(d[1]) {
			t.Errorf("%q and %q normalize alike (%q)", d[0], d[1], Normalize(d[0]))
		}
	}
}

func TestNames(t *testing.T) {
	got := Names(`(status <> 'deleted col'::text) AND NOT "Archived" AND deleted_at IS NULL AND Status = 1`)
	want := []string{"status", "text", "and", "not", "Archived", "deleted_at", "is", "null"}
	if !slices.Equal(got, want) {
		t.Fatalf("Names = %q, want %q", got, want)
	}
}

func TestIndexWhere(t *testing.T) {
	for in, want := range map[string]string{
		`CREATE UNIQUE INDEX t_live ON t (name) WHERE deleted_at IS NULL`:            "deleted_at IS NULL",
		`CREATE UNIQUE INDEX "a (b" ON "t(x" ("na)me", lower(x)) where (d = 'x)') ;`: "(d = 'x)')",
		`CREATE UNIQUE INDEX i ON t (name)`:                                          "",
		`CREATE INDEX i ON t (name) -- WHERE x`:                                      "",
	} {
		got, ok := IndexWhere(in)
		if got != want || ok != (want != "") {
			t.Errorf("IndexWhere(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func FuzzTokens(f *testing.F) {
	for _, s := range []string{"a = 'b''c'", `"x""y" IS NULL`, "[a b] <> 1.5e-3", "/* x", "'open", `"open`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, tok := range Tokens(s) {
			if tok.Pos < 0 || tok.Pos > len(s) {
				t.Fatalf("token %+v outside %q", tok, s)
			}
		}
		Normalize(s)
		IndexWhere(s)
		Names(s)
	})
}
