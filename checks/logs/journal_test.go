package logs

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseLogsJournal(t *testing.T) {
	b, err := os.ReadFile("testdata/journal.json")
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	tests := []struct {
		name      string
		pri       int
		unit, msg string
		pid       int
	}{
		{"a service's stdout names its unit", 3, "nginx.service", "2024/06/10 06:13:20 [emerg] 812#812: bind() to 0.0.0.0:80 failed (98: Address already in use)", 812},
		{"a kernel entry names the kernel", 2, "kernel", "I/O error, dev vda, sector 2048 op 0x1:(WRITE) flags 0x800 phys_seg 1 prio class 2", 0},
		{"a multi-line message keeps its lines", 3, "backup.service", "rsync: [sender] write error: Broken pipe (32)\nrsync error: error in rsync protocol data stream (code 12) at io.c(848) [sender=3.2.7]", 4242},
		{"a binary message is given as bytes", 3, "app.service", "\x1b[31mERROR\x1b[0m payment worker crashed: invalid byte \xff in input", 5150},
		{"priority emerg", 0, "ssh.service", "fatal: Access denied for user root by PAM account configuration [preauth]", 977},
		{"a message too large to print is said so", 3, "big", "(message too large to print)", 77},
		{"a repeated field gives its first value", 3, "dup.service", "repeated field identifier", 88},
	}
	if len(lines) != len(tests) {
		t.Fatalf("%d fixture lines, %d cases", len(lines), len(tests))
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, cursor, err := parseJournal(lines[i])
			if err != nil {
				t.Fatal(err)
			}
			if e.Priority != tt.pri || e.Unit != tt.unit || e.Message != tt.msg || e.PID != tt.pid {
				t.Errorf("got %d %q %q %d, want %d %q %q %d", e.Priority, e.Unit, e.Message, e.PID, tt.pri, tt.unit, tt.msg, tt.pid)
			}
			if !strings.HasPrefix(cursor, "s=e5c9ea5d") || e.Time.Year() != 2024 {
				t.Errorf("cursor %q time %v", cursor, e.Time)
			}
		})
	}
	if _, _, err := parseJournal([]byte(`{"MESSAGE":"no cursor"}`)); err == nil {
		t.Error("an entry without cursor parsed")
	}
}

// TestLogsJournalReader runs the reader against a stand-in journalctl that
// prints the fixture and records its arguments.
func TestLogsJournalReader(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the stand-in journalctl is a shell script")
	}
	dir := t.TempDir()
	fixture, _ := filepath.Abs("testdata/journal.json")
	script := filepath.Join(dir, "journalctl")
	os.WriteFile(script, []byte("#!/bin/sh\necho \"$@\" >> "+dir+"/args\ncat "+fixture+"\n"), 0o755)
	f, _ := newFilter(DefaultConfig())
	r := &journalReader{command: script, filter: f, scanWindow: 5 * time.Minute, now: time.Now}
	sink := newRecSink()
	if err := r.read(context.Background(), false, sink); err != nil {
		t.Fatal(err)
	}
	if len(sink.msgs) != 7 || sink.read != 7 || sink.starts["journald"] != "recent_tail" {
		t.Fatalf("%d entries, read %d, start %q", len(sink.msgs), sink.read, sink.starts["journald"])
	}
	last := sink.positions["journald"].Cursor
	if !strings.Contains(last, "i=1a31") {
		t.Errorf("position %q, want the last entry's cursor", last)
	}
	r.read(context.Background(), false, sink)
	if err := r.read(context.Background(), true, sink); err == nil {
		t.Error("a follow that ends returned nil")
	}
	args, _ := os.ReadFile(filepath.Join(dir, "args"))
	got := strings.Split(strings.TrimSpace(string(args)), "\n")
	if len(got) != 3 || !strings.Contains(got[0], "--since=@") || !strings.Contains(got[1], "--after-cursor="+last) ||
		!strings.Contains(got[2], "--follow") || !strings.Contains(got[0], "--priority=3") ||
		!strings.Contains(got[0], "--output-fields="+journalFields) {
		t.Errorf("journalctl called with %q", got)
	}
}

func TestJournalFirstFollowStartsAtTheAgentsStartNotWhereJournalctlFindsTheEnd(t *testing.T) {
	start := time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC)
	r := &journalReader{filter: &entryFilter{minPri: 3}, scanWindow: 5 * time.Minute, now: func() time.Time { return start }}
	args, how := r.args(Position{}, false, true)
	if !slices.Contains(args, "--since=@"+strconv.FormatInt(start.Unix(), 10)) || slices.Contains(args, "--lines=0") {
		t.Errorf("args %q: want --since the agent's start, so an entry written while journalctl starts is not lost", args)
	}
	if how != "end" || !slices.Contains(args, "--follow") {
		t.Errorf("got how %q and args %q, want a follow from the end", how, args)
	}
	args, how = r.args(Position{Cursor: "s=abc"}, true, true)
	if !slices.Contains(args, "--after-cursor=s=abc") || how != "saved_position" {
		t.Errorf("with a saved cursor: got %q, %q", args, how)
	}
}

func TestJournalFieldsAskForEveryFieldTheParserReads(t *testing.T) {
	asked := strings.Split(journalFields, ",")
	rt := reflect.TypeFor[journalRecord]()
	for i := range rt.NumField() {
		name := rt.Field(i).Tag.Get("json")
		if strings.HasPrefix(name, "__") {
			continue // journalctl prints the address fields whatever is asked
		}
		if !slices.Contains(asked, name) {
			t.Errorf("journalRecord reads %s, which --output-fields=%s leaves out", name, journalFields)
		}
	}
}

func TestJournalctlAcceptsTheArguments(t *testing.T) {
	path, err := exec.LookPath("journalctl")
	if err != nil {
		t.Skip("no journalctl here")
	}
	f, _ := newFilter(DefaultConfig())
	r := &journalReader{filter: f, scanWindow: 5 * time.Minute, now: time.Now}
	args, _ := r.args(Position{}, false, false)
	// An empty directory: journalctl parses its arguments and finds no entries.
	out, err := exec.Command(path, append(args, "--directory="+t.TempDir())...).CombinedOutput()
	if err != nil {
		t.Errorf("journalctl %s: %v: %s", strings.Join(args, " "), err, out)
	}
}
