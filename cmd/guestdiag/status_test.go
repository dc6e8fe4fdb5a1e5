package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/internal/cli"
	"github.com/guestdiag/guestdiag/protocol"
)

var now = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

// testApp is the CLI with the clock at now and a terminal of the given
// width (0: not a terminal).
func testApp(width int) app {
	return app{now: func() time.Time { return now }, width: func(io.Writer) int { return width }}
}

// runCLI runs guestdiag with args and returns its exit code and output.
func runCLI(t *testing.T, width int, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = testApp(width).run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// fakeAPI answers each path with its body, and 404 for any other, as a
// collector would; it stands in for the collector only where the test is
// about rendering hostile or unusual answers.
func fakeAPI(t *testing.T, bodies map[string]string) *httptest.Server {
	t.Helper()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		body, ok := bodies[r.URL.Path]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"error":"not found"}`))
			return
		}
		w.Write([]byte(body))
	}))
	t.Cleanup(api.Close)
	return api
}

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

// fleetAlertsJSON is a /api/alerts?state=firing answer for fleetJSON: db1
// has two crit and one warn alert, and one alert is of a VM the fleet no
// longer lists, which counts in the totals only.
const fleetAlertsJSON = `[
  {"fingerprint": "a1", "key": {"host": "h1", "vm": "db1", "check": "resources", "code": "res.cpu_high"}, "state": "firing", "severity": "crit", "summary": "cpu 93%", "starts_at": "2026-11-21T11:00:00Z", "updated": "2026-11-21T11:00:00Z", "labels": {}, "evidence": {"finding": {"code": "res.cpu_high", "severity": "crit", "message": "cpu 93%"}}},
  {"fingerprint": "a2", "key": {"host": "h1", "vm": "db1", "check": "firewall", "code": "fw.disabled"}, "state": "firing", "severity": "crit", "summary": "firewall off", "starts_at": "2026-11-21T10:00:00Z", "updated": "2026-11-21T10:00:00Z", "labels": {}, "evidence": {"finding": {"code": "fw.disabled", "severity": "crit", "message": "off"}}},
  {"fingerprint": "a3", "key": {"host": "h1", "vm": "db1", "check": "network", "code": "net.dns_failed"}, "state": "firing", "severity": "warn", "summary": "dns", "starts_at": "2026-11-21T10:00:00Z", "updated": "2026-11-21T10:00:00Z", "labels": {}, "evidence": {"finding": {"code": "net.dns_failed", "severity": "warn", "message": "dns"}}},
  {"fingerprint": "a4", "key": {"host": "h9", "vm": "gone", "check": "logs", "code": "log.error"}, "state": "firing", "severity": "info", "summary": "x", "starts_at": "2026-11-21T10:00:00Z", "updated": "2026-11-21T10:00:00Z", "labels": {}, "evidence": {"finding": {"code": "log.error", "severity": "info", "message": "x"}}}
]`

const fleetTable = `HOST  VM      CHANNEL       LAST-SEEN  AGENT  ALERTS         CHECKS
h1    db1     connected     12s ago    0.1.0  2 crit 1 warn  firewall=crit resources=crit network=warn +1 ok
h1    web1    disconnected  1h ago     0.2.0  -              2 ok
h2    new-vm  connected     never      -      -              -
h2    old     -             3d ago     -      -              -
4 VMs on 2 hosts; 4 alerts firing: 2 crit, 1 warn, 1 info
`

func TestStatusPrintsTheFleetTable(t *testing.T) {
	tests := []struct {
		name   string
		bodies map[string]string
		width  int
		want   string
	}{
		{"a fleet with alerts", map[string]string{"/api/vms": fleetJSON, "/api/alerts": fleetAlertsJSON}, 0, fleetTable},
		{"a fleet with no alerts", map[string]string{"/api/vms": fleetJSON[:strings.Index(fleetJSON, "{\"name\": \"web1\"")-4] + "]", "/api/alerts": "[]"}, 0,
			"HOST  VM   CHANNEL    LAST-SEEN  AGENT  ALERTS  CHECKS\n" +
				"h1    db1  connected  12s ago    0.1.0  -       firewall=crit resources=crit network=warn +1 ok\n" +
				"1 VM on 1 host; no firing alerts\n"},
		{"a collector from before alerts", map[string]string{"/api/vms": fleetJSON}, 0,
			"HOST  VM      CHANNEL       LAST-SEEN  AGENT  ALERTS  CHECKS\n" +
				"h1    db1     connected     12s ago    0.1.0  ?       firewall=crit resources=crit network=warn +1 ok\n" +
				"h1    web1    disconnected  1h ago     0.2.0  ?       2 ok\n" +
				"h2    new-vm  connected     never      -      ?       -\n" +
				"h2    old     -             3d ago     -      ?       -\n" +
				"4 VMs on 2 hosts; this collector does not serve alerts\n"},
		{"a narrow terminal cuts the checks", map[string]string{"/api/vms": fleetJSON, "/api/alerts": fleetAlertsJSON}, 80,
			"HOST  VM      CHANNEL       LAST-SEEN  AGENT  ALERTS         CHECKS\n" +
				"h1    db1     connected     12s ago    0.1.0  2 crit 1 warn  firewall=crit reso…\n" +
				"h1    web1    disconnected  1h ago     0.2.0  -              2 ok\n" +
				"h2    new-vm  connected     never      -      -              -\n" +
				"h2    old     -             3d ago     -      -              -\n" +
				"4 VMs on 2 hosts; 4 alerts firing: 2 crit, 1 warn, 1 info\n"},
		{"no VMs yet", map[string]string{"/api/vms": "[]", "/api/alerts": "[]"}, 0, "no VMs reported yet\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gotQuery string
			api := fakeAPI(t, tt.bodies)
			api.Config.Handler = recordQuery(api.Config.Handler, "/api/alerts", &gotQuery)
			code, stdout, stderr := runCLI(t, tt.width, "status", "--api", api.URL+"/")
			if code != cli.ExitOK {
				t.Fatalf("exit code: got %d, want 0; stderr: %s", code, stderr)
			}
			if stdout != tt.want {
				t.Errorf("table:\ngot:\n%s\nwant:\n%s", stdout, tt.want)
			}
			if tt.bodies["/api/vms"] != "[]" && gotQuery != "state=firing" {
				t.Errorf("alerts query: got %q, want state=firing", gotQuery)
			}
			if tt.width > 0 {
				for _, l := range strings.Split(strings.TrimSuffix(stdout, "\n"), "\n") {
					if n := utf8.RuneCountInString(l); n > tt.width {
						t.Errorf("line %q: got %d runes, want at most %d", l, n, tt.width)
					}
				}
			}
		})
	}
}

// recordQuery wraps h to keep the raw query of the last request for path.
func recordQuery(h http.Handler, path string, query *string) http.Handler {
	var mu sync.Mutex
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == path {
			mu.Lock()
			*query = r.URL.RawQuery
			mu.Unlock()
		}
		h.ServeHTTP(w, r)
	})
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
	alertsBroken := fakeAPI(t, map[string]string{"/api/vms": fleetJSON, "/api/alerts": `{"not": "a list"}`})

	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"an unreachable API", []string{"--api", closed}, cli.ExitFailed, "cannot reach the collector API at " + closed},
		{"an API that is not ready", []string{"--api", notReady.URL}, cli.ExitFailed, "503 Service Unavailable: state not loaded yet"},
		{"a bad URL", []string{"--api", "::nope"}, cli.ExitFailed, "bad --api"},
		{"an API error with control characters", []string{"--api", hostile.URL}, cli.ExitFailed, `503 Service Unavailable: no\x1b[2J\nsuch`},
		{"an alert list that is not one", []string{"--api", alertsBroken.URL}, cli.ExitFailed, "/api/alerts: not an alert list"},
		{"an argument status does not take", []string{"--api", notReady.URL, "extra"}, cli.ExitUsage, `guestdiag status: unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, 0, append([]string{"status"}, tt.args...)...)
			if code != tt.wantCode {
				t.Errorf("exit code: got %d, want %d", code, tt.wantCode)
			}
			if !strings.Contains(stderr, tt.wantErr) || strings.Count(stderr, "\n") != 1 {
				t.Errorf("stderr: got %q, want one line containing %q", stderr, tt.wantErr)
			}
			if stdout != "" {
				t.Errorf("stdout: got %q, want nothing", stdout)
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

// hostileAlertsJSON is an alert list whose severity tries to drive the
// terminal.
const hostileAlertsJSON = `[{"key": {"host": "h1", "vm": "web\tevil", "code": "x"}, "state": "firing", "severity": "cr\u001b]0;pwned\u0007it"}]`

// hostileTable is what status prints for hostileJSON. The lone surrogate
// \ud800 arrives as U+FFFD, which encoding/json puts in its place.
const hostileTable = `HOST         VM                                                CHANNEL          LAST-SEEN  AGENT                                             ALERTS                CHECKS
h1           web\tevil                                         connected        never      1.0\x1b[2J\nh1  web01  connected  1s ago  0.1.0…  1 cr\x1b]0;pwned\ait  disk\x1b]0;pwned\a=crit
h\u202eevil  xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…  conn\u009bected  never      1\\x1b` + "\uFFFD" + `                                           -                     -
2 VMs on 2 hosts; 1 alert firing: 1 cr\x1b]0;pwned\ait
`

func TestStatusEscapesWhatTheAPISays(t *testing.T) {
	api := fakeAPI(t, map[string]string{"/api/vms": hostileJSON, "/api/alerts": hostileAlertsJSON})
	code, got, stderr := runCLI(t, 0, "status", "--api", api.URL)
	if code != cli.ExitOK {
		t.Fatalf("exit code: got %d, want 0; stderr: %s", code, stderr)
	}
	if got != hostileTable {
		t.Errorf("table:\ngot:\n%s\nwant:\n%s", got, hostileTable)
	}
	if n := strings.Count(got, "\n"); n != 4 {
		t.Errorf("lines: got %d, want 4, a header, one per VM and the totals", n)
	}
	onlyPrintable(t, got)
}

// onlyPrintable fails the test if out has anything but printable
// characters and line ends.
func onlyPrintable(t *testing.T, out string) {
	t.Helper()
	if !utf8.ValidString(out) {
		t.Errorf("output is not valid UTF-8: %q", out)
	}
	for i, r := range out {
		if r != '\n' && !unicode.IsPrint(r) {
			t.Errorf("byte %d: got %U, want only printable characters and line ends", i, r)
		}
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
