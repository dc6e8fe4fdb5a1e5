package protocol

import (
	"fmt"
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth bounds how many arrays and objects may be open at once in a line,
// the envelope itself included. encoding/json allows 10000; no guest message
// needs more than a handful, and a low bound keeps a hostile line cheap. The
// scanner is iterative, so the bound is not about stack safety; it also lets
// one uint64 remember whether each open level is an object or an array.
const maxDepth = 64

// scanner walks one line of JSON without building anything. Its methods
// start at pos, leave pos on the first byte they did not consume and, on
// failure, record the first error and return false. Callers stop at the
// first false, so the position in the error is where reading stopped.
type scanner struct {
	b   []byte
	pos int
	err error
}

// fail records an error at byte offset at (0-based, within the line).
func (s *scanner) fail(at int, format string, args ...any) bool {
	if s.err == nil {
		s.err = fmt.Errorf("%w: byte %d: %s", ErrMalformed, at, fmt.Sprintf(format, args...))
	}
	return false
}

// ws skips JSON whitespace. Only these four bytes count, as in encoding/json.
func (s *scanner) ws() {
	for s.pos < len(s.b) {
		switch s.b[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// found describes what is at pos, for error messages.
func (s *scanner) found() string {
	if s.pos >= len(s.b) {
		return "end of line"
	}
	return describe(s.b[s.pos])
}

func describe(c byte) string {
	if c > ' ' && c < 0x7f {
		return strconv.QuoteRune(rune(c))
	}
	return fmt.Sprintf("byte 0x%02x", c)
}

// what names the type of the value that starts with c, for type errors.
func what(c byte) string {
	switch c {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return "a number"
	}
	return describe(c)
}

// at reports whether the byte at pos is c, consuming it if so.
func (s *scanner) at(c byte) bool {
	if s.pos < len(s.b) && s.b[s.pos] == c {
		s.pos++
		return true
	}
	return false
}

// stringStop marks the bytes that end a run of plain bytes inside a string:
// the quote, the backslash, and the control characters, which JSON requires
// to be escaped. Bytes from 0x80 up pass; they are checked as UTF-8 only
// where a string is decoded.
var stringStop = func() (t [256]bool) {
	for c := 0; c < ' '; c++ {
		t[c] = true
	}
	t['"'] = true
	t['\\'] = true
	return t
}()

// str scans the string whose opening quote is at pos and returns its raw
// content, escapes not decoded; escaped reports whether it holds any.
func (s *scanner) str() (raw []byte, escaped, ok bool) {
	b := s.b
	start := s.pos + 1
	i := start
	for {
		for i < len(b) && !stringStop[b[i]] {
			i++
		}
		if i >= len(b) {
			return nil, false, s.fail(s.pos, "string not terminated")
		}
		switch c := b[i]; c {
		case '"':
			s.pos = i + 1
			return b[start:i], escaped, true
		case '\\':
			escaped = true
			if i+1 >= len(b) {
				return nil, false, s.fail(s.pos, "string not terminated")
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return nil, false, s.fail(i, `\u must be followed by four hex digits`)
				}
				i += 6
			default:
				return nil, false, s.fail(i, "invalid escape in string: backslash followed by %s", describe(b[i+1]))
			}
		default:
			return nil, false, s.fail(i, "control character 0x%02x in string must be escaped", c)
		}
	}
}

// num scans the number at pos and returns its text. It follows the JSON
// grammar exactly: no leading zeros, no '+', digits on both sides of '.'.
func (s *scanner) num() ([]byte, bool) {
	b := s.b
	start := s.pos
	i := start
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i++
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	default:
		s.pos = i
		return nil, s.fail(i, "expected a digit in number, found %s", s.found())
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			s.pos = i
			return nil, s.fail(i, "expected a digit after the decimal point, found %s", s.found())
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			s.pos = i
			return nil, s.fail(i, "expected a digit in exponent, found %s", s.found())
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	s.pos = i
	return b[start:i], true
}

// word scans one of the literals true, false and null.
func (s *scanner) word(w string) bool {
	if len(s.b)-s.pos >= len(w) && string(s.b[s.pos:s.pos+len(w)]) == w {
		s.pos += len(w)
		return true
	}
	return s.fail(s.pos, "invalid literal, expected %s", w)
}

// member scans an object key and the colon after it, and the whitespace
// before the value. pos is on what should be the key's opening quote.
func (s *scanner) member() bool {
	if s.pos >= len(s.b) || s.b[s.pos] != '"' {
		return s.fail(s.pos, "expected a string key, found %s", s.found())
	}
	if _, _, ok := s.str(); !ok {
		return false
	}
	s.ws()
	if !s.at(':') {
		return s.fail(s.pos, "expected ':' after object key, found %s", s.found())
	}
	s.ws()
	return true
}

// value scans any JSON value at pos, depth arrays and objects being already
// open around it, and returns its raw text. It is iterative: a deep value
// costs a bit per level, not a stack frame.
func (s *scanner) value(depth int) ([]byte, bool) {
	start := s.pos
	var objects uint64 // bit n: level n within this value is an object
	level := 0
	for {
		if s.pos >= len(s.b) {
			return nil, s.fail(s.pos, "expected a value, found end of line")
		}
		switch c := s.b[s.pos]; c {
		case '{', '[':
			if depth+level >= maxDepth {
				return nil, s.fail(s.pos, "more than %d nested arrays and objects", maxDepth)
			}
			if c == '{' {
				objects |= 1 << level
			} else {
				objects &^= 1 << level
			}
			level++
			s.pos++
			s.ws()
			if s.at(c + 2) { // '{'+2 is '}' and '['+2 is ']'
				level--
				break
			}
			if c == '{' && !s.member() {
				return nil, false
			}
			continue
		case '"':
			if _, _, ok := s.str(); !ok {
				return nil, false
			}
		case 't':
			if !s.word("true") {
				return nil, false
			}
		case 'f':
			if !s.word("false") {
				return nil, false
			}
		case 'n':
			if !s.word("null") {
				return nil, false
			}
		default:
			if c != '-' && !isDigit(c) {
				return nil, s.fail(s.pos, "expected a value, found %s", describe(c))
			}
			if _, ok := s.num(); !ok {
				return nil, false
			}
		}
		// A value is complete: close every container it completes.
		for {
			if level == 0 {
				return s.b[start:s.pos], true
			}
			s.ws()
			inObject := objects&(1<<(level-1)) != 0
			if s.at(',') {
				s.ws()
				if inObject && !s.member() {
					return nil, false
				}
				break
			}
			if inObject && s.at('}') || !inObject && s.at(']') {
				level--
				continue
			}
			if inObject {
				return nil, s.fail(s.pos, "expected ',' or '}' after object member, found %s", s.found())
			}
			return nil, s.fail(s.pos, "expected ',' or ']' after array element, found %s", s.found())
		}
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		default:
			c -= 'A' - 10
		}
		r = r<<4 | rune(c)
	}
	return r
}

// appendUnquoted appends the decoded form of raw, the content of a string
// that str accepted, to dst. It repeats encoding/json's choices so that both
// decode every string alike: invalid UTF-8 becomes U+FFFD byte by byte, and
// a \u surrogate that is not the first half of a valid pair becomes U+FFFD
// (the escape after an unpaired high half is then decoded on its own).
func appendUnquoted(dst, raw []byte) []byte {
	for i := 0; i < len(raw); {
		c := raw[i]
		switch {
		case c == '\\':
			switch raw[i+1] {
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				r := hex4(raw[i+2:])
				i += 6
				if utf16.IsSurrogate(r) {
					if i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
						if pair := utf16.DecodeRune(r, hex4(raw[i+2:])); pair != utf8.RuneError {
							dst = utf8.AppendRune(dst, pair)
							i += 6
							continue
						}
					}
					r = utf8.RuneError
				}
				dst = utf8.AppendRune(dst, r)
				continue
			default: // '"', '\\' and '/' stand for themselves
				dst = append(dst, raw[i+1])
			}
			i += 2
		case c < utf8.RuneSelf:
			j := i + 1
			for j < len(raw) && raw[j] < utf8.RuneSelf && raw[j] != '\\' {
				j++
			}
			dst = append(dst, raw[i:j]...)
			i = j
		default:
			r, n := utf8.DecodeRune(raw[i:])
			dst = utf8.AppendRune(dst, r) // RuneError for each invalid byte
			i += n
		}
	}
	return dst
}

// parseUint returns the value of a number that is a plain non-negative
// integer; a sign, fraction, exponent or overflow gives false, as
// strconv.ParseUint does for encoding/json.
func parseUint(num []byte) (uint64, bool) {
	if len(num) == 0 {
		return 0, false
	}
	var n uint64
	for _, c := range num {
		if !isDigit(c) || n > math.MaxUint64/10 {
			return 0, false
		}
		n *= 10
		d := uint64(c - '0')
		if n > math.MaxUint64-d {
			return 0, false
		}
		n += d
	}
	return n, true
}

// parseInt is parseUint with an optional minus sign, bounded by int.
func parseInt(num []byte) (int, bool) {
	neg := len(num) > 0 && num[0] == '-'
	if neg {
		num = num[1:]
	}
	u, ok := parseUint(num)
	if !ok {
		return 0, false
	}
	var n int64
	switch {
	case neg && u <= 1<<63:
		n = int64(-u) // two's complement: also right for 1<<63
	case !neg && u <= math.MaxInt64:
		n = int64(u)
	default:
		return 0, false
	}
	if int64(int(n)) != n {
		return 0, false
	}
	return int(n), true
}
