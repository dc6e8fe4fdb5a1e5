package collector

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"

	"github.com/guestdiag/guestdiag/protocol"
)

// decodeReport decodes a relay's Report. Nearly every message of a fleet
// is one, and encoding/json cost a sixth of a collector's CPU on them
// (profiled), so the shape json.Marshal gives a Report, fields in order,
// no whitespace, no escapes, is read by hand; anything else, well formed
// or not, goes to encoding/json, so the two never disagree.
func decodeReport(data []byte) (protocol.Report, error) {
	if r, ok := scanReport(data); ok {
		return r, nil
	}
	var r protocol.Report
	err := json.Unmarshal(data, &r)
	return r, err
}

// scanReport reads data if it has exactly the shape json.Marshal gives a
// Report, reporting false for anything else.
func scanReport(data []byte) (protocol.Report, bool) {
	var r protocol.Report
	s := reportScanner{b: data}
	if !s.lit(`{"v":`) || !s.int(&r.V) ||
		!s.lit(`,"host":`) || !s.str(&r.Host) ||
		!s.lit(`,"vm":`) || !s.str(&r.VM) {
		return r, false
	}
	if s.has(`,"uuid":`) && (!s.lit(`,"uuid":`) || !s.str(&r.UUID)) {
		return r, false
	}
	var received []byte
	if !s.lit(`,"channel":`) || !s.str(&r.Channel) ||
		!s.lit(`,"received":`) || !s.quoted(&received) ||
		!s.lit(`,"guest":`) {
		return r, false
	}
	// The guest line is the rest but the closing brace; json.Valid makes
	// sure it is one value, as encoding/json would have.
	guest := s.b[s.i:]
	if len(guest) < 2 || guest[len(guest)-1] != '}' {
		return r, false
	}
	guest = guest[:len(guest)-1]
	if !json.Valid(guest) || isJSONSpace(guest[0]) || isJSONSpace(guest[len(guest)-1]) {
		return r, false
	}
	// Time's own UnmarshalJSON is what encoding/json calls.
	if r.Received.UnmarshalJSON(received) != nil {
		return r, false
	}
	r.Guest = guest
	return r, true
}

func isJSONSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r'
}

type reportScanner struct {
	b []byte
	i int
}

func (s *reportScanner) has(lit string) bool {
	return bytes.HasPrefix(s.b[s.i:], []byte(lit))
}

func (s *reportScanner) lit(lit string) bool {
	if !s.has(lit) {
		return false
	}
	s.i += len(lit)
	return true
}

// int reads a small non-negative integer without a leading zero.
func (s *reportScanner) int(v *int) bool {
	n, j := 0, s.i
	for j < len(s.b) && s.b[j] >= '0' && s.b[j] <= '9' && j-s.i < 9 {
		n = n*10 + int(s.b[j]-'0')
		j++
	}
	if j == s.i || s.b[s.i] == '0' && j-s.i > 1 || j < len(s.b) && s.b[j] >= '0' && s.b[j] <= '9' {
		return false
	}
	*v, s.i = n, j
	return true
}

// quoted reads a string with neither escapes nor control characters,
// returning it with its quotes.
func (s *reportScanner) quoted(q *[]byte) bool {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return false
	}
	for j := s.i + 1; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			if !utf8.Valid(s.b[s.i+1 : j]) {
				return false
			}
			*q, s.i = s.b[s.i:j+1], j+1
			return true
		case c == '\\' || c < 0x20:
			return false
		}
	}
	return false
}

func (s *reportScanner) str(v *string) bool {
	var q []byte
	if !s.quoted(&q) {
		return false
	}
	*v = string(q[1 : len(q)-1])
	return true
}
