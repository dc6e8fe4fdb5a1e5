package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/protocol"
)

var now = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

// fleetJSON is a /api/vms answer as the collector writes it.
const fleetJSON = `[
  {"name": "db1", "host": "h1", "uuid": "u-db1",
   "channel": {"name": "/run/db1.sock", "state": "connected", "since": "2026-11-21T09:00:00Z"},
   "last_seen": "2026-11-21T11:59:48Z",
   "hello": {"claimed_hostname": "db1", "os": "linux", "agent_version": "0.1.0", "checks": ["resources"], "run": "r1", "seq": 1, "ts": "2026-11-21T09:00:01Z", "received": "2026-11-21T09:00:01Z"},
   "checks": {
     "resources": {"kind": "result", "status": "crit", "summary": "cpu 93%", "run": "r1", "seq": 9, "ts": "2026-11-21T11:59:48Z", "received": "2026-11-21T11:59:48Z"},
     "network": {"kind": "result", "status": "warn", "run": "r1", "seq": 8, "ts": "2026-11-21T11:59:40Z", "received": "2026-11-21T11:59:40Z"},
     "logs": {"kind": "result", "status": "ok", "run": "r1", "seq": 7, "ts": "2026-11-21T11:59:30Z", "received": "2026-11-21T11:59:30Z"},
     "firewall": {"kind": "result", "status": "crit", "run": "r1", "seq": 6, "ts": "2026-11-21T11:59:30Z", "received": "2026-11-21T11:59:30Z"}
   }},
  {"name": "web1", "host": "h1",
   "channel": {"state": "disconnected", "since": "2026-11-21T11:00:00Z"},
   "last_seen": "2026-11-21T10:55:00Z",
   "hello": {"claimed_hostname": "db1", "os": "linux", "agent_version": "0.2.0", "checks": [], "run": "r2", "seq": 1, "ts": "2026-11-21T10:00:00Z", "received": "2026-11-21T10:00:00Z"},
   "checks": {
     "resources": {"kind": "result", "status": "ok", "run": "r2", "seq": 2, "ts": "2026-11-21T10:55:00Z", "received": "2026-11-21T10:55:00Z"},
     "network": {"kind": "result", "status": "ok", "run": "r2", "seq": 3, "ts": "2026-11-21T10:55:00Z", "received": "2026-11-21T10:55:00Z"}
   }},
  {"name": "new-vm", "host": "h2", "channel": {"state": "connected", "since": "2026-11-19T12:00:00Z"}},
  {"name": "old", "host": "h2", "channel": {}, "last_seen": "2026-11-18T11:00:00Z"}
]`

const fleetTable = `HOST  VM      CHANNEL       LAST-SEEN  AGENT  CHECKS
h1    db1     connected     12s ago    0.1.0  firewall=crit resources=crit network=warn +1 ok
h1    web1    disconnected  1h ago     0.2.0  2 ok
h2    new-vm  connected     never      -      -
h2    old     -             3d ago     -      -
`

func TestStatusPrintsTheFleetTable(t *testing.T) {
	tests := []struct {
		name string
		body string
		want string
	}{
		{"a fleet", fleetJSON, fleetTable},
		{"no VMs yet", "[]", "no VMs reported yet\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gotPath string
			api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				gotPath = r.URL.Path
				w.Header().Set("Content-Type", "application/json")
				w.Write([]byte(tt.body))
			}))
			defer api.Close()
			var stdout, stderr bytes.Buffer
			c := &cli{stdout: &stdout, stderr: &stderr, now: func() time.Time { return now }}
			if code := c.run(context.Background(), []string{"status", "--api", api.URL + "/"}); code != exitOK {
				t.Fatalf("exit code: got %d, want 0; stderr: %s", code, stderr.String())
			}
			if gotPath != "/api/vms" {
				t.Errorf("requested path: got %q, want /api/vms", gotPath)
			}
			if got := stdout.String(); got != tt.want {
				t.Errorf("table:\ngot:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestStatusFailsClearly(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	notReady := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"error":"state not loaded yet"}`))
	}))
	defer notReady.Close()
	hostile := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"error":"no\u001b[2J\nsuch"}`))
	}))
	defer hostile.Close()

	tests := []struct {
		name     string
		api      string
		wantCode int
		wantErr  string
	}{
		{"an unreachable API", closed, exitFailed, "cannot reach the collector API at " + closed},
		{"an API that is not ready", notReady.URL, exitFailed, "503 Service Unavailable: state not loaded yet"},
		{"a bad URL", "::nope", exitFailed, "bad --api"},
		{"an API error with control characters", hostile.URL, exitFailed, `503 Service Unavailable: no\x1b[2J\nsuch`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			c := &cli{stdout: &stdout, stderr: &stderr, now: func() time.Time { return now }}
			if code := c.run(context.Background(), []string{"status", "--api", tt.api}); code != tt.wantCode {
				t.Errorf("exit code: got %d, want %d", code, tt.wantCode)
			}
			if !strings.Contains(stderr.String(), tt.wantErr) || strings.Count(stderr.String(), "\n") != 1 {
				t.Errorf("stderr: got %q, want it to contain %q", stderr.String(), tt.wantErr)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout: got %q, want nothing", stdout.String())
			}
		})
	}
}

func TestAge(t *testing.T) {
	tests := []struct {
		ago  time.Duration
		want string
	}{
		{-time.Second, "just now"},
		{0, "0s ago"},
		{59 * time.Second, "59s ago"},
		{time.Minute, "1m ago"},
		{47 * time.Hour, "47h ago"},
		{49 * time.Hour, "2d ago"},
	}
	for _, tt := range tests {
		if got := age(now, now.Add(-tt.ago)); got != tt.want {
			t.Errorf("age of %v: got %q, want %q", tt.ago, got, tt.want)
		}
	}
	if got := age(now, time.Time{}); got != "never" {
		t.Errorf("age of the zero time: got %q, want never", got)
	}
}

// hostileJSON is a /api/vms answer whose strings try to forge a row, shift
// columns and drive the terminal.
var hostileJSON = `[
  {"name": "web\tevil", "host": "h1",
   "channel": {"state": "connected"},
   "hello": {"claimed_hostname": "x", "os": "linux", "agent_version": "1.0\u001b[2J\nh1  web01  connected  1s ago  0.1.0  -", "checks": []},
   "checks": {"disk\u001b]0;pwned\u0007": {"kind": "result", "status": "crit"}}},
  {"name": "` + strings.Repeat("x", 70) + `", "host": "h\u202eevil",
   "channel": {"state": "conn\u009bected"},
   "hello": {"claimed_hostname": "x", "os": "linux", "agent_version": "1\\x1b\ud800", "checks": []}}
]`

// hostileTable is what status prints for hostileJSON. The lone surrogate
// \ud800 arrives as U+FFFD, which encoding/json puts in its place.
const hostileTable = `HOST         VM                                                CHANNEL          LAST-SEEN  AGENT                                             CHECKS
h1           web\tevil                                         connected        never      1.0\x1b[2J\nh1  web01  connected  1s ago  0.1.0…  disk\x1b]0;pwned\a=crit
h\u202eevil  xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…  conn\u009bected  never      1\\x1b` + "\uFFFD" + `                                           -
`

func TestStatusEscapesWhatTheAPISays(t *testing.T) {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(hostileJSON))
	}))
	defer api.Close()
	var stdout, stderr bytes.Buffer
	c := &cli{stdout: &stdout, stderr: &stderr, now: func() time.Time { return now }}
	if code := c.run(context.Background(), []string{"status", "--api", api.URL}); code != exitOK {
		t.Fatalf("exit code: got %d, want 0; stderr: %s", code, stderr.String())
	}
	got := stdout.String()
	if got != hostileTable {
		t.Errorf("table:\ngot:\n%s\nwant:\n%s", got, hostileTable)
	}
	if n := strings.Count(got, "\n"); n != 3 {
		t.Errorf("lines: got %d, want 3, a header and one per VM", n)
	}
	for i, r := range got {
		if r != '\n' && !unicode.IsPrint(r) {
			t.Errorf("byte %d: got %U, want only printable characters and line ends", i, r)
		}
	}
}

func TestCell(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		limit int
		want  string
	}{
		{"plain text is kept", "web-01.example", 48, "web-01.example"},
		{"letters of any script are kept", "wébserveur-東京", 48, "wébserveur-東京"},
		{"an escape sequence is shown escaped", "\x1b[2J", 48, `\x1b[2J`},
		{"a newline cannot start a row", "a\nb", 48, `a\nb`},
		{"a carriage return cannot overwrite the line", "a\rb", 48, `a\rb`},
		{"a tab cannot shift a column", "a\tb", 48, `a\tb`},
		{"DEL is escaped", "\x7f", 48, `\x7f`},
		{"the C1 control CSI is escaped", "\u009b31m", 48, `\u009b31m`},
		{"a bidi override is escaped", "abc\u202edef", 48, `abc\u202edef`},
		{"a zero-width space is escaped", "a\u200bb", 48, `a\u200bb`},
		{"invalid UTF-8 is escaped byte by byte", "a\xffb\xc3", 48, `a\xffb\xc3`},
		{"a backslash is doubled, so an escape is never ambiguous", `1\x1b`, 48, `1\\x1b`},
		{"a string at the limit is kept", strings.Repeat("x", 10), 10, strings.Repeat("x", 10)},
		{"a longer string is cut and marked", strings.Repeat("x", 60), 10, strings.Repeat("x", 9) + "…"},
		{"an escape is cut whole", "abcdefg\x1bh", 10, "abcdefg…"},
		{"an empty string stays empty", "", 10, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := cell(tt.in, tt.limit)
			if got != tt.want {
				t.Errorf("cell(%q, %d): got %q, want %q", tt.in, tt.limit, got, tt.want)
			}
			if n := utf8.RuneCountInString(got); n > tt.limit {
				t.Errorf("cell(%q, %d): got %d runes, want at most %d", tt.in, tt.limit, n, tt.limit)
			}
		})
	}
}

func TestChecksColumnCountsTheNamesThatDoNotFit(t *testing.T) {
	checks := map[string]*collector.Check{}
	for i := range 20 {
		checks[fmt.Sprintf("check_with_a_long_name_%02d", i)] = &collector.Check{Status: protocol.StatusCrit}
	}
	checks["fine"] = &collector.Check{Status: protocol.StatusOK}
	got := checksColumn(checks)
	// Each named check takes 31 runes and a space: three fit in 120.
	want := "check_with_a_long_name_00=crit check_with_a_long_name_01=crit check_with_a_long_name_02=crit +17 not ok +1 ok"
	if got != want {
		t.Errorf("checks column:\ngot  %q\nwant %q", got, want)
	}
}
