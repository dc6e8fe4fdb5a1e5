package protocol

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// TestGolden pins the wire bytes of every kind. A change to the format shows
// up here as a diff; run `go test ./protocol -run Golden -update` to accept it.
func TestGolden(t *testing.T) {
	for name, v := range exampleEnvelopes() {
		t.Run(name, func(t *testing.T) {
			got, err := Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", "golden", name+".ndjson")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("wire bytes changed\n got: %s\nwant: %s", got, want)
			}
		})
	}
}

// TestGoldenDecodes reads every golden line back: envelopes through Decode,
// the ack through DecodeAck, and compares with the value that made it.
func TestGoldenDecodes(t *testing.T) {
	for name, v := range exampleEnvelopes() {
		t.Run(name, func(t *testing.T) {
			line, err := os.ReadFile(filepath.Join("testdata", "golden", name+".ndjson"))
			if err != nil {
				t.Fatal(err)
			}
			line = bytes.TrimSuffix(line, []byte("\n"))
			if want, ok := v.(Ack); ok {
				got, err := DecodeAck(line)
				if err != nil || got != want {
					t.Errorf("DecodeAck = %+v, %v; want %+v", got, err, want)
				}
				return
			}
			got, err := Decode(line)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if diff := envelopeDiff(got, v.(Envelope)); diff != "" {
				t.Error(diff)
			}
		})
	}
}
