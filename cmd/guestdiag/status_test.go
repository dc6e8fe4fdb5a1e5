package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
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

	tests := []struct {
		name     string
		api      string
		wantCode int
		wantErr  string
	}{
		{"an unreachable API", closed, exitFailed, "cannot reach the collector API at " + closed},
		{"an API that is not ready", notReady.URL, exitFailed, "503 Service Unavailable: state not loaded yet"},
		{"a bad URL", "::nope", exitFailed, "bad --api"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			c := &cli{stdout: &stdout, stderr: &stderr, now: func() time.Time { return now }}
			if code := c.run(context.Background(), []string{"status", "--api", tt.api}); code != tt.wantCode {
				t.Errorf("exit code: got %d, want %d", code, tt.wantCode)
			}
			if !strings.Contains(stderr.String(), tt.wantErr) {
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
