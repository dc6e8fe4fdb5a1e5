package protocol

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// Line-level errors. A Reader returns them wrapped in a *LineError and keeps
// going at the next line.
var (
	ErrLineTooLong = errors.New("line too long")
	ErrTruncated   = errors.New("truncated line at end of stream")
)

// LineError says which line of a stream was dropped and why. It never ends
// the stream: call the reader again for the next line.
type LineError struct {
	Line   uint64 // 1-based line number in the stream
	Offset int64  // byte offset of the line's first byte
	Err    error
}

func (e *LineError) Error() string {
	return fmt.Sprintf("line %d (byte %d): %v", e.Line, e.Offset, e.Err)
}

func (e *LineError) Unwrap() error { return e.Err }

// ReaderStats counts what a Reader has seen.
type ReaderStats struct {
	Lines     uint64 // non-blank lines returned
	Oversized uint64 // lines dropped for exceeding the limit
	Malformed uint64 // lines that failed to decode or validate (Next only)
	Truncated uint64 // partial last lines at end of stream
}

// Reader splits an NDJSON stream into lines of at most max bytes. It never
// holds more than max bytes of one line in memory: a longer line is skipped
// up to its newline and reported, and reading resumes after it. Blank lines,
// such as the lone newline an agent writes on every connect, are skipped.
type Reader struct {
	br    *bufio.Reader
	max   int
	buf   []byte
	off   int64
	line  uint64
	stats ReaderStats
}

// NewReader returns a Reader with the given line limit; max <= 0 means
// MaxLineLen.
func NewReader(r io.Reader, max int) *Reader { return NewReaderSize(r, max, 64<<10) }

// NewReaderSize is NewReader with a read buffer of bufSize bytes (at most
// max+1). Lines longer than the buffer are read in pieces, so a small
// buffer bounds memory where a relay holds a thousand readers, at the cost
// of more reads for long lines.
func NewReaderSize(r io.Reader, limit, bufSize int) *Reader {
	if limit <= 0 {
		limit = MaxLineLen
	}
	size := min(max(bufSize, 16), limit+1)
	return &Reader{br: bufio.NewReaderSize(r, size), max: limit}
}

// Stats returns the counters so far.
func (r *Reader) Stats() ReaderStats { return r.stats }

// ReadLine returns the next non-blank line without its newline (and without
// a trailing \r). The slice is valid until the next call. Per-line problems
// come back as *LineError; other errors, io.EOF included, end the stream.
func (r *Reader) ReadLine() ([]byte, error) {
	for {
		r.buf = r.buf[:0]
		start := r.off
		over := false
		for {
			chunk, err := r.br.ReadSlice('\n')
			r.off += int64(len(chunk))
			if !over {
				if len(r.buf)+len(chunk) > r.max+1 { // +1 for the newline
					over = true
					r.buf = r.buf[:0]
				} else {
					r.grow(len(chunk))
					r.buf = append(r.buf, chunk...)
				}
			}
			if err == bufio.ErrBufferFull {
				continue
			}
			if err != nil {
				if err == io.EOF && (len(r.buf) > 0 || over) {
					r.line++
					r.stats.Truncated++
					return nil, &LineError{Line: r.line, Offset: start, Err: ErrTruncated}
				}
				return nil, err
			}
			break
		}
		r.line++
		if over {
			r.stats.Oversized++
			return nil, &LineError{Line: r.line, Offset: start, Err: fmt.Errorf("%w: over %d bytes", ErrLineTooLong, r.max)}
		}
		b := r.buf[:len(r.buf)-1]
		if n := len(b); n > 0 && b[n-1] == '\r' {
			b = b[:n-1]
		}
		if len(b) == 0 {
			continue
		}
		r.stats.Lines++
		return b, nil
	}
}

// grow makes room for n more bytes without ever letting the buffer's
// capacity pass max+1, so a hostile stream cannot make the reader allocate
// more than one line's worth.
func (r *Reader) grow(n int) {
	need := len(r.buf) + n
	if need <= cap(r.buf) {
		return
	}
	c := min(max(need, 2*cap(r.buf)), r.max+1)
	nb := make([]byte, len(r.buf), c)
	copy(nb, r.buf)
	r.buf = nb
}

// Next reads, decodes and validates the next guest envelope. It returns the
// raw line too (valid until the next call) so that a relay can forward the
// exact bytes it checked. Decoding failures come back as *LineError.
func (r *Reader) Next() (Envelope, []byte, error) {
	line, err := r.ReadLine()
	if err != nil {
		return Envelope{}, nil, err
	}
	e, err := Decode(line)
	if err != nil {
		r.stats.Malformed++
		return Envelope{}, nil, &LineError{Line: r.line, Offset: r.off - int64(len(line)) - 1, Err: err}
	}
	return e, line, nil
}
