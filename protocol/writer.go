package protocol

import (
	"encoding/json"
	"fmt"
	"io"
)

// Marshal returns v as one wire line, newline included. It refuses lines
// longer than MaxLineLen, which no reader would accept.
func Marshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxLineLen {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrLineTooLong, len(b), MaxLineLen)
	}
	return append(b, '\n'), nil
}

// Writer writes one value per line.
type Writer struct {
	w io.Writer
}

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write marshals v and writes it as a single line in a single Write call, so
// lines from one Writer never interleave.
func (w *Writer) Write(v any) error {
	b, err := Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.w.Write(b)
	return err
}
