package protocol

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

type readResult struct {
	line string
	err  error // a sentinel the line error wraps, or nil
}

func readAll(t *testing.T, r *Reader) []readResult {
	t.Helper()
	var out []readResult
	for {
		line, err := r.ReadLine()
		if err == io.EOF {
			return out
		}
		var le *LineError
		switch {
		case errors.As(err, &le):
			out = append(out, readResult{err: errors.Unwrap(le)})
		case err != nil:
			t.Fatalf("ReadLine: %v", err)
		default:
			out = append(out, readResult{line: string(line)})
		}
	}
}

func TestReaderSplitsLinesAndDropsWhatItMust(t *testing.T) {
	long := strings.Repeat("x", 40)
	tests := []struct {
		name   string
		max    int
		stream string
		want   []readResult
	}{
		{"skips the blank lines an agent writes on connect", 16, "\n\na\n\nb\n", []readResult{{line: "a"}, {line: "b"}}},
		{"strips a carriage return", 16, "a\r\nb\n", []readResult{{line: "a"}, {line: "b"}}},
		{"accepts a line of exactly the limit", 40, long + "\n", []readResult{{line: long}}},
		{"drops a line one byte over the limit and resyncs", 39, "a\n" + long + "\nb\n", []readResult{{line: "a"}, {err: ErrLineTooLong}, {line: "b"}}},
		{"drops a line far over the limit and resyncs", 8, strings.Repeat("y", 200000) + "\nok\n", []readResult{{err: ErrLineTooLong}, {line: "ok"}}},
		{"reports a partial last line as truncated", 16, "a\nhalf", []readResult{{line: "a"}, {err: ErrTruncated}}},
		{"reports an oversized partial last line as truncated", 4, "a\nhalfway there", []readResult{{line: "a"}, {err: ErrTruncated}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, mode := range []struct {
				name string
				wrap func(io.Reader) io.Reader
			}{{"whole", func(r io.Reader) io.Reader { return r }}, {"byte at a time", iotest.OneByteReader}} {
				r := NewReader(mode.wrap(strings.NewReader(tt.stream)), tt.max)
				got := readAll(t, r)
				if len(got) != len(tt.want) {
					t.Fatalf("%s: got %d results %v, want %d %v", mode.name, len(got), got, len(tt.want), tt.want)
				}
				for i := range got {
					if got[i].line != tt.want[i].line || !errors.Is(got[i].err, tt.want[i].err) {
						t.Errorf("%s: result %d = %+v, want %+v", mode.name, i, got[i], tt.want[i])
					}
				}
				if cap(r.buf) > tt.max+1 {
					t.Errorf("%s: line buffer grew to %d bytes, limit %d", mode.name, cap(r.buf), tt.max+1)
				}
			}
		})
	}
}

func TestReaderCountsAndLocatesDroppedLines(t *testing.T) {
	good := `{"v":1,"kind":"heartbeat","run":"r","seq":1,"ts":"2026-11-21T09:30:00Z"}`
	stream := good + "\n" + "{not json}\n" + strings.Repeat("z", 100) + "\n" + good + "\n" + `{"v":1`
	r := NewReader(strings.NewReader(stream), 90)
	var lines []uint64
	var accepted int
	for {
		_, _, err := r.Next()
		if err == io.EOF {
			break
		}
		var le *LineError
		if errors.As(err, &le) {
			lines = append(lines, le.Line)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		accepted++
	}
	if accepted != 2 {
		t.Errorf("accepted %d good lines, want 2", accepted)
	}
	if want := []uint64{2, 3, 5}; len(lines) != len(want) || lines[0] != want[0] || lines[1] != want[1] || lines[2] != want[2] {
		t.Errorf("dropped lines %v, want %v", lines, want)
	}
	want := ReaderStats{Lines: 3, Oversized: 1, Malformed: 1, Truncated: 1}
	if got := r.Stats(); got != want {
		t.Errorf("stats %+v, want %+v", got, want)
	}
}
