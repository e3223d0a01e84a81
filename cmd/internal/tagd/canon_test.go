package tagd

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
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
	// Past maxBuckets, new clients share one bucket: memory stays bounded.
	l = newLimiter(1, 1)
	for i := range maxBuckets + 10 {
		l.allow(strconv.Itoa(i), t0)
	}
	if len(l.b) > maxBuckets+1 {
		t.Fatalf("%d buckets, want at most %d", len(l.b), maxBuckets+1)
	}
	if ok, _ := l.allow("newcomer", t0); ok {
		t.Fatal("a new client past the cap got a bucket of its own, not the shared one")
	}
}

func TestClientKey(t *testing.T) {
	for _, c := range []struct {
		addr   string
		prefix int
		want   string
	}{
		{"192.0.2.7:5000", 64, "192.0.2.7"},
		{"[::ffff:192.0.2.7]:5000", 64, "192.0.2.7"}, // IPv4-mapped is IPv4
		{"[2001:db8:1:2:aaaa:bbbb:cccc:dddd]:443", 64, "2001:db8:1:2::/64"},
		{"[2001:db8:1:2::1]:1", 64, "2001:db8:1:2::/64"},
		{"[2001:db8:1:2::1]:1", 48, "2001:db8:1::/48"},
		{"[2001:db8:1:2::1]:1", 128, "2001:db8:1:2::1"},
		{"[fe80::1%eth0]:1", 64, "fe80::/64"},
	} {
		if got := clientKey(c.addr, c.prefix); got != c.want {
			t.Errorf("clientKey(%q, %d) = %q, want %q", c.addr, c.prefix, got, c.want)
		}
	}
}

// TestNamesMustNotDeceive refuses what would make a name read differently
// from what it is, and keeps what real names in many scripts need.
func TestNamesMustNotDeceive(t *testing.T) {
	for _, bad := range []string{
		"invoice\u202egpj.exe", // RIGHT-TO-LEFT OVERRIDE: shows as "invoiceexe.jpg"
		"a\u2067b\u2069",       // RIGHT-TO-LEFT ISOLATE
		"a\u200eb", "a\u200fb", "a\u061cb", "a\u202ab",
		"zero\u200bwidth", "\u200b", "\ufeffbom", "a\u2060b", "a\u00adb", // zero-width, BOM, word joiner, soft hyphen
		"\u3164", "a\u115fb", "\u2800", "a\u034fb", // fillers, blank braille, CGJ
		"x\ufe0f",              // VS16 on a letter
		"a\u200db", "a\u200cb", // ZWJ, ZWNJ between Latin letters
		"a\U000e0041b",                         // a tag character
		"a\ue000b", "a\U0010fffdb", "a\ufdd0b", // private use, noncharacter
		"a\U0003ffffb",                    // unassigned
		"Z\u0301\u0302\u0303\u0304\u0305", // five marks on one letter
		"a\u0301\u0301",                   // the same mark twice
		"\u0301abc", "ab \u0301c",         // a mark with nothing to sit on
		"\u0600\u0661", "a\U00013430b", // format characters that are not default-ignorable
		".", "..",
	} {
		_, _, err := Canonical(bad)
		ie, ok := err.(*InputError)
		if !ok || (ie.Code != "unsafe_character" && ie.Code != "invalid_tag") {
			t.Errorf("Canonical(%+q) = %v, want an unsafe_character or invalid_tag InputError", bad, err)
			continue
		}
		if !strings.Contains(ie.Message, "U+") && bad != "." && bad != ".." && !strings.Contains(ie.Message, "marks") {
			t.Errorf("Canonical(%+q): message %q does not name the character", bad, ie.Message)
		}
	}
	for _, good := range []string{
		"שלום עולם", "مرحبا", "日本語", "ΣΊΣΥΦΟΣ", "Ελληνικά", "Straße",
		"می\u200cخواهم",            // Persian: ZWNJ between joining letters (UAX #31 A1)
		"क्\u200dष",                // Devanagari: ZWJ after a virama (A2)
		"\u0915\u094d\u200c\u0937", // ZWNJ after a virama (B)
		"👨\u200d👩\u200d👧",          // an emoji ZWJ sequence
		"❤\ufe0f", "1\ufe0f\u20e3", // VS16 after a symbol, a keycap
		"Ti\u1ebfng Vi\u1ec7t", "e\u0323\u0302", // Vietnamese: two marks
		"C/C++ ?#%", "...",
	} {
		if _, _, err := Canonical(good); err != nil {
			t.Errorf("Canonical(%+q) refused: %v", good, err)
		}
	}
}

// TestReadObject checks the strict JSON reading, and that its messages
// speak of the API, not of Go.
func TestReadObject(t *testing.T) {
	var name *string
	var tags []string
	fields := map[string]fieldReader{"name": stringField(&name), "tags": stringsField(&tags)}
	for _, c := range []struct{ body, want string }{
		{`{"name":"a","name":"b"}`, `appears more than once`},
		{`{"Name":"a"}`, `unknown field "Name"`},
		{`{"NAME":"a"}`, `unknown field "NAME"`},
		{`{"name":5}`, `"name" must be a string, not a number`},
		{`{"name":{}}`, `not an object`},
		{`{"tags":"a"}`, `"tags" must be an array of strings, not a string`},
		{`{"tags":["a",1]}`, `tags[1] must be a string, not a number`},
		{`[]`, `must be a JSON object`},
		{`{"name":"a"} {}`, `more than one JSON value`},
		{`{"name":"a"`, `ends before`},
		{`{"name" "a"}`, `not valid JSON (at byte`},
	} {
		name, tags = nil, nil
		err := readObject([]byte(c.body), fields)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", c.body, err, c.want)
			continue
		}
		for _, goSpeak := range []string{"Go value", "struct", "*string", "[]string", "json:", "unmarshal"} {
			if strings.Contains(err.Error(), goSpeak) {
				t.Errorf("%s: the message %q speaks Go (%q)", c.body, err, goSpeak)
			}
		}
	}
	if err := readObject([]byte(`{"name":"x","tags":["a","b"]}`), fields); err != nil || *name != "x" || len(tags) != 2 {
		t.Fatalf("a good body: %v %v %v", err, name, tags)
	}
}

// TestErrorCodes checks that every error code tagd answers with is in
// docs/TAGD.md's table with its status, that the table lists no other, and
// that the code passes no literal code the table lacks.
func TestErrorCodes(t *testing.T) {
	doc, err := os.ReadFile("../../../docs/TAGD.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile(`(?m)^\| (\d{3}) \| (.*?) \|`)
	documented := map[string]int{}
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		status, _ := strconv.Atoi(m[1])
		for _, c := range regexp.MustCompile("`([a-z0-9_]+)`").FindAllStringSubmatch(m[2], -1) {
			documented[c[1]] = status
		}
	}
	for code, status := range errorStatus {
		if documented[code] != status {
			t.Errorf("error code %q (%d) is not in docs/TAGD.md's table with its status (found %d)", code, status, documented[code])
		}
	}
	for code := range documented {
		if _, ok := errorStatus[code]; !ok {
			t.Errorf("docs/TAGD.md lists %q, which tagd never answers", code)
		}
	}
	used := regexp.MustCompile(`(?:fail\((?:w|sw), r, |inputErrorf\()"([a-z0-9_]+)"`)
	files, _ := filepath.Glob("*.go")
	n := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, _ := os.ReadFile(f)
		for _, m := range used.FindAllStringSubmatch(string(b), -1) {
			n++
			if _, ok := errorStatus[m[1]]; !ok {
				t.Errorf("%s answers with %q, which errorStatus lacks", f, m[1])
			}
		}
	}
	if n < 20 {
		t.Fatalf("found only %d uses of error codes in the source: the pattern is stale", n)
	}
}
