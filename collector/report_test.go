package collector

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
)

func marshalReport(t testing.TB, r protocol.Report) []byte {
	t.Helper()
	b, err := json.Marshal(&r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var sampleReport = protocol.Report{
	V: protocol.Version, Host: "kvm-01", VM: "web-1", UUID: "5f0c", Channel: "org.guestdiag.0",
	Received: time.Date(2026, 12, 1, 10, 0, 0, 123456789, time.UTC),
	Guest:    json.RawMessage(`{"v":1,"kind":"heartbeat","run":"r1","seq":7,"ts":"2026-12-01T10:00:00Z","data":{"uptime_sec":5}}`),
}

// reportInputs are Report lines of every shape: what the relay writes,
// and what only encoding/json reads or nothing reads.
func reportInputs(t testing.TB) map[string][]byte {
	noUUID := sampleReport
	noUUID.UUID = ""
	escaped := sampleReport
	escaped.VM = "<web>\u00e9"
	canonical := string(marshalReport(t, sampleReport))
	return map[string][]byte{
		"the relay's line":                   []byte(canonical),
		"a line without uuid":                marshalReport(t, noUUID),
		"a line with escaped names":          marshalReport(t, escaped),
		"a line with spaces":                 []byte(`{ "v": 1, "host": "h", "vm": "v", "channel": "c", "received": "2026-12-01T10:00:00Z", "guest": {"v":1} }`),
		"fields in another order":            []byte(`{"host":"h","v":1,"vm":"v","channel":"c","received":"2026-12-01T10:00:00Z","guest":{}}`),
		"a repeated key after guest":         []byte(`{"v":1,"host":"h","vm":"v","channel":"c","received":"2026-12-01T10:00:00Z","guest":{},"host":"x"}`),
		"a trailing newline":                 []byte(canonical + "\n"),
		"trailing garbage":                   []byte(canonical + "x"),
		"a truncated line":                   []byte(canonical[:len(canonical)-5]),
		"guest that is not JSON":             []byte(`{"v":1,"host":"h","vm":"v","channel":"c","received":"2026-12-01T10:00:00Z","guest":{x}}`),
		"guest that is null":                 []byte(`{"v":1,"host":"h","vm":"v","channel":"c","received":"2026-12-01T10:00:00Z","guest":null}`),
		"a version with a leading zero":      []byte(`{"v":01,"host":"h","vm":"v","channel":"c","received":"2026-12-01T10:00:00Z","guest":{}}`),
		"a fractional version":               []byte(`{"v":1.5,"host":"h","vm":"v","channel":"c","received":"2026-12-01T10:00:00Z","guest":{}}`),
		"a huge version":                     []byte(`{"v":123456789012345678901,"host":"h","vm":"v","channel":"c","received":"2026-12-01T10:00:00Z","guest":{}}`),
		"a received time that is not a time": []byte(`{"v":1,"host":"h","vm":"v","channel":"c","received":"yesterday","guest":{}}`),
		"a control character in a name":      []byte("{\"v\":1,\"host\":\"h\x01\",\"vm\":\"v\",\"channel\":\"c\",\"received\":\"2026-12-01T10:00:00Z\",\"guest\":{}}"),
		"invalid UTF-8 in a name":            []byte("{\"v\":1,\"host\":\"h\xff\",\"vm\":\"v\",\"channel\":\"c\",\"received\":\"2026-12-01T10:00:00Z\",\"guest\":{}}"),
		"an empty line":                      {},
	}
}

func TestDecodeReportAgreesWithEncodingJSON(t *testing.T) {
	for name, in := range reportInputs(t) {
		t.Run(name+" decodes as encoding/json decodes it", func(t *testing.T) {
			got, gotErr := decodeReport(in)
			var want protocol.Report
			wantErr := json.Unmarshal(in, &want)
			if (gotErr == nil) != (wantErr == nil) {
				t.Fatalf("error %v, encoding/json says %v", gotErr, wantErr)
			}
			if gotErr == nil && !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
}

func TestScanReportReadsTheRelaysLines(t *testing.T) {
	in := reportInputs(t)
	for _, name := range []string{"the relay's line", "a line without uuid"} {
		t.Run(name+" takes the fast path", func(t *testing.T) {
			if _, ok := scanReport(in[name]); !ok {
				t.Errorf("scanReport(%s) fell back to encoding/json", in[name])
			}
		})
	}
}

func FuzzDecodeReport(f *testing.F) {
	for _, in := range reportInputs(f) {
		f.Add(in)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r, ok := scanReport(in)
		if !ok {
			return
		}
		var want protocol.Report
		if err := json.Unmarshal(in, &want); err != nil {
			t.Fatalf("scanReport read %q, which encoding/json rejects: %v", in, err)
		}
		if !reflect.DeepEqual(r, want) {
			t.Fatalf("scanReport(%q) = %+v, encoding/json %+v", in, r, want)
		}
	})
}
