package protocol

import (
	"bytes"
	"fmt"
)

// envelopeDiff compares two envelopes by their wire form, which is what a
// peer sees; it returns "" when they are the same.
func envelopeDiff(got, want Envelope) string {
	g, err := Marshal(got)
	if err != nil {
		return fmt.Sprintf("marshal got: %v", err)
	}
	w, err := Marshal(want)
	if err != nil {
		return fmt.Sprintf("marshal want: %v", err)
	}
	if !bytes.Equal(g, w) {
		return fmt.Sprintf("envelopes differ\n got: %s\nwant: %s", g, w)
	}
	return ""
}
