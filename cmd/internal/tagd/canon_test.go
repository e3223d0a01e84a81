package tagd

import (
	"strings"
	"testing"
	"time"
)

func TestCanonical(t *testing.T) {
	for _, c := range []struct{ in, key, display string }{
		{"Go", "go", "Go"},
		{" go ", "go", "go"},
		{"GO", "go", "GO"},
		{"big \u00a0  data", "big data", "big data"},
		{"Stra\u00dfe", "strasse", "Stra\u00dfe"},
		{"e\u0301cole", "\u00e9cole", "\u00e9cole"}, // decomposed in, NFC out
		{"\u0130stanbul", "i\u0307stanbul", "\u0130stanbul"},
		{"ΣΊΣΥΦΟΣ", "σίσυφοσ", "ΣΊΣΥΦΟΣ"}, // full folding, not lowercasing: final sigma too
		{"\u212b", "\u00e5", "\u00c5"},    // the Angstrom sign is NFC-normalised to Å
		{strings.Repeat("é", 64), strings.Repeat("é", 64), strings.Repeat("é", 64)},
	} {
		key, display, err := Canonical(c.in)
		if err != nil || key != c.key || display != c.display {
			t.Errorf("Canonical(%q) = %q, %q, %v; want %q, %q", c.in, key, display, err, c.key, c.display)
		}
	}
	for _, bad := range []string{"", "   ", "\u3000", strings.Repeat("x", 65), strings.Repeat("e\u0301", 65),
		"a\x00b", "a\tb", "a\u007fb", "a\u009fb", "a\xffb", "a\ufffdb"} {
		if _, _, err := Canonical(bad); err == nil {
			t.Errorf("Canonical(%q) accepted", bad)
		} else if _, ok := err.(*InputError); !ok {
			t.Errorf("Canonical(%q): %T, want *InputError", bad, err)
		}
	}
	// 64 decomposed characters are 128 runes in, 64 after NFC: the limit
	// counts what is stored.
	if _, d, err := Canonical(strings.Repeat("e\u0301", 64)); err != nil || len([]rune(d)) != 64 {
		t.Errorf("64 decomposed é: %q, %v", d, err)
	}
}

func FuzzCanonical(f *testing.F) {
	for _, s := range []string{"Go", " ß ", "e\u0301", "ΣΊΣΥΦΟΣ", "\u212b", "a\tb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		key, display, err := Canonical(s)
		if err != nil {
			return
		}
		// The key is a fixed point: canonicalising any accepted form again,
		// or the display form, gives the same key.
		k2, d2, err := Canonical(display)
		if err != nil || k2 != key || d2 != display {
			t.Fatalf("%q: display %q gives %q, %q, %v; key %q", s, display, k2, d2, err, key)
		}
		if k3 := foldKey(key); k3 != key {
			t.Fatalf("%q: key %q folds again to %q", s, key, k3)
		}
	})
}

func TestLimiter(t *testing.T) {
	l := newLimiter(2, 3)
	t0 := time.Unix(1000, 0)
	for i := 0; i < 3; i++ {
		if ok, _ := l.allow("a", t0); !ok {
			t.Fatalf("request %d within the burst refused", i)
		}
	}
	ok, wait := l.allow("a", t0)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("4th request: ok %v, wait %v; want refused, 500ms", ok, wait)
	}
	if ok, _ := l.allow("b", t0); !ok {
		t.Fatal("another client shares a's bucket")
	}
	if ok, _ := l.allow("a", t0.Add(500*time.Millisecond)); !ok {
		t.Fatal("refill at 2/s did not happen")
	}
	l.allow("c", t0.Add(10*time.Second)) // sweeps idle buckets
	if len(l.b) != 1 {
		t.Fatalf("%d buckets after the sweep, want 1", len(l.b))
	}
}
