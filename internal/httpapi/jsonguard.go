package httpapi

import (
	"fmt"
	"io"
	"net/http"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Bounds of the JSON bodies the API takes. Every object they hold has at most a dozen keys
// (job.Fields and a campaign id), so an object over maxJSONKeys, or a body nested deeper than
// maxJSONDepth, is refused by encoding/json anyway: refusing it here bounds what the guard keeps.
const (
	maxJSONKeys  = 64
	maxJSONDepth = 32
	// maxJSONKeyLen: a longer key is no field of ours (encoding/json refuses it as unknown), so
	// it is not kept for the duplicate check.
	maxJSONKeyLen = 64
)

// jsonGuard passes a JSON body through unchanged on its way to encoding/json and refuses what
// that package lets by: a key given twice in one object, also when it differs only by case
// (encoding/json matches keys case-insensitively and keeps the last, so
// {"campaign":"a","Campaign":"b"} would be campaign b), invalid UTF-8 in a string, and a \u
// escape that is half a surrogate pair (both would become U+FFFD, where CSV and JSONL refuse
// them). It reads byte by byte as a streaming lexer, keeping only the keys of the objects still
// open, so a body costs it no more than maxJSONDepth × maxJSONKeys short keys whatever its size.
// It trusts encoding/json to refuse bad syntax; it only must not misread valid JSON.
type jsonGuard struct {
	r     io.Reader
	err   error
	stack []jsonFrame

	inString, escaped, isKey, longKey bool
	hex                               int    // hex digits of a \u escape still to read (0: none)
	code                              rune   // the \u escape being read
	high                              rune   // a high surrogate waiting for its low half
	utf                               []byte // an incomplete UTF-8 sequence in a string
	key                               []byte // the key being read, unescaped
}

type jsonFrame struct {
	object, expectKey bool
	keys              map[string]bool // folded keys seen (objects only)
}

func newJSONGuard(r io.Reader) *jsonGuard { return &jsonGuard{r: r} }

func (g *jsonGuard) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.r.Read(p)
	for _, c := range p[:n] {
		if g.err = g.byte(c); g.err != nil {
			return n, g.err
		}
	}
	return n, err
}

func badJSON(format string, args ...any) error {
	return &bodyError{http.StatusBadRequest, CodeBadJSON, fmt.Sprintf(format, args...)}
}

func (g *jsonGuard) byte(c byte) error {
	if g.inString {
		return g.stringByte(c)
	}
	top := len(g.stack) - 1
	switch c {
	case '"':
		g.inString = true
		g.isKey = top >= 0 && g.stack[top].object && g.stack[top].expectKey
		g.key, g.longKey = g.key[:0], false
	case '{', '[':
		if len(g.stack) >= maxJSONDepth {
			return badJSON("the body is nested deeper than %d levels", maxJSONDepth)
		}
		f := jsonFrame{object: c == '{', expectKey: c == '{'}
		if f.object {
			f.keys = map[string]bool{}
		}
		g.stack = append(g.stack, f)
	case '}', ']':
		if top >= 0 {
			g.stack = g.stack[:top]
		}
	case ':':
		if top >= 0 {
			g.stack[top].expectKey = false
		}
	case ',':
		if top >= 0 && g.stack[top].object {
			g.stack[top].expectKey = true
		}
	}
	return nil
}

func (g *jsonGuard) stringByte(c byte) error {
	switch {
	case g.hex > 0:
		d := hexDigit(c)
		if d < 0 {
			g.hex = 0
			return nil // bad syntax: encoding/json says so
		}
		g.code = g.code<<4 | d
		if g.hex--; g.hex == 0 {
			return g.escapedRune(g.code)
		}
		return nil
	case g.escaped:
		g.escaped = false
		if c == 'u' {
			g.hex, g.code = 4, 0
			return nil
		}
		if g.high != 0 {
			return badJSON(`a string holds \u%04X, half of a UTF-16 surrogate pair`, g.high)
		}
		g.keyRune(unescape(c))
		return nil
	case g.high != 0 && c != '\\':
		return badJSON(`a string holds \u%04X, half of a UTF-16 surrogate pair`, g.high)
	case len(g.utf) > 0 || c >= utf8.RuneSelf:
		return g.utf8Byte(c)
	case c == '\\':
		g.escaped = true
	case c == '"':
		g.inString = false
		if g.isKey {
			return g.endKey()
		}
	default:
		g.keyRune(rune(c))
	}
	return nil
}

func hexDigit(c byte) rune {
	switch {
	case '0' <= c && c <= '9':
		return rune(c - '0')
	case 'a' <= c && c <= 'f':
		return rune(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return rune(c-'A') + 10
	}
	return -1
}

// unescape is the character of a one-letter escape (\n …); the letter itself otherwise.
func unescape(c byte) rune {
	switch c {
	case 'b':
		return '\b'
	case 'f':
		return '\f'
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	}
	return rune(c)
}

// escapedRune takes the code unit of a \u escape: a surrogate must pair with the next one.
func (g *jsonGuard) escapedRune(u rune) error {
	switch {
	case g.high != 0:
		r := utf16.DecodeRune(g.high, u)
		if r == unicode.ReplacementChar {
			return badJSON(`a string holds \u%04X, half of a UTF-16 surrogate pair`, g.high)
		}
		g.high = 0
		g.keyRune(r)
	case u >= 0xD800 && u < 0xDC00:
		g.high = u
	case u >= 0xDC00 && u < 0xE000:
		return badJSON(`a string holds \u%04X, half of a UTF-16 surrogate pair`, u)
	default:
		g.keyRune(u)
	}
	return nil
}

// utf8Byte collects a multi-byte sequence and checks it once complete.
func (g *jsonGuard) utf8Byte(c byte) error {
	if len(g.utf) > 0 && (c < 0x80 || c > 0xBF) {
		return badJSON("a string is not valid UTF-8")
	}
	g.utf = append(g.utf, c)
	if !utf8.FullRune(g.utf) {
		return nil
	}
	r, size := utf8.DecodeRune(g.utf)
	if r == utf8.RuneError && size == 1 || size != len(g.utf) {
		return badJSON("a string is not valid UTF-8")
	}
	g.utf = g.utf[:0]
	g.keyRune(r)
	return nil
}

func (g *jsonGuard) keyRune(r rune) {
	if !g.isKey || g.longKey {
		return
	}
	if len(g.key)+utf8.RuneLen(r) > maxJSONKeyLen {
		g.longKey = true
		return
	}
	g.key = utf8.AppendRune(g.key, r)
}

// endKey records a key in its object, folded as encoding/json matches keys, and refuses a
// second key of the same fold.
func (g *jsonGuard) endKey() error {
	f := &g.stack[len(g.stack)-1]
	if len(f.keys) >= maxJSONKeys {
		return badJSON("an object holds more than %d keys", maxJSONKeys)
	}
	if g.longKey {
		return nil
	}
	k := foldKey(g.key)
	if f.keys[k] {
		return badJSON("the key %q is given twice in one object (keys are matched without regard to case): give each once", g.key)
	}
	f.keys[k] = true
	return nil
}

// foldKey folds a key as encoding/json does when it matches keys with fields: ASCII letters
// to upper case, any other rune to the smallest rune of its simple case-folding orbit (so the
// Kelvin sign K folds with k, and ſ with s).
func foldKey(k []byte) string {
	out := make([]byte, 0, len(k))
	for _, r := range string(k) {
		if r < utf8.RuneSelf {
			if 'a' <= r && r <= 'z' {
				r -= 'a' - 'A'
			}
			out = append(out, byte(r))
			continue
		}
		for {
			r2 := unicode.SimpleFold(r)
			if r2 <= r {
				r = r2
				break
			}
			r = r2
		}
		out = utf8.AppendRune(out, r)
	}
	return string(out)
}
