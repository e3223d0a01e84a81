package tagd

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
	"golang.org/x/text/unicode/runenames"
)

// MaxNameLen is the longest tag name accepted, in characters after trimming.
const MaxNameLen = 64

// MaxItemLen is the longest item identifier accepted, in characters.
const MaxItemLen = 128

// InputError is a client mistake: the request is refused with 400 and
// nothing is written.
type InputError struct {
	Code    string // machine-readable, e.g. "invalid_tag"
	Message string // for people
}

// Error returns the message.
func (e *InputError) Error() string { return e.Message }

func inputErrorf(code, format string, args ...any) *InputError {
	return &InputError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Canonical returns the identity key and the display form of a submitted tag
// name. The display form is the name trimmed, with inner whitespace collapsed
// to one space, in Unicode NFC; the key is the display form case-folded (and
// normalised again, since folding can undo NFC). So "Go", " go " and "GO"
// share the key "go".
//
// Names must be valid UTF-8, contain no control characters and nothing
// [unsafeRune] refuses, and be 1 to MaxNameLen characters long after
// trimming; "." and ".." are refused, since no URL path can name them.
func Canonical(name string) (key, display string, err error) {
	display, err = clean("tag name", name)
	if err != nil {
		return "", "", err
	}
	if n := utf8.RuneCountInString(display); n == 0 || n > MaxNameLen {
		return "", "", inputErrorf("invalid_tag", "tag name must be 1 to %d characters after trimming, got %d", MaxNameLen, n)
	}
	if display == "." || display == ".." {
		return "", "", inputErrorf("invalid_tag", "a tag cannot be named %q: a URL path cannot hold it", display)
	}
	return foldKey(display), display, nil
}

// canonicalPrefix canonicalises a search prefix like a name, but allows it
// to be empty.
func canonicalPrefix(p string) (string, error) {
	d, err := clean("prefix", p)
	if err != nil {
		return "", err
	}
	if utf8.RuneCountInString(d) > MaxNameLen {
		return "", inputErrorf("invalid_prefix", "prefix must be at most %d characters", MaxNameLen)
	}
	return foldKey(d), nil
}

// foldKey case-folds with a fresh Caser each time: a cases.Caser keeps state
// and is not safe for concurrent use.
func foldKey(s string) string {
	return norm.NFC.String(cases.Fold().String(s))
}

// clean validates s and returns it trimmed, whitespace-collapsed and in NFC.
func clean(what, s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", inputErrorf("invalid_utf8", "%s is not valid UTF-8", what)
	}
	for _, r := range s {
		switch {
		case r == utf8.RuneError:
			// encoding/json turns invalid UTF-8 and lone surrogates into
			// U+FFFD, so seeing it here means the client sent one of those.
			return "", inputErrorf("invalid_utf8", "%s contains invalid UTF-8 or a lone surrogate (U+FFFD)", what)
		case unicode.IsControl(r):
			return "", inputErrorf("invalid_tag", "%s contains the control character %U", what, r)
		}
	}
	d := norm.NFC.String(strings.Join(strings.Fields(s), " "))
	if err := checkVisible(what, d); err != nil {
		return "", err
	}
	return d, nil
}

// MaxMarks is the most combining marks (nonspacing or enclosing) one
// character may carry, as UTS #39 section 5.4 suggests: more stack above and
// below the line into the text around a name.
const MaxMarks = 4

// checkVisible refuses what would make a name read differently from what it
// is, after UTS #39 (security) and UAX #31 (identifiers): characters that
// are invisible or reorder the text around them (see unsafeRune), more than
// MaxMarks combining marks on one character, the same mark twice in a row,
// and a mark with no character to sit on. s is in NFC; the marks are
// counted in NFD, as UTS #39 does.
func checkVisible(what, s string) error {
	rs := []rune(s)
	for i, r := range rs {
		if why := unsafeRune(rs, i); why != "" {
			return inputErrorf("unsafe_character", "%s contains %s, %s", what, runeName(r), why)
		}
	}
	marks := 0
	var prev rune = ' '
	for _, r := range norm.NFD.String(s) {
		if !unicode.In(r, unicode.Mn, unicode.Me) {
			marks, prev = 0, r
			continue
		}
		marks++
		switch {
		case prev == ' ' && marks == 1:
			return inputErrorf("unsafe_character", "%s has the combining mark %s with no character before it to sit on", what, runeName(r))
		case marks > MaxMarks:
			return inputErrorf("unsafe_character", "%s stacks more than %d combining marks on one character", what, MaxMarks)
		case r == prev:
			return inputErrorf("unsafe_character", "%s repeats the combining mark %s on one character", what, runeName(r))
		}
		prev = r
	}
	return nil
}

// unsafeRune says why rs[i] may not appear in a name, or "" when it may. It
// refuses bidirectional controls (U+202E can show "invoice\u202egpj.exe" as
// "invoiceexe.jpg"), the Default_Ignorable_Code_Points (zero-width spaces,
// U+FEFF, fillers: invisible, so two different names look the same or a
// name looks blank), every other format character, private-use,
// noncharacter and unassigned code points, and U+2800 (a blank braille
// pattern). UAX #31 keeps three in context: ZWJ and ZWNJ after a virama
// (A2, B) and ZWNJ between letters of a joining script (A1, with the script
// standing in for the Joining_Type Go's tables lack); and, as for UAX #31's
// hashtags, ZWJ between two symbols and VS15/VS16 after one, which emoji
// sequences need.
func unsafeRune(rs []rune, i int) string {
	r := rs[i]
	var before, after rune
	if i > 0 {
		before = rs[i-1]
	}
	if i+1 < len(rs) {
		after = rs[i+1]
	}
	switch {
	case r == 0x061C || r == 0x200E || r == 0x200F || (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069):
		return "a bidirectional control, which changes the reading order of the text after it"
	case (r == 0x200C || r == 0x200D) && isVirama(before):
		return ""
	case r == 0x200C && joining(before) && joining(after):
		return ""
	case r == 0x200D && isEmojiPart(before) && unicode.Is(unicode.So, after):
		return ""
	case (r == 0xFE0E || r == 0xFE0F) && (unicode.Is(unicode.So, before) || after == 0x20E3):
		return ""
	case defaultIgnorable(r):
		return "an invisible (default-ignorable) character"
	case unicode.Is(unicode.Cf, r):
		return "a format character"
	case unicode.Is(unicode.Co, r):
		return "a private-use character, which has no agreed appearance"
	case unicode.Is(unicode.Noncharacter_Code_Point, r):
		return "a noncharacter"
	case r == 0x2800:
		return "an invisible character (a blank braille pattern)"
	case !unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S, unicode.Zs):
		return "a code point Unicode " + unicode.Version + " does not assign"
	}
	return ""
}

// defaultIgnorable is Unicode's derived Default_Ignorable_Code_Point
// (DerivedCoreProperties.txt), built from the properties Go's tables have.
func defaultIgnorable(r rune) bool {
	if unicode.Is(unicode.Other_Default_Ignorable_Code_Point, r) || unicode.Is(unicode.Variation_Selector, r) {
		return true
	}
	return unicode.Is(unicode.Cf, r) && !unicode.Is(unicode.White_Space, r) && !(r >= 0xFFF9 && r <= 0xFFFB) &&
		!(r >= 0x13430 && r <= 0x1343F) && !unicode.Is(unicode.Prepended_Concatenation_Mark, r)
}

func isVirama(r rune) bool { return r != 0 && norm.NFC.PropertiesString(string(r)).CCC() == 9 }

var joiningScripts = []*unicode.RangeTable{unicode.Arabic, unicode.Syriac, unicode.Nko, unicode.Mongolian,
	unicode.Mandaic, unicode.Manichaean, unicode.Psalter_Pahlavi, unicode.Adlam, unicode.Hanifi_Rohingya,
	unicode.Sogdian, unicode.Phags_Pa}

func joining(r rune) bool { return unicode.IsLetter(r) && unicode.In(r, joiningScripts...) }

// isEmojiPart is a symbol, a skin-tone modifier or VS16: what may end the
// emoji before a ZWJ.
func isEmojiPart(r rune) bool {
	return unicode.Is(unicode.So, r) || (r >= 0x1F3FB && r <= 0x1F3FF) || r == 0xFE0F
}

func runeName(r rune) string {
	if n := runenames.Name(r); n != "" && !strings.HasPrefix(n, "<") {
		return fmt.Sprintf("%U (%s)", r, n)
	}
	return fmt.Sprintf("%U", r)
}

// cleanItem validates an item identifier from the URL.
func cleanItem(item string) (string, error) {
	if !utf8.ValidString(item) {
		return "", inputErrorf("invalid_item", "item is not valid UTF-8")
	}
	for _, r := range item {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return "", inputErrorf("invalid_item", "item contains the character %U, which is not allowed", r)
		}
	}
	if n := utf8.RuneCountInString(item); n == 0 || n > MaxItemLen || strings.TrimSpace(item) != item {
		return "", inputErrorf("invalid_item", "item must be 1 to %d characters without leading or trailing spaces", MaxItemLen)
	}
	// Items are shown on the page too.
	if err := checkVisible("item", item); err != nil {
		return "", err
	}
	return item, nil
}
