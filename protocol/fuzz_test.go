package protocol

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecode feeds arbitrary streams through the Reader and Decode: nothing
// panics, the reader never holds more than one line's worth of memory, every
// accepted envelope survives a round trip unchanged, and everything else is
// rejected with a LineError.
//
//	go test ./protocol -run XXX -fuzz FuzzDecode -fuzztime 30s
func FuzzDecode(f *testing.F) {
	golden, _ := filepath.Glob(filepath.Join("testdata", "golden", "*.ndjson"))
	var all []byte
	for _, g := range golden {
		b, err := os.ReadFile(g)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		all = append(all, b...)
	}
	f.Add(all)
	f.Add([]byte("\n\n{\"v\":1,\"kind\":\"heartbeat\",\"run\":\"r\",\"seq\":1,\"ts\":\"2026-11-21T09:30:00Z\"}\r\n{\"v\":1"))
	f.Add([]byte(`{"v":1,"kind":"result","run":"r","seq":1,"ts":"2026-11-21T09:30:00+02:00","check":"c","status":"ok","data":{"a":[[[[{}]]]],"\u00e9":"\ud800"}}` + "\n"))
	f.Add([]byte(`{"v":1,"kind":"event","run":"r","seq":18446744073709551615,"ts":"2026-11-21T09:30:00.123456789Z","check":"c","status":"crit","findings":[{"code":"a.b","severity":"crit","message":"\u0000","event_id":4294967295,"count":1}]}` + "\n"))

	const max = 4096
	f.Fuzz(func(t *testing.T, stream []byte) {
		r := NewReader(bytes.NewReader(stream), max)
		for {
			e, line, err := r.Next()
			if err == io.EOF {
				break
			}
			if cap(r.buf) > max+1 {
				t.Fatalf("reader buffer grew to %d bytes, limit %d", cap(r.buf), max+1)
			}
			var le *LineError
			if errors.As(err, &le) {
				continue
			}
			if err != nil {
				t.Fatalf("Next: %v", err)
			}
			if len(line) > max {
				t.Fatalf("accepted a %d-byte line, limit %d", len(line), max)
			}
			if len(e.Data) > len(line) {
				t.Fatalf("decoded data is %d bytes, longer than its %d-byte line", len(e.Data), len(line))
			}
			wire, err := Marshal(e)
			if err != nil {
				t.Fatalf("accepted envelope does not marshal: %v", err)
			}
			again, err := Decode(wire[:len(wire)-1])
			if err != nil {
				t.Fatalf("re-encoded envelope rejected: %v\nline: %s\nwire: %s", err, line, wire)
			}
			if diff := envelopeDiff(again, e); diff != "" {
				t.Fatalf("round trip changed the envelope: %s", diff)
			}
		}
	})
}
