// Package sqlexpr reads SQL expressions as tokens, for the few places the
// library must compare or take apart SQL text it did not write: a partial
// index's predicate against Config.Where, the WHERE of a SQLite CREATE
// INDEX, and the columns a predicate names. It is a lexer, not a parser: it
// knows string literals, quoted identifiers, numbers, words and operators,
// and nothing of SQL's grammar.
package sqlexpr

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Kind is what a token is.
type Kind uint8

// The kinds of token.
const (
	Word   Kind = iota // a keyword or an unquoted identifier
	Ident              // a quoted identifier: "x", `x` or [x]
	String             // a string literal, quotes included
	Number             // a numeric literal
	Punct              // an operator or punctuation: ( ) , :: <> = ...
)

// Token is one token of an expression.
type Token struct {
	Kind Kind
	Text string // as written; for Ident, the name without its quotes
	Pos  int    // byte offset in the input
}

// Tokens splits s into tokens, dropping whitespace and comments. An
// unterminated literal or identifier runs to the end of s.
func Tokens(s string) []Token {
	var out []Token
	for i := 0; i < len(s); {
		r, w := utf8.DecodeRuneInString(s[i:])
		switch {
		case unicode.IsSpace(r):
			i += w
		case strings.HasPrefix(s[i:], "--"):
			j := strings.IndexByte(s[i:], '\n')
			if j < 0 {
				return out
			}
			i += j + 1
		case strings.HasPrefix(s[i:], "/*"):
			j := strings.Index(s[i+2:], "*/")
			if j < 0 {
				return out
			}
			i += j + 4
		case r == '\'':
			j, _ := quoted(s, i, '\'')
			out = append(out, Token{String, s[i:j], i})
			i = j
		case r == '"' || r == '`':
			j, closed := quoted(s, i, byte(r))
			name := s[i+1 : j]
			if closed {
				name = s[i+1 : j-1]
			}
			out = append(out, Token{Ident, strings.ReplaceAll(name, string([]rune{r, r}), string(r)), i})
			i = j
		case r == '[':
			j := strings.IndexByte(s[i:], ']')
			if j < 0 {
				out = append(out, Token{Ident, s[i+1:], i})
				return out
			}
			out = append(out, Token{Ident, s[i+1 : i+j], i})
			i += j + 1
		case r >= '0' && r <= '9' || r == '.' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			j := i
			for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '.' || s[j] == 'e' || s[j] == 'E' ||
				(s[j] == '+' || s[j] == '-') && j > i && (s[j-1] == 'e' || s[j-1] == 'E')) {
				j++
			}
			out = append(out, Token{Number, s[i:j], i})
			i = j
		case r == '_' || unicode.IsLetter(r):
			j := i
			for j < len(s) {
				r, w := utf8.DecodeRuneInString(s[j:])
				if r != '_' && r != '$' && !unicode.IsLetter(r) && !unicode.IsDigit(r) {
					break
				}
				j += w
			}
			out = append(out, Token{Word, s[i:j], i})
			i = j
		default:
			n := w
			for _, op := range []string{"::", "<>", "!=", "<=", ">=", "||", "==", "->>", "->"} {
				if strings.HasPrefix(s[i:], op) {
					n = len(op)
					break
				}
			}
			out = append(out, Token{Punct, s[i : i+n], i})
			i += n
		}
	}
	return out
}

// quoted returns the end (exclusive) of the literal or identifier opened by
// q at s[i], where a doubled q stands for itself, and whether it was closed.
func quoted(s string, i int, q byte) (int, bool) {
	for j := i + 1; j < len(s); j++ {
		if s[j] != q {
			continue
		}
		if j+1 < len(s) && s[j+1] == q {
			j++
			continue
		}
		return j + 1, true
	}
	return len(s), false
}

// Normalize returns a form of the expression in which the differences that
// never change its meaning are gone, so that two texts can be compared:
// whitespace and comments, the case of keywords and unquoted identifiers,
// quotes around an identifier that needs none, and parentheses around the
// whole expression. It keeps everything else (literals, casts, operators,
// inner parentheses) as written.
func Normalize(s string) string {
	toks := Tokens(s)
	for len(toks) >= 2 && toks[0].Text == "(" && toks[len(toks)-1].Text == ")" && closes(toks) == len(toks)-1 {
		toks = toks[1 : len(toks)-1]
	}
	parts := make([]string, len(toks))
	for i, t := range toks {
		switch t.Kind {
		case Word:
			parts[i] = strings.ToLower(t.Text)
		case Ident:
			if plain(t.Text) {
				parts[i] = t.Text
			} else {
				parts[i] = `"` + strings.ReplaceAll(t.Text, `"`, `""`) + `"`
			}
		default:
			parts[i] = t.Text
		}
	}
	return strings.Join(parts, " ")
}

// closes returns the index of the token that closes the parenthesis at
// toks[0], or -1.
func closes(toks []Token) int {
	depth := 0
	for i, t := range toks {
		if t.Kind != Punct {
			continue
		}
		switch t.Text {
		case "(":
			depth++
		case ")":
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

// plain reports whether a quoted identifier means the same unquoted: a
// lower-case name of letters, digits and underscores.
func plain(name string) bool {
	if name == "" || name[0] >= '0' && name[0] <= '9' {
		return false
	}
	for _, r := range name {
		if r != '_' && (r < 'a' || r > 'z') && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}

// Names returns the identifiers the expression names, quoted or not, in
// the order they first appear: a superset of the columns it reads (it also
// holds keywords, function and type names, which callers filter against
// the table's columns). Unquoted names are lower-cased.
func Names(s string) []string {
	var out []string
	seen := map[string]bool{}
	for _, t := range Tokens(s) {
		name := t.Text
		switch t.Kind {
		case Word:
			name = strings.ToLower(name)
		case Ident:
		default:
			continue
		}
		if !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	return out
}

// IndexWhere returns the predicate of a CREATE INDEX statement, as written
// after the WHERE that follows its column list, and whether it has one.
func IndexWhere(create string) (string, bool) {
	toks := Tokens(create)
	for i, t := range toks {
		if t.Kind != Punct || t.Text != "(" {
			continue
		}
		end := closes(toks[i:])
		if end < 0 || i+end+1 >= len(toks) {
			return "", false
		}
		w := toks[i+end+1]
		if w.Kind != Word || !strings.EqualFold(w.Text, "where") || i+end+2 >= len(toks) {
			return "", false
		}
		return strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(create[toks[i+end+2].Pos:]), ";")), true
	}
	return "", false
}
