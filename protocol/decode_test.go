package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// referenceDecode is Decode as it was written on encoding/json before the
// hand-written scanner replaced it. FuzzFastDecoderMatchesReference holds the
// scanner to it.
func referenceDecode(line []byte) (Envelope, error) {
	var e Envelope
	if err := referenceStrictUnmarshal(line, &e); err != nil {
		var probe struct {
			V int `json:"v"`
		}
		if json.Unmarshal(line, &probe) == nil && probe.V != Version && probe.V != 0 {
			return Envelope{}, versionErr(probe.V)
		}
		return Envelope{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := e.Validate(); err != nil {
		return Envelope{}, err
	}
	return e, nil
}

// referenceDecodeAck is DecodeAck as it was written on encoding/json.
func referenceDecodeAck(line []byte) (Ack, error) {
	var a Ack
	if err := referenceStrictUnmarshal(bytes.TrimSpace(line), &a); err != nil {
		return Ack{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
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

// referenceStrictUnmarshal is a copy of strictUnmarshal as it stood, kept
// here so that the reference does not move if the package's copy does.
func referenceStrictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the object")
	}
	return nil
}

// knownDifference says why Decode may reject a line that the reference
// accepts, or reject it for another reason, when one of the differences
// documented on Decode applies; otherwise it returns "". names are the keys
// of the top-level object.
func knownDifference(line []byte, names []string) string {
	type frame struct {
		object    bool
		struc     bool // decoded into a Go struct: the envelope or a finding
		findings  bool // the envelope's findings array
		expectKey bool
		key       string
		keys      map[string]bool
	}
	if !utf8.Valid(line) {
		return "invalid UTF-8"
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	var stack []*frame
	reason := ""
	note := func(r string) {
		if reason == "" {
			reason = r
		}
	}
	for {
		tok, err := dec.Token()
		if err != nil {
			return "" // not well-formed: both must reject it alike
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch {
		case tok == json.Delim('{') || tok == json.Delim('['):
			f := &frame{object: tok == json.Delim('{'), keys: map[string]bool{}}
			f.expectKey = f.object
			f.struc = f.object && (top == nil || top.findings)
			f.findings = !f.object && len(stack) == 1 && top.key == "findings" && slices.Contains(names, "findings")
			stack = append(stack, f)
			if len(stack) > maxDepth {
				note("nesting deeper than maxDepth")
			}
			continue
		case tok == json.Delim('}') || tok == json.Delim(']'):
			stack = stack[:len(stack)-1]
		case top != nil && top.expectKey:
			k := tok.(string)
			top.expectKey, top.key = false, k
			if !top.struc {
				continue
			}
			if top.keys[k] {
				note("duplicate key " + k)
			}
			top.keys[k] = true
			level := names
			if len(stack) > 1 {
				level = findingNames[:]
			}
			for _, n := range level {
				if k != n && strings.EqualFold(k, n) {
					note("key " + k + " matches " + n + " only case-insensitively")
				}
			}
			continue
		case top == nil && tok == nil:
			note("the line is null, not an object")
		}
		// A value ended.
		if len(stack) == 0 {
			rest := bytes.TrimLeft(line[dec.InputOffset():], " \t\r\n")
			if len(rest) > 0 && (rest[0] == '}' || rest[0] == ']') {
				note("json.Decoder.More lets a trailing " + string(rest[:1]) + " through")
			}
			return reason
		}
		if p := stack[len(stack)-1]; p.object {
			p.expectKey = true
		}
	}
}

// errorClass names the sentinel an error from Decode wraps.
func errorClass(err error) string {
	switch {
	case err == nil:
		return "nil"
	case errors.Is(err, ErrUnsupportedVersion):
		return "ErrUnsupportedVersion"
	case errors.Is(err, ErrInvalid):
		return "ErrInvalid"
	case errors.Is(err, ErrMalformed):
		return "ErrMalformed"
	}
	return "unclassified"
}

// matchReference fails t unless got and gotErr, from the scanner, agree
// with want and wantErr, from the reference: both accept with equal values,
// or both reject with the same class of error and, for validation and
// version errors, the same text (which also shows that the values were
// equal). Where a documented difference applies, the scanner may reject
// for its own reason.
func matchReference(t *testing.T, line []byte, got any, gotErr error, want any, wantErr error, known string) {
	t.Helper()
	switch {
	case gotErr == nil && wantErr == nil && known == "":
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("line %q:\ngot  %+v\nwant %+v", line, got, want)
		}
	case gotErr == nil:
		t.Fatalf("line %q: accepted, but the reference says %v (known difference: %q)", line, wantErr, known)
	case known != "":
		// Only the scanner is bound to reject; any rejection will do.
	case wantErr == nil:
		t.Fatalf("line %q: rejected (%v), but the reference accepts %+v", line, gotErr, want)
	case errorClass(gotErr) != errorClass(wantErr):
		t.Fatalf("line %q: got %v (%s), want %v (%s)", line, gotErr, errorClass(gotErr), wantErr, errorClass(wantErr))
	case !errors.Is(wantErr, ErrMalformed) && gotErr.Error() != wantErr.Error():
		t.Fatalf("line %q: got %v, want %v", line, gotErr, wantErr)
	}
}

// decodeSeedLines are the lines both fuzz tests start from: what agents
// send, and what a hostile guest might.
func decodeSeedLines() [][]byte {
	ts := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	first := ts.Add(-90 * time.Second)
	plus2 := time.FixedZone("", 2*3600)
	local := ts.In(plus2)
	marshal := func(e Envelope) []byte {
		b, err := Marshal(e)
		if err != nil {
			panic(err)
		}
		return b[:len(b)-1]
	}
	hello, _ := json.Marshal(Hello{Hostname: "web-1", OS: "linux", Platform: "debian", Kernel: "6.1.0", Arch: "amd64", AgentVersion: "0.1.0", Checks: []string{"disk", "net", "resources"}})
	lines := [][]byte{
		realisticResult(42),
		heartbeatLine(),
		marshal(Envelope{V: 1, Kind: KindHello, Run: "r7Kq2mX9", Seq: 1, TS: ts, Data: hello}),
		marshal(Envelope{V: 1, Kind: KindEvent, Run: "R-7_k", Seq: 9, TS: local, Check: "eventlog", Status: StatusWarn,
			Summary: "3 disk errors <since> boot & \"now\"\t\u2028 é 日本 😀",
			Findings: []Finding{
				{Code: "disk.io_error", Severity: SeverityWarn, Message: "sda: I/O error\n", Source: "System", Provider: "disk", EventID: 4294967295, Unit: "sda.device", Count: math.MaxUint64, First: &first, Last: &local},
				{Code: "disk.smart", Severity: SeverityInfo, Message: "ok"},
			}}),
		[]byte(`{"v":1,"kind":"heartbeat","run":"a","seq":1,"ts":"2026-11-21T10:00:00.123456789+05:30"}`),
		[]byte("  \t{ \"v\" : 1 , \"kind\" : \"heartbeat\" , \"run\" : \"a\" , \"seq\" : 1 , \"ts\" : \"2026-11-21T10:00:00Z\" , \"data\" : { \"uptime_s\" : 1 , \"spooled\" : 0 } }\r\n "),
		[]byte(`{"v":1,"kind":"result","run":"a","seq":1,"ts":"2026-11-21T10:00:00Z","check":"c","status":"ok","findings":[],"data":null,"summary":null}`),
		[]byte(`{"v":1,"kind":"result","run":"a","seq":1,"ts":"2026-11-21T10:00:00Z","check":"c","status":"ok","findings":null,"data":[1,-0.5e-3,true,false,null,"\ud83d\ude00",{}]}`),
		[]byte(`{"v":1,"kind":"result","run":"a","seq":1,"ts":"2026-11-21T10:00:00Z","check":"c","status":"ok","findings":[{"code":"a.b","severity":"info","message":"m","first":null,"last":"2026-11-21T10:00:00Z","event_id":null}]}`),
		// Strings: escapes, surrogates, invalid UTF-8.
		[]byte(`{"v":1,"kind":"result","run":"a","seq":1,"ts":"2026-11-21T10:00:00Z","check":"c","status":"ok","summary":"\u00e9\ud83d\ude00\ud800\udc00x\ud800\u0041\udc00\ud800\ud800\"\\\/\b\f\n\r\t\u0000"}`),
		[]byte("{\"v\":1,\"kind\":\"result\",\"run\":\"a\",\"seq\":1,\"ts\":\"2026-11-21T10:00:00Z\",\"check\":\"c\",\"status\":\"ok\",\"summary\":\"bad \xff\xfe \xed\xa0\x80 \xc0\xaf \xe6\x97 \x7f end\",\"data\":{\"k\xff\":\"\xff\"}}"),
		[]byte("{\"v\":1,\"kind\":\"result\",\"run\":\"a\",\"seq\":1,\"ts\":\"2026-11-21T10:00:00Z\",\"check\":\"c\",\"status\":\"ok\",\"summary\":\"tab\tinside\"}"),
		[]byte(`{"v":1,"kind":"result","run":"a","seq":1,"ts":"2026-11-21T10:00:00Z","check":"c","status":"ok","summary":"\x41"}`),
		[]byte(`{"v":1,"kind":"result","run":"a","seq":1,"ts":"2026-11-21T10:00:00Z","check":"c","status":"ok","summary":"\u12"}`),
		[]byte(`{"v":1,"kind":"heartbeat","run":"a","seq":1,"ts":"2026-11-21T10:00:00\u005a"}`),
		// Numbers.
		[]byte(`{"v":1,"kind":"heartbeat","run":"a","seq":18446744073709551615,"ts":"2026-11-21T10:00:00Z"}`),
		[]byte(`{"v":1,"kind":"heartbeat","run":"a","seq":18446744073709551616,"ts":"2026-11-21T10:00:00Z"}`),
		[]byte(`{"v":1,"kind":"heartbeat","run":"a","seq":-1,"ts":"2026-11-21T10:00:00Z"}`),
		[]byte(`{"v":1,"kind":"heartbeat","run":"a","seq":-0,"ts":"2026-11-21T10:00:00Z"}`),
		[]byte(`{"v":1,"kind":"heartbeat","run":"a","seq":1.0,"ts":"2026-11-21T10:00:00Z"}`),
		[]byte(`{"v":1,"kind":"heartbeat","run":"a","seq":1e3,"ts":"2026-11-21T10:00:00Z"}`),
		[]byte(`{"v":1,"kind":"heartbeat","run":"a","seq":01,"ts":"2026-11-21T10:00:00Z"}`),
		[]byte(`{"v":-0,"kind":"heartbeat","run":"a","seq":1,"ts":"2026-11-21T10:00:00Z"}`),
		[]byte(`{"v":-9223372036854775808,"kind":"heartbeat"}`),
		[]byte(`{"v":99999999999999999999,"kind":"heartbeat"}`),
		[]byte(`{"v":2,"kind":"telemetry","extra":{"nested":[1,2]}}`),
		[]byte(`{"v":2,"v":1}`),
		[]byte(`{"v":2,"v":null}`),
		[]byte(`{"v":2,"v":"x"}`),
		[]byte(`{"v":2,"kind":`),
		[]byte(`{"v":1,"kind":"result","run":"a","seq":1,"ts":"2026-11-21T10:00:00Z","check":"c","status":"warn","findings":[{"code":"a.b","severity":"warn","message":"m","event_id":4294967296}]}`),
		[]byte(`{"v":1,"kind":"result","run":"a","seq":1,"ts":"2026-11-21T10:00:00Z","check":"c","status":"warn","findings":[{"code":"a.b","severity":"warn","message":"m","count":-1}]}`),
		// Keys: unknown, duplicate, case-folded, escaped.
		[]byte(`{"v":1,"kind":"heartbeat","run":"a","seq":1,"ts":"2026-11-21T10:00:00Z","bogus":1}`),
		[]byte(`{"v":1,"kind":"heartbeat","run":"a","seq":1,"seq":2,"ts":"2026-11-21T10:00:00Z"}`),
		[]byte(`{"v":1,"kind":"heartbeat","run":"a","Seq":1,"ts":"2026-11-21T10:00:00Z"}`),
		[]byte(`{"v":1,"kind":"heartbeat","run":"a","ſeq":1,"ts":"2026-11-21T10:00:00Z"}`),
		[]byte(`{"v":1,"\u212aind":"heartbeat","run":"a","seq":1,"ts":"2026-11-21T10:00:00Z"}`),
		[]byte(`{"\u0076":1,"kind":"heartbeat","run":"a","seq":1,"ts":"2026-11-21T10:00:00Z"}`),
		[]byte(`{"v":1,"kind":"result","run":"a","seq":1,"ts":"2026-11-21T10:00:00Z","check":"c","status":"ok","findings":[{"code":"a.b","severity":"info","message":"m","code":"c.d"}]}`),
		[]byte(`{"v":1,"kind":"result","run":"a","seq":1,"ts":"2026-11-21T10:00:00Z","check":"c","status":"ok","findings":[{"code":"a.b","severity":"info","message":"m"}],"findings":[{"message":"n"}]}`),
		[]byte(`{"v":1,"kind":"result","run":"a","seq":1,"ts":"2026-11-21T10:00:00Z","check":"c","status":"ok","findings":[{"code":"a.b","severity":"info","message":"m","Unit":"u"}]}`),
		// Shape: nesting, trailing data, other tops.
		[]byte(`{"v":1,"kind":"result","run":"a","seq":1,"ts":"2026-11-21T10:00:00Z","check":"c","status":"ok","data":{"a":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}}`),
		[]byte(`{"v":1,"kind":"result","run":"a","seq":1,"ts":"2026-11-21T10:00:00Z","check":"c","status":"ok","data":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`),
		[]byte(`{"v":1,"kind":"heartbeat","run":"a","seq":1,"ts":"2026-11-21T10:00:00Z"}}`),
		[]byte(`{"v":1,"kind":"heartbeat","run":"a","seq":1,"ts":"2026-11-21T10:00:00Z"} ]x`),
		[]byte(`{"v":1,"kind":"heartbeat","run":"a","seq":1,"ts":"2026-11-21T10:00:00Z"} {}`),
		[]byte("\xef\xbb\xbf{\"v\":1}"),
		[]byte(`null`),
		[]byte(`[]`),
		[]byte(`"v"`),
		[]byte(``),
		[]byte(`   `),
		[]byte(`{}`),
		[]byte(`{"v":1,"kind":"result","run":"a","seq":1,"ts":"2026-11-21T10:00:00Z","check":"c","status":"ok","findings":[null,1]}`),
		[]byte(`{"v":1,"kind":"result","run":"a","seq":1,"ts":"2026-11-21T10:00:00Z","check":"c","status":"ok","findings":{}}`),
		[]byte(`{"v":1,"kind":"hello","run":"a","seq":1,"ts":"2026-11-21T10:00:00Z","data":{"hostname":"h","os":"linux","agent_version":"1","checks":[],"checks":["x"]}}`),
		[]byte(`{"v":1,"ack":true}`),
		[]byte(`{"v":1,"kind":"ack","run":"r7Kq2mX9","seq":42}`),
		[]byte(" {\"v\":1,\"kind\":\"ack\",\"run\":\"r7Kq2mX9\",\"seq\":42}\v\u00a0"),
		[]byte(`{"v":1,"kind":"ack","run":"r7Kq2mX9","seq":42,"ts":"2026-11-21T10:00:00Z"}`),
	}
	return lines
}

func FuzzFastDecoderMatchesReference(f *testing.F) {
	for _, line := range decodeSeedLines() {
		f.Add(line)
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		// Decode a copy and then scribble over it: the result must not
		// alias the line, which a Reader reuses.
		buf := bytes.Clone(line)
		got, gotErr := Decode(buf)
		for i := range buf {
			buf[i] = '#'
		}
		want, wantErr := referenceDecode(line)
		matchReference(t, line, got, gotErr, want, wantErr, knownDifference(line, envelopeNames[:]))
	})
}

func FuzzAckDecoderMatchesReference(f *testing.F) {
	for _, line := range decodeSeedLines() {
		f.Add(line)
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		got, gotErr := DecodeAck(line)
		want, wantErr := referenceDecodeAck(line)
		known := knownDifference(bytes.TrimSpace(line), []string{"v", "kind", "run", "seq"})
		matchReference(t, line, got, gotErr, want, wantErr, known)
	})
}

// TestDecodeMatchesReferenceOnSeeds runs the seeds on every go test, so a
// change that breaks one fails without a fuzzing run.
func TestDecodeMatchesReferenceOnSeeds(t *testing.T) {
	for _, line := range decodeSeedLines() {
		got, gotErr := Decode(line)
		want, wantErr := referenceDecode(line)
		matchReference(t, line, got, gotErr, want, wantErr, knownDifference(line, envelopeNames[:]))
	}
}

func TestDecodeRejectsWhatEncodingJSONLetThrough(t *testing.T) {
	const head = `"v":1,"kind":"heartbeat","run":"a","ts":"2026-11-21T10:00:00Z"`
	tests := []struct {
		name, line, want string
	}{
		{"a repeated key is not resolved by taking the last",
			`{` + head + `,"seq":1,"seq":2}`, `malformed json: byte 72: duplicate key "seq"`},
		{"a key in another case is unknown",
			`{` + head + `,"Seq":1}`, `malformed json: byte 64: unknown key "Seq"`},
		{"a key that folds to a known one is unknown",
			`{` + head + `,"ſeq":1}`, `malformed json: byte 64: unknown key "ſeq"`},
		{"a brace after the object is trailing data",
			`{` + head + `,"seq":1}}`, `malformed json: byte 72: '}' after the object; a line holds exactly one`},
		{"a bracket after the object is trailing data",
			`{` + head + `,"seq":1} ]`, `malformed json: byte 73: ']' after the object; a line holds exactly one`},
		{"data nested past the limit is refused",
			`{"v":1,"kind":"result","run":"a","seq":1,"ts":"2026-11-21T10:00:00Z","check":"c","status":"ok","data":{"a":` +
				strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth) + `}}`,
			`malformed json: byte 169: more than 64 nested arrays and objects`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := referenceDecode([]byte(tt.line)); err != nil {
				t.Fatalf("the reference rejects the line too: %v", err)
			}
			_, err := Decode([]byte(tt.line))
			if err == nil || err.Error() != tt.want {
				t.Fatalf("got %v, want %s", err, tt.want)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("got %v, want it to wrap ErrMalformed", err)
			}
		})
	}
	t.Run("a bare null is malformed, not an envelope missing v", func(t *testing.T) {
		_, err := Decode([]byte("null"))
		if got, want := errorClass(err), "ErrMalformed"; got != want {
			t.Errorf("got %v (%s), want %s", err, got, want)
		}
	})
}

func TestDecodeErrorsSayWhatAndWhere(t *testing.T) {
	const head = `{"v":1,"kind":"result","run":"a","seq":1,"ts":"2026-11-21T10:00:00Z","check":"c","status":"ok"`
	tests := []struct {
		name, line, want string
	}{
		{"a missing colon names the key", `{"v":1,"seq" 5}`,
			`malformed json: byte 13: expected ':' after key "seq", found '5'`},
		{"a missing comma names the key before it", `{"v":1 "seq":5}`,
			`malformed json: byte 7: expected ',' or '}' after the value of "v", found '"'`},
		{"an empty line says so", ``,
			`malformed json: byte 0: a line must hold one JSON object, found end of line`},
		{"an array at the top is not an envelope", ` [1]`,
			`malformed json: byte 1: a line must hold one JSON object, found '['`},
		{"a negative seq names the field", `{"v":1,"seq":-1}`,
			`malformed json: byte 13: field seq: -1 is not an integer from 0 to 18446744073709551615`},
		{"a fractional count names the finding", head + `,"findings":[{"count":1.5}]}`,
			`malformed json: byte 116: field findings[0].count: 1.5 is not an integer from 0 to 18446744073709551615`},
		{"an event id past uint32 names the finding", head + `,"findings":[{},{"event_id":4294967296}]}`,
			`malformed json: byte 122: field findings[1].event_id: 4294967296 is not an integer from 0 to 4294967295`},
		{"a string where a number belongs names both", `{"v":"1"}`,
			`malformed json: byte 5: field v: expected a number, found a string`},
		{"an unknown key in a finding says which finding", head + `,"findings":[{"code":"a.b","colour":"red"}]}`,
			`malformed json: byte 121: unknown key "colour" in findings[0]`},
		{"a long unknown key is clipped", `{"` + strings.Repeat("k", 100) + `":1}`,
			`malformed json: byte 1: unknown key "` + strings.Repeat("k", 64) + `…"`},
		{"a raw control character in a string is refused", "{\"run\":\"a\nb\"}",
			`malformed json: byte 9: control character 0x0a in string must be escaped`},
		{"a bad escape is refused", `{"run":"a\qb"}`,
			`malformed json: byte 9: invalid escape in string: backslash followed by 'q'`},
		{"a short unicode escape is refused", `{"run":"\u12"}`,
			`malformed json: byte 8: \u must be followed by four hex digits`},
		{"a bad time names the field", `{"ts":"2026-13-01T00:00:00Z"}`,
			`malformed json: byte 6: field ts: parsing time "2026-13-01T00:00:00Z": month out of range`},
		{"an unterminated string is refused", `{"run":"abc`,
			`malformed json: byte 7: string not terminated`},
		{"a number missing its fraction digits is refused", head + `,"data":{"x":1.}}`,
			`malformed json: byte 109: expected a digit after the decimal point, found '}'`},
		{"a leading zero is refused", head + `,"data":[01]}`,
			`malformed json: byte 104: expected ',' or ']' after array element, found '1'`},
		{"findings that are not an array are refused", head + `,"findings":{}}`,
			`malformed json: byte 106: field findings: expected an array, found an object`},
		{"a finding that is not an object is refused", head + `,"findings":[null,"x"]}`,
			`malformed json: byte 112: field findings[1]: expected an object, found a string`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.line))
			if err == nil || err.Error() != tt.want {
				t.Fatalf("got  %v\nwant %s", err, tt.want)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("got %v, want it to wrap ErrMalformed", err)
			}
		})
	}
}

func TestDecodeReportsAnotherVersionFirst(t *testing.T) {
	for _, line := range []string{
		`{"v":2,"kind":"telemetry","seq":-1,"novel":{"x":[1]}}`,
		`{"v":-1}`,
		`{"v":1,"v":2}`,
		`{"v":2,"seq":"x"}`,
	} {
		_, err := Decode([]byte(line))
		if !errors.Is(err, ErrUnsupportedVersion) {
			t.Errorf("Decode(%s) = %v, want ErrUnsupportedVersion", line, err)
		}
	}
	for _, line := range []string{
		`{"v":2,"kind":`,
		`{"v":"2"}`,
		`{"v":2.0}`,
		`{"v":2,"v":"x"}`,
		`{"v":2}]`,
	} {
		_, err := Decode([]byte(line))
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("Decode(%s) = %v, want ErrMalformed", line, err)
		}
	}
}

func TestDecodeResultDoesNotAliasTheLine(t *testing.T) {
	line := realisticResult(7)
	e, err := Decode(line)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := referenceDecode(line)
	for i := range line {
		line[i] = '#'
	}
	if !reflect.DeepEqual(e, want) {
		t.Fatalf("after the line was overwritten:\ngot  %+v\nwant %+v", e, want)
	}
	e.Data[0] = '['
	if e.Summary != want.Summary {
		t.Errorf("writing to Data changed Summary to %q", e.Summary)
	}
}

func TestDecodeKeepsManyFindingsCheap(t *testing.T) {
	n := 20000
	line := []byte(`{"v":1,"kind":"result","run":"a","seq":1,"ts":"2026-11-21T10:00:00Z","check":"c","status":"ok","findings":[` +
		strings.TrimSuffix(strings.Repeat(`{"code":"a.b","severity":"info","message":"m"},`, n), ",") + `]}`)
	_, err := Decode(line)
	_, wantErr := referenceDecode(line)
	if err == nil || wantErr == nil || err.Error() != wantErr.Error() {
		t.Fatalf("got %v, want %v", err, wantErr)
	}
	allocated := testing.AllocsPerRun(5, func() { Decode(line) })
	if allocated > 20 {
		t.Errorf("decoding %d findings made %.0f allocations, want a few", n, allocated)
	}
}

func TestDecodeAllocatesOncePerKindOfThing(t *testing.T) {
	line := realisticResult(1)
	// Strings, data, findings, and the findings' times.
	if got := testing.AllocsPerRun(100, func() { Decode(line) }); got > 4 {
		t.Errorf("got %.0f allocations per Decode, want at most 4", got)
	}
}

func TestKeyTablesAgree(t *testing.T) {
	for i, n := range envelopeNames {
		if got := envelopeKey([]byte(n)); got != i {
			t.Errorf("envelopeKey(%q) = %d, want %d", n, got, i)
		}
	}
	for i, n := range findingNames {
		if got := findingKey([]byte(n)); got != i {
			t.Errorf("findingKey(%q) = %d, want %d", n, got, i)
		}
	}
	// Every json tag of Envelope and Finding has a key, so the scanner
	// cannot fall behind the types.
	for _, c := range []struct {
		typ    reflect.Type
		lookup func([]byte) int
		keys   int
	}{{reflect.TypeFor[Envelope](), envelopeKey, len(envelopeNames)}, {reflect.TypeFor[Finding](), findingKey, len(findingNames)}} {
		for i := 0; i < c.typ.NumField(); i++ {
			tag, _, _ := strings.Cut(c.typ.Field(i).Tag.Get("json"), ",")
			if c.lookup([]byte(tag)) < 0 {
				t.Errorf("%s field %s: tag %q has no key", c.typ.Name(), c.typ.Field(i).Name, tag)
			}
		}
		if got, want := c.typ.NumField(), c.keys; got != want {
			t.Errorf("%s has %d fields, the scanner knows %d", c.typ.Name(), got, want)
		}
	}
}

func TestDecodeAckUsesTheScanner(t *testing.T) {
	a, err := DecodeAck([]byte(" {\"v\":1,\"kind\":\"ack\",\"run\":\"r-1\",\"seq\":9}\n"))
	if err != nil || a != NewAck("r-1", 9) {
		t.Fatalf("got %+v, %v", a, err)
	}
	_, err = DecodeAck([]byte(`{"v":1,"kind":"ack","run":"r-1","seq":9,"ts":"2026-11-21T10:00:00Z"}`))
	if want := `malformed json: byte 40: unknown key "ts"`; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

// lineGen writes random guest lines token by token: mostly what an agent
// would send, with now and then a hostile variation in one token. Byte-level
// fuzzing seldom produces a line that is valid except for one token, which
// is where the two decoders are most likely to part.
type lineGen struct {
	r    *rand.Rand
	b    []byte
	rate int // one token in rate is hostile; 0 for none
}

func (g *lineGen) pick(xs ...string) string { return xs[g.r.IntN(len(xs))] }

// odd reports whether to make the next token hostile.
func (g *lineGen) odd() bool { return g.rate > 0 && g.r.IntN(g.rate) == 0 }

func (g *lineGen) put(s string) { g.b = append(g.b, s...) }

func (g *lineGen) ws() {
	switch {
	case g.odd():
		g.put(g.pick("\v", "\f", "\u00a0", "\x00", "\xff", "/**/"))
	case g.r.IntN(5) == 0:
		g.put(g.pick(" ", "\t", "\n", "\r", " \t\r\n "))
	}
}

func (g *lineGen) key(k string) {
	g.ws()
	if g.odd() {
		k = g.pick(strings.ToUpper(k), strings.ToUpper(k[:1])+k[1:], `\u00`+fmt.Sprintf("%x", k[0])+k[1:],
			strings.ReplaceAll(strings.ReplaceAll(k, "s", "ſ"), "k", "\u212a"), k+" ", "bogus", k+`\u0000`)
	}
	g.put(`"` + k + `"`)
	g.ws()
	if g.odd() {
		g.put(g.pick("", "=", "::"))
	} else {
		g.put(":")
	}
	g.ws()
}

func (g *lineGen) str(plain ...string) {
	if g.odd() {
		g.put(g.pick(`"\u00e9\ud83d\ude00"`, `"\ud800"`, `"\udc00\ud800x"`, `"\ud800\u0041"`, `"\"\\\/\b\f\n\r\t"`,
			"\"bad \xff\xc0\xaf\xed\xa0\x80 utf8\"", "\"raw\ttab\"", "\"del\x7f\"", `"\x41"`, `"\u12"`, `"unterminated`, `"\u0000"`,
			"\"\u2028 日本 😀\"", `"a\`, `null`, `1`, `{}`, `[]`, `true`, `"`+strings.Repeat("x", 300)+`"`))
		return
	}
	g.put(`"` + g.pick(plain...) + `"`)
}

func (g *lineGen) uint(plain string) {
	if g.odd() {
		g.put(g.pick("0", "-0", "-1", "1.0", "1e2", "01", "1.", "-", "18446744073709551615", "18446744073709551616",
			"4294967295", "4294967296", "null", `"1"`, "true", "[]", "1E+2", "2.5e-3"))
		return
	}
	g.put(plain)
}

func (g *lineGen) time() {
	if g.odd() {
		g.put(g.pick(`"2026-11-21T10:00:00.123456789123+05:30"`, `"2026-11-21 10:00:00Z"`, `"2026-11-21t10:00:00z"`,
			`"2026-13-21T10:00:00Z"`, `"2026-11-21T10:00:00\u005a"`, `"2026-11-21T10:00:00+24:00"`, `"0000-01-01T00:00:00Z"`,
			`"2026-11-21T10:00:00,5Z"`, `""`, `null`, `1700000000`, `"2026-11-21T1:00:00Z"`, `"2026-11-21T10:00:00-00:00"`))
		return
	}
	g.put(g.pick(`"2026-11-21T10:00:00Z"`, `"2026-11-21T09:58:30.5Z"`, `"2026-11-21T12:00:00+02:00"`))
}

func (g *lineGen) comma() {
	g.ws()
	if g.odd() {
		g.put(g.pick("", ",,", ";"))
	} else {
		g.put(",")
	}
}

// value writes a random JSON value, rarely a malformed or deep one.
func (g *lineGen) value(depth int) {
	if g.odd() {
		g.put(g.pick("01", "1.", ".5", "+1", "-", "1e", "tru", "nul", "[1,]", `{"a":1,}`, `{"a"}`, `[`, `{"a":1`,
			strings.Repeat("[", 70)+strings.Repeat("]", 70), `{"a":1,"a":2}`, "\"\x01\""))
		return
	}
	switch n := g.r.IntN(8); {
	case n < 2 && depth < 4:
		g.put("{")
		for i := range g.r.IntN(4) {
			if i > 0 {
				g.comma()
			}
			g.key(g.pick("pid", "name", "cpu_pct", "rss", "top"))
			g.value(depth + 1)
		}
		g.ws()
		g.put("}")
	case n < 4 && depth < 4:
		g.put("[")
		for i := range g.r.IntN(4) {
			if i > 0 {
				g.comma()
			}
			g.ws()
			g.value(depth + 1)
		}
		g.ws()
		g.put("]")
	case n < 5:
		g.put(g.pick("0", "-0", "12.5", "123456789", "-1.5e-3", "1E10", "18446744073709551616"))
	case n < 6:
		g.put(g.pick("true", "false", "null"))
	default:
		g.str("worker-1", "www-data", "é", "")
	}
}

func (g *lineGen) finding() {
	if g.odd() {
		g.put(g.pick("null", "1", `"x"`, "[]"))
		return
	}
	g.put("{")
	fields := []string{"code", "severity", "message"}
	for _, f := range []string{"source", "provider", "event_id", "unit", "count", "first", "last"} {
		if g.r.IntN(2) == 0 {
			fields = append(fields, f)
		}
	}
	g.r.Shuffle(len(fields), func(i, j int) { fields[i], fields[j] = fields[j], fields[i] })
	if g.odd() {
		fields = append(fields, fields[0])
	}
	for i, f := range fields {
		if i > 0 {
			g.comma()
		}
		g.key(f)
		switch f {
		case "code":
			g.str("disk.io_error", "res.cpu_high")
		case "severity":
			g.str("info", "warn", "crit")
		case "event_id":
			g.uint("7")
		case "count":
			g.uint("3")
		case "first", "last":
			g.time()
		default:
			g.str("sda: I/O error", "System", "sda.device", "é")
		}
	}
	g.ws()
	g.put("}")
}

// line writes one envelope line.
func (g *lineGen) line() []byte {
	g.b = g.b[:0]
	g.rate = []int{0, 0, 200, 60, 20, 8}[g.r.IntN(6)]
	if g.odd() {
		g.put(g.pick("\xef\xbb\xbf", "null", "[", " "))
	}
	g.ws()
	g.put("{")
	kind := g.pick("result", "event", "hello", "heartbeat")
	fields := []string{"v", "kind", "run", "seq", "ts"}
	switch kind {
	case "result", "event":
		fields = append(fields, "check", "status", "summary", "findings", "data")
	default:
		fields = append(fields, "data")
	}
	g.r.Shuffle(len(fields), func(i, j int) { fields[i], fields[j] = fields[j], fields[i] })
	if g.odd() {
		fields = append(fields, fields[g.r.IntN(len(fields))])
	}
	for i, f := range fields {
		if i > 0 {
			g.comma()
		}
		g.key(f)
		switch f {
		case "v":
			g.uint("1")
		case "kind":
			g.str(kind)
		case "run":
			g.str("r7Kq2mX9", "R-7_k")
		case "seq":
			g.uint(g.pick("1", "42", "18446744073709551615"))
		case "ts":
			g.time()
		case "check":
			g.str("resources", "disk")
		case "status":
			g.str("ok", "warn", "crit", "unknown")
		case "summary":
			g.str("cpu 93% for 3 samples", "", "é <b> & \u2028")
		case "findings":
			if g.odd() {
				g.put(g.pick("null", "[]", "{}", `"x"`))
				break
			}
			g.put("[")
			for i := range g.r.IntN(3) {
				if i > 0 {
					g.comma()
				}
				g.ws()
				g.finding()
			}
			g.ws()
			g.put("]")
		case "data":
			switch kind {
			case "hello":
				g.put(`{"hostname":"web-1","os":"linux","agent_version":"0.1.0","checks":["disk"]}`)
			case "heartbeat":
				g.put(`{"uptime_s":86400,"spooled":0}`)
			default:
				g.value(1)
			}
		}
	}
	g.ws()
	g.put("}")
	g.ws()
	if g.odd() {
		g.put(g.pick("}", "]", "x", "{}", "\n}"))
	}
	return g.b
}

func TestDecodeMatchesReferenceOnGeneratedLines(t *testing.T) {
	n := 20000
	if testing.Short() {
		n = 2000
	}
	g := lineGen{r: rand.New(rand.NewPCG(1, 2))}
	accepted := 0
	for range n {
		line := g.line()
		got, gotErr := Decode(line)
		want, wantErr := referenceDecode(line)
		matchReference(t, line, got, gotErr, want, wantErr, knownDifference(line, envelopeNames[:]))
		if gotErr == nil {
			accepted++
		}
	}
	// The generator is only useful if many lines pass and many fail.
	if accepted < n/10 || accepted > n*9/10 {
		t.Errorf("%d of %d generated lines were accepted; the generator needs retuning", accepted, n)
	}
}
