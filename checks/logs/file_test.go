package logs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// recSink records what readers push.
type recSink struct {
	mu        sync.Mutex
	positions map[string]Position
	starts    map[string]string
	errs      map[string]error
	msgs      []string
	entries   []entry
	read      uint64
}

func newRecSink() *recSink {
	return &recSink{positions: map[string]Position{}, starts: map[string]string{}, errs: map[string]error{}}
}

func (s *recSink) push(source string, pos Position, read uint64, entries []entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.positions[source] = pos
	s.read += read
	for _, e := range entries {
		s.msgs = append(s.msgs, e.Message)
		s.entries = append(s.entries, e)
	}
}

func (s *recSink) started(source, kind, how string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.starts[source] = how
}

func (s *recSink) failed(source string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs[source] = err
}

func (s *recSink) position(source string) (Position, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.positions[source]
	return p, ok
}

// take returns the messages recorded since the last take.
func (s *recSink) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.msgs
	s.msgs = nil
	return m
}

func newTestLogsFiles(t *testing.T, globs ...string) *fileSource {
	t.Helper()
	f, err := newFilter(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	return &fileSource{globs: globs, filter: f, poll: 10 * time.Millisecond, scanBytes: 1 << 10, now: time.Now}
}

func appendLines(t *testing.T, path string, lines ...string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, l := range lines {
		if _, err := f.WriteString(l + "\n"); err != nil {
			t.Fatal(err)
		}
	}
}

func syslogLine(n int, msg string) string {
	return fmt.Sprintf("Jun 10 06:13:%02d web1 app[%d]: %s", n%60, 1000+n, msg)
}

// TestLogsFileTail follows one file through appends, a rotation, a
// truncation and restarts, and checks every error line is reported once.
func TestLogsFileTail(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "syslog")
	appendLines(t, path, syslogLine(1, "old error before the agent started"), syslogLine(2, "service started"))
	r := newTestLogsFiles(t, path)
	sink := newRecSink()

	// A scan without a saved position reads the recent tail.
	if err := r.read(context.Background(), false, sink); err != nil {
		t.Fatal(err)
	}
	want := func(step string, msgs ...string) {
		t.Helper()
		if got := sink.take(); !slices.Equal(got, msgs) {
			t.Fatalf("%s: got %q, want %q", step, got, msgs)
		}
	}
	want("first scan", "old error before the agent started")
	if sink.starts[path] != "recent_tail" {
		t.Errorf("start = %q, want recent_tail", sink.starts[path])
	}

	// Restarts from the saved position read only what is new.
	appendLines(t, path, syslogLine(3, "disk error 1"), syslogLine(4, "all fine"))
	if err := r.read(context.Background(), false, sink); err != nil {
		t.Fatal(err)
	}
	want("after append", "disk error 1")
	if sink.starts[path] != "saved_position" {
		t.Errorf("start = %q, want saved_position", sink.starts[path])
	}

	// A half-written line waits for its newline.
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(syslogLine(5, "half a failed"))
	f.Close()
	r.read(context.Background(), false, sink)
	want("partial line")
	appendLines(t, path, " line")
	r.read(context.Background(), false, sink)
	want("completed line", "half a failed line")

	// Rotation while stopped: the rest of the old file is read under its
	// new name, then the new file from its start.
	appendLines(t, path, syslogLine(6, "error written just before rotation"))
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendLines(t, path, syslogLine(7, "error in the new file"))
	tails := map[string]*tail{}
	tl, err := r.open(path, sink, true, false)
	if err != nil {
		t.Fatal(err)
	}
	tails[path] = tl
	defer tl.close()
	if sink.starts[path] != "rotated" {
		t.Errorf("start = %q, want rotated", sink.starts[path])
	}
	if err := tl.poll(sink); err != nil {
		t.Fatal(err)
	}
	want("rotation while stopped", "error written just before rotation", "error in the new file")

	// Rotation while following: the old file, still open, is read to its
	// end (last line without newline included) before the new one.
	appendLines(t, path, syslogLine(8, "error before live rotation"))
	tl.poll(sink)
	want("before live rotation", "error before live rotation")
	os.Rename(path, path+".2")
	f, _ = os.OpenFile(path+".2", os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(syslogLine(9, "late error into the rotated file"))
	f.Close()
	appendLines(t, path, syslogLine(10, "first error of the fresh file"))
	if err := tl.poll(sink); err != nil {
		t.Fatal(err)
	}
	want("live rotation", "late error into the rotated file", "first error of the fresh file")

	// Truncation (copytruncate): the file is read again from 0.
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	tl.poll(sink)
	appendLines(t, path, syslogLine(11, "error after truncation"))
	tl.poll(sink)
	want("truncation", "error after truncation")

	// Truncated and rewritten past the old offset between two polls: the
	// first line differs, so it is still seen.
	os.Truncate(path, 0)
	appendLines(t, path, syslogLine(12, "rewritten from scratch, a long first line to get past the old offset"), syslogLine(13, "error after rewrite"), syslogLine(14, "filler"), syslogLine(15, "filler"))
	tl.poll(sink)
	want("rewrite", "error after rewrite")

	// A restart from the last position reads nothing again.
	tl.close()
	if err := r.read(context.Background(), false, sink); err != nil {
		t.Fatal(err)
	}
	want("restart")
	if len(sink.errs) > 0 {
		t.Errorf("errors: %v", sink.errs)
	}
}

func TestLogsFileFollowNewFileFromStart(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "a.log")
	appendLines(t, old, "history error that is not reported")
	r := newTestLogsFiles(t, filepath.Join(dir, "*.log"))
	sink := newRecSink()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.read(ctx, true, sink) }()
	waitFor(t, func() bool { _, ok := sink.position(old); return ok })
	appendLines(t, old, "new error in a")
	appendLines(t, filepath.Join(dir, "b.log"), "error in a file created later")
	waitFor(t, func() bool { sink.mu.Lock(); defer sink.mu.Unlock(); return len(sink.msgs) == 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := sink.take()
	slices.Sort(got)
	if want := []string{"error in a file created later", "new error in a"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if sink.starts[old] != "end" {
		t.Errorf("start of the file there first = %q, want end", sink.starts[old])
	}
}

func TestLogsFileLongLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "syslog")
	appendLines(t, path, "error "+strings.Repeat("x", 3*maxLine), "second error")
	r := newTestLogsFiles(t, path)
	r.scanBytes = 1 << 30
	sink := newRecSink()
	r.read(context.Background(), false, sink)
	got := sink.take()
	if len(got) != 2 || len(got[0]) != maxLine || got[1] != "second error" {
		t.Fatalf("got %d messages, first %d bytes", len(got), len(got[0]))
	}
	fi, _ := os.Stat(path)
	if p := sink.positions[path]; p.Offset != fi.Size() {
		t.Errorf("offset %d, want %d", p.Offset, fi.Size())
	}
}

// waitFor polls cond until it holds or 5 s pass.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestParseLogsSyslogLine(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name, line         string
		wantTime           time.Time
		wantIdent, wantMsg string
		wantPID            int
	}{
		{"a traditional line with a pid", "Jan  2 03:00:01 web1 CRON[4321]: (root) CMD (run-parts)", time.Date(2025, 1, 2, 3, 0, 1, 0, time.UTC), "CRON", "(root) CMD (run-parts)", 4321},
		{"a December line read in January is last year's", "Dec 31 23:59:59 web1 kernel: [ 12.345] oops", time.Date(2024, 12, 31, 23, 59, 59, 0, time.UTC), "kernel", "[ 12.345] oops", 0},
		{"an RFC 3339 line", "2025-01-02T03:04:00.123456+01:00 web1 systemd[1]: Failed to start nginx.service.", time.Date(2025, 1, 2, 2, 4, 0, 123456000, time.UTC), "systemd", "Failed to start nginx.service.", 1},
		{"a line without tag", "Jan  2 03:00:01 web1 just text here", time.Date(2025, 1, 2, 3, 0, 1, 0, time.UTC), "", "just text here", 0},
		{"a line in no known format", "panic: runtime error", now, "", "panic: runtime error", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := parseSyslogLine([]byte(tt.line), now)
			if !l.time.Equal(tt.wantTime) || l.ident != tt.wantIdent || string(l.msg) != tt.wantMsg || l.pid != tt.wantPID {
				t.Errorf("got %v %q %q %d, want %v %q %q %d", l.time, l.ident, l.msg, l.pid, tt.wantTime, tt.wantIdent, tt.wantMsg, tt.wantPID)
			}
		})
	}
}
