package tagd

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
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
// Names must be valid UTF-8, contain no control characters, and be 1 to
// MaxNameLen characters long after trimming.
func Canonical(name string) (key, display string, err error) {
	display, err = clean("tag name", name)
	if err != nil {
		return "", "", err
	}
	if n := utf8.RuneCountInString(display); n == 0 || n > MaxNameLen {
		return "", "", inputErrorf("invalid_tag", "tag name must be 1 to %d characters after trimming, got %d", MaxNameLen, n)
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
	return norm.NFC.String(strings.Join(strings.Fields(s), " ")), nil
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
	return item, nil
}
