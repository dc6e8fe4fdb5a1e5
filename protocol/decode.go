package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// Decode parses and validates one guest line (without its newline). Unknown
// fields are rejected so that a typo or a future field is never silently
// dropped; a message from another protocol version is rejected with
// ErrUnsupportedVersion before anything else is looked at. Keys match
// exactly and may appear only once, so that a guest cannot say two things
// at once; the line holds one object and nothing else, with at most 64
// arrays and objects open at a time. Data keeps the raw bytes of any JSON
// value. The result shares no memory with line.
func Decode(line []byte) (Envelope, error) {
	// The relay runs Decode on every line from every guest, so it is a
	// scanner written for Envelope rather than encoding/json. It decodes
	// strings, numbers, times and nulls exactly as encoding/json with
	// DisallowUnknownFields did (decode_test.go fuzzes the two against each
	// other), and is stricter on purpose where encoding/json matches keys
	// case-insensitively ("Seq" and "ſeq" for "seq"), keeps the last of
	// repeated keys (merging a repeated "findings" element by element),
	// lets json.Decoder.More pass a trailing '}' or ']', decodes a bare null
	// as an empty envelope, and allows nesting 10000 deep. Keys repeated
	// inside data are not looked for: data is not decoded at all.
	if i := firstInvalidUTF8(line); i >= 0 {
		return Envelope{}, fmt.Errorf("%w: byte %d: invalid UTF-8", ErrMalformed, i)
	}
	e, n, err := decodeEnvelope(line, &guestKeys)
	if err != nil {
		if v, ok := probeVersion(line); ok && v != Version && v != 0 {
			return Envelope{}, versionErr(v)
		}
		return Envelope{}, err
	}
	if err := e.Validate(); err != nil {
		var fe *FieldError
		if n > len(e.Findings) && errors.As(err, &fe) && fe.Field == "findings" {
			// decodeEnvelope kept only MaxFindings+1 of them; say how many came.
			fe.Reason = fmt.Sprintf("%d entries, limit %d", n, MaxFindings)
		}
		return Envelope{}, err
	}
	return e, nil
}

// firstInvalidUTF8 returns the offset of the first byte that is not valid
// UTF-8, or -1. The wire format is UTF-8 and the relay forwards lines byte
// for byte, so invalid input is refused rather than repaired with U+FFFD
// as encoding/json would.
func firstInvalidUTF8(b []byte) int {
	if utf8.Valid(b) {
		return -1
	}
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return -1
}

// DecodeAck parses one host line as an acknowledgement. The agent ignores
// anything that is not a well-formed v1 ack.
func DecodeAck(line []byte) (Ack, error) {
	// bytes.TrimSpace trims more than JSON whitespace (\v, \f, U+0085,
	// U+00A0); the ack reader always accepted those at either end.
	e, _, err := decodeEnvelope(bytes.TrimSpace(line), &ackKeys)
	if err != nil {
		return Ack{}, err
	}
	a := Ack{V: e.V, Kind: e.Kind, Run: e.Run, Seq: e.Seq}
	if a.V != Version {
		return Ack{}, versionErr(a.V)
	}
	if a.Kind != KindAck {
		return Ack{}, fieldErr("kind", "host may send only ack, got %q", clip(string(a.Kind)))
	}
	if err := checkToken("run", a.Run, MaxRunLen, isRunByte); err != nil {
		return Ack{}, err
	}
	if a.Seq == 0 {
		return Ack{}, fieldErr("seq", "missing or zero")
	}
	return a, nil
}

// text is a string value found by the scan and not yet copied: Decode's
// result must not alias the line, which a Reader reuses, and copying every
// string of a line into one block at the end costs one allocation instead
// of one per field.
type text struct {
	lit        string // a known word (kind, status, severity): no copy needed
	start, end int    // the raw value in the line; after put, in the block
	escaped    bool
}

func (t *text) size() int {
	if t.lit != "" {
		return 0
	}
	return t.end - t.start
}

// put appends the decoded value to the block and points t at it.
func (t *text) put(block *strings.Builder, line []byte) {
	if t.lit != "" {
		return
	}
	raw := line[t.start:t.end]
	off := block.Len()
	if !t.escaped && utf8.Valid(raw) {
		block.Write(raw)
	} else {
		block.Write(appendUnquoted(nil, raw))
	}
	t.start, t.end = off, block.Len()
}

func (t *text) in(block string) string {
	if t.lit != "" {
		return t.lit
	}
	return block[t.start:t.end]
}

// pendingEnvelope holds what the scan found that is copied out of the line
// only once the whole line has been read.
type pendingEnvelope struct {
	kind, run, check, status, summary text
	findings                          bool // an array, possibly empty, not null
	data                              []byte
}

type pendingFinding struct {
	code, severity, message, source, provider, unit text
	eventID                                         uint32
	count                                           uint64
	first, last                                     time.Time
	hasFirst, hasLast                               bool
}

func (f *pendingFinding) texts() [6]*text {
	return [6]*text{&f.code, &f.severity, &f.message, &f.source, &f.provider, &f.unit}
}

type decoder struct {
	scanner
	finding int // index of the finding being read, or -1; names fields in errors
}

// decodeEnvelope reads a line holding one object with the given keys into
// an Envelope whose strings and data are copies. It does not validate. n
// counts the findings, of which at most MaxFindings+1 are kept.
func decodeEnvelope(line []byte, keys *keySet) (e Envelope, n int, err error) {
	d := decoder{scanner: scanner{b: line}, finding: -1}
	var (
		p    pendingEnvelope
		fbuf [4]pendingFinding
	)
	fs := fbuf[:0]
	d.ws()
	if !d.at('{') {
		d.fail(d.pos, "a line must hold one JSON object, found %s", d.found())
		return Envelope{}, 0, d.err
	}
	d.ws()
	if !d.at('}') {
		var seen uint16
		for {
			id, ok := d.key(keys, &seen)
			if !ok {
				return Envelope{}, 0, d.err
			}
			switch id {
			case keyV:
				e.V, ok = d.int("v")
			case keyKind:
				ok = d.enum("kind", &p.kind)
			case keyRun:
				ok = d.text("run", &p.run)
			case keySeq:
				e.Seq, ok = d.uint("seq", math.MaxUint64)
			case keyTS:
				_, ok = d.time("ts", &e.TS)
			case keyCheck:
				ok = d.text("check", &p.check)
			case keyStatus:
				ok = d.enum("status", &p.status)
			case keySummary:
				ok = d.text("summary", &p.summary)
			case keyFindings:
				fs, n, p.findings, ok = d.findings(fs)
			case keyData:
				p.data, ok = d.value(1)
			}
			if !ok {
				return Envelope{}, 0, d.err
			}
			more, ok := d.next(keys.names[id])
			if !ok {
				return Envelope{}, 0, d.err
			}
			if !more {
				break
			}
		}
	}
	d.ws()
	if d.pos < len(line) {
		d.fail(d.pos, "%s after the object; a line holds exactly one", d.found())
		return Envelope{}, 0, d.err
	}
	p.build(&e, line, fs)
	return e, n, nil
}

// build copies the strings and data of a decoded line out of it: all
// strings share one allocation, data has its own, findings one and their
// times one.
func (p *pendingEnvelope) build(e *Envelope, line []byte, fs []pendingFinding) {
	texts := [...]*text{&p.kind, &p.run, &p.check, &p.status, &p.summary}
	size, times := 0, 0
	for _, t := range texts {
		size += t.size()
	}
	for i := range fs {
		for _, t := range fs[i].texts() {
			size += t.size()
		}
		if fs[i].hasFirst {
			times++
		}
		if fs[i].hasLast {
			times++
		}
	}
	var block strings.Builder
	block.Grow(size) // escapes only shrink; invalid UTF-8 widening to U+FFFD may grow it
	for _, t := range texts {
		t.put(&block, line)
	}
	for i := range fs {
		for _, t := range fs[i].texts() {
			t.put(&block, line)
		}
	}
	all := block.String()
	e.Kind = Kind(p.kind.in(all))
	e.Run = p.run.in(all)
	e.Check = p.check.in(all)
	e.Status = Status(p.status.in(all))
	e.Summary = p.summary.in(all)
	if p.findings {
		e.Findings = make([]Finding, len(fs))
		var slab []time.Time
		if times > 0 {
			slab = make([]time.Time, 0, times)
		}
		for i := range fs {
			f, out := &fs[i], &e.Findings[i]
			*out = Finding{
				Code:     f.code.in(all),
				Severity: Severity(f.severity.in(all)),
				Message:  f.message.in(all),
				Source:   f.source.in(all),
				Provider: f.provider.in(all),
				EventID:  f.eventID,
				Unit:     f.unit.in(all),
				Count:    f.count,
			}
			if f.hasFirst {
				slab = append(slab, f.first)
				out.First = &slab[len(slab)-1]
			}
			if f.hasLast {
				slab = append(slab, f.last)
				out.Last = &slab[len(slab)-1]
			}
		}
	}
	if p.data != nil {
		e.Data = make(json.RawMessage, len(p.data))
		copy(e.Data, p.data)
	}
}

// key reads an object key and the colon after it and returns the key's
// number. A key that keys does not allow is an error, and so is one already
// in seen.
func (d *decoder) key(keys *keySet, seen *uint16) (int, bool) {
	at := d.pos
	if d.pos >= len(d.b) || d.b[d.pos] != '"' {
		return 0, d.fail(d.pos, "expected a string key%s, found %s", d.where(), d.found())
	}
	raw, escaped, ok := d.str()
	if !ok {
		return 0, false
	}
	k := raw
	if escaped {
		k = appendUnquoted(nil, raw)
	}
	id := keys.lookup(k)
	if id < 0 || keys.allowed&(1<<id) == 0 {
		return 0, d.fail(at, "unknown key %q%s", clip(string(appendUnquoted(nil, raw))), d.where())
	}
	if *seen&(1<<id) != 0 {
		return 0, d.fail(at, "duplicate key %q%s", keys.names[id], d.where())
	}
	*seen |= 1 << id
	d.ws()
	if !d.at(':') {
		return 0, d.fail(d.pos, "expected ':' after key %q, found %s", d.name(keys.names[id]), d.found())
	}
	d.ws()
	return id, true
}

// next reads the ',' or '}' after the value of key and reports whether
// another member follows.
func (d *decoder) next(key string) (more, ok bool) {
	d.ws()
	switch {
	case d.at(','):
		d.ws()
		return true, true
	case d.at('}'):
		return false, true
	}
	return false, d.fail(d.pos, "expected ',' or '}' after the value of %q, found %s", d.name(key), d.found())
}

// name is key as an error names it: "findings[2].count" inside a finding.
func (d *decoder) name(key string) string {
	if d.finding < 0 {
		return key
	}
	return fmt.Sprintf("findings[%d].%s", d.finding, key)
}

func (d *decoder) where() string {
	if d.finding < 0 {
		return ""
	}
	return fmt.Sprintf(" in findings[%d]", d.finding)
}

// wrongType fails with what key wanted and what the line has instead.
func (d *decoder) wrongType(key, want string) bool {
	return d.fail(d.pos, "field %s: expected %s, found %s", d.name(key), want, d.foundValue())
}

// foundValue is found, naming the type of a value where one starts.
func (d *decoder) foundValue() string {
	if d.pos >= len(d.b) {
		return "end of line"
	}
	return what(d.b[d.pos])
}

// findings reads the findings array, appending to fs. It keeps at most
// MaxFindings+1 findings, enough for validation to reject the line, so that
// a line of "{}," cannot make Decode allocate for a hundred thousand; n
// counts them all. array is false for null.
func (d *decoder) findings(fs []pendingFinding) (_ []pendingFinding, n int, array, ok bool) {
	if d.pos < len(d.b) && d.b[d.pos] == 'n' {
		return fs, 0, false, d.word("null")
	}
	if !d.at('[') {
		return fs, 0, false, d.wrongType("findings", "an array")
	}
	d.ws()
	if d.at(']') {
		return fs, 0, true, true
	}
	for ; ; n++ {
		var f pendingFinding
		switch {
		case d.pos < len(d.b) && d.b[d.pos] == '{':
			d.finding = n
			if !d.findingObject(&f) {
				return fs, n, true, false
			}
			d.finding = -1
		case d.pos < len(d.b) && d.b[d.pos] == 'n':
			// A null element decodes as an empty finding, as in encoding/json;
			// validation rejects it.
			if !d.word("null") {
				return fs, n, true, false
			}
		default:
			return fs, n, true, d.wrongType(fmt.Sprintf("findings[%d]", n), "an object")
		}
		if len(fs) <= MaxFindings {
			fs = append(fs, f)
		}
		d.ws()
		switch {
		case d.at(','):
			d.ws()
		case d.at(']'):
			return fs, n + 1, true, true
		default:
			return fs, n, true, d.fail(d.pos, "expected ',' or ']' after findings[%d], found %s", n, d.found())
		}
	}
}

func (d *decoder) findingObject(f *pendingFinding) bool {
	d.pos++ // '{'
	d.ws()
	if d.at('}') {
		return true
	}
	var seen uint16
	for {
		id, ok := d.key(&findingKeys, &seen)
		if !ok {
			return false
		}
		switch id {
		case keyCode:
			ok = d.text("code", &f.code)
		case keySeverity:
			ok = d.enum("severity", &f.severity)
		case keyMessage:
			ok = d.text("message", &f.message)
		case keySource:
			ok = d.text("source", &f.source)
		case keyProvider:
			ok = d.text("provider", &f.provider)
		case keyEventID:
			var n uint64
			n, ok = d.uint("event_id", math.MaxUint32)
			f.eventID = uint32(n)
		case keyUnit:
			ok = d.text("unit", &f.unit)
		case keyCount:
			f.count, ok = d.uint("count", math.MaxUint64)
		case keyFirst:
			f.hasFirst, ok = d.time("first", &f.first)
		case keyLast:
			f.hasLast, ok = d.time("last", &f.last)
		}
		if !ok {
			return false
		}
		more, ok := d.next(findingNames[id])
		if !ok {
			return false
		}
		if !more {
			return true
		}
	}
}

// probeVersion returns the top-level "v" of a line that failed to decode,
// if the line is otherwise well-formed JSON, so that a message from another
// protocol version is reported as such even when this build does not know
// its fields. It mirrors the lenient encoding/json pass Decode used to make:
// any keys, the last "v" wins, null leaves it unset, and a "v" that is not
// an integer makes the probe fail.
func probeVersion(line []byte) (v int, ok bool) {
	s := scanner{b: line}
	s.ws()
	if !s.at('{') {
		return 0, false
	}
	s.ws()
	if !s.at('}') {
		for {
			if s.pos >= len(line) || line[s.pos] != '"' {
				return 0, false
			}
			raw, escaped, ok := s.str()
			if !ok {
				return 0, false
			}
			s.ws()
			if !s.at(':') {
				return 0, false
			}
			s.ws()
			isV := string(raw) == "v" || escaped && string(appendUnquoted(nil, raw)) == "v"
			switch {
			case !isV:
				if _, ok := s.value(1); !ok {
					return 0, false
				}
			case s.pos < len(line) && line[s.pos] == 'n':
				if !s.word("null") {
					return 0, false
				}
			default:
				num, ok := s.num()
				if !ok {
					return 0, false
				}
				if v, ok = parseInt(num); !ok {
					return 0, false
				}
			}
			s.ws()
			if s.at(',') {
				s.ws()
				continue
			}
			if s.at('}') {
				break
			}
			return 0, false
		}
	}
	s.ws()
	return v, s.pos == len(line)
}
