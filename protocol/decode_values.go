package protocol

// The fast decoder's value readers.

import (
	"fmt"
	"time"
)

// The value readers below follow encoding/json: null leaves the zero value,
// and a value of another type is an error naming the field.

func (d *decoder) text(key string, t *text) bool {
	if d.pos < len(d.b) {
		switch d.b[d.pos] {
		case '"':
			start := d.pos + 1
			raw, escaped, ok := d.str()
			*t = text{start: start, end: start + len(raw), escaped: escaped}
			return ok
		case 'n':
			return d.word("null")
		}
	}
	return d.wrongType(key, "a string")
}

// enum reads a string that is usually one of a few known words, which then
// need no copy.
func (d *decoder) enum(key string, t *text) bool {
	if !d.text(key, t) {
		return false
	}
	if !t.escaped {
		t.lit = knownWord(d.b[t.start:t.end])
	}
	return true
}

func knownWord(b []byte) string {
	switch string(b) {
	case "hello":
		return "hello"
	case "result":
		return "result"
	case "event":
		return "event"
	case "heartbeat":
		return "heartbeat"
	case "resume":
		return "resume"
	case "ack":
		return "ack"
	case "ok":
		return "ok"
	case "warn":
		return "warn"
	case "crit":
		return "crit"
	case "unknown":
		return "unknown"
	case "info":
		return "info"
	}
	return ""
}

// uint reads an integer from 0 to max. Like encoding/json it takes neither
// a sign nor a fraction nor an exponent, not even "-0" or "1e3".
func (d *decoder) uint(key string, max uint64) (uint64, bool) {
	if d.pos < len(d.b) {
		switch c := d.b[d.pos]; {
		case c == 'n':
			return 0, d.word("null")
		case c == '-' || isDigit(c):
			at := d.pos
			num, ok := d.num()
			if !ok {
				return 0, false
			}
			n, ok := parseUint(num)
			if !ok || n > max {
				return 0, d.fail(at, "field %s: %s is not an integer from 0 to %d", d.name(key), clip(string(num)), max)
			}
			return n, true
		}
	}
	return 0, d.wrongType(key, "a number")
}

func (d *decoder) int(key string) (int, bool) {
	if d.pos < len(d.b) {
		switch c := d.b[d.pos]; {
		case c == 'n':
			return 0, d.word("null")
		case c == '-' || isDigit(c):
			at := d.pos
			num, ok := d.num()
			if !ok {
				return 0, false
			}
			n, ok := parseInt(num)
			if !ok {
				return 0, d.fail(at, "field %s: %s is not an integer", d.name(key), clip(string(num)))
			}
			return n, true
		}
	}
	return 0, d.wrongType(key, "a number")
}

// time reads an RFC 3339 time into t and reports whether it was there (not
// null). Like time.Time.UnmarshalJSON it parses the raw text between the
// quotes, escapes not decoded, with the same parser.
func (d *decoder) time(key string, t *time.Time) (set, ok bool) {
	if d.pos < len(d.b) {
		switch d.b[d.pos] {
		case '"':
			at := d.pos
			raw, _, ok := d.str()
			if !ok {
				return false, false
			}
			if err := t.UnmarshalText(raw); err != nil {
				reason := err.Error()
				if len(raw) > 64 {
					reason = fmt.Sprintf("%q is not an RFC 3339 time", clip(string(raw)))
				}
				return false, d.fail(at, "field %s: %s", d.name(key), reason)
			}
			return true, true
		case 'n':
			return false, d.word("null")
		}
	}
	return false, d.wrongType(key, "an RFC 3339 time string")
}
