package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/internal/cli"
	"github.com/guestdiag/guestdiag/protocol"
)

func TestHostCommandsAgainstARealCollector(t *testing.T) {
	api, js := liveCollector(t)
	run := func(args ...string) (int, string, string) {
		return runCLI(t, 0, append(args, "--api", api)...)
	}
	if code, out, stderr := run("host", "list"); code != cli.ExitOK || out != "no hosts\n" {
		t.Fatalf("host list before any host: got %d %q %q, want no hosts", code, out, stderr)
	}
	ts := time.Now().UTC()
	for i := range 3 {
		u := protocol.HostUsage{V: protocol.Version, Host: "h1", TS: ts.Add(time.Duration(i) * time.Second), IntervalS: 10,
			CPU: protocol.HostCPU{Count: 4, UsedPct: 92}, Memory: protocol.HostMemory{UsedPct: 40}, VMs: []protocol.VMUsage{}}
		b, _ := json.Marshal(u)
		if _, err := js.Publish(context.Background(), protocol.HostSubject("h1"), b); err != nil {
			t.Fatal(err)
		}
	}
	var out string
	poll(t, "h1 overloaded in host list", func() bool {
		_, out, _ = run("host", "list")
		return strings.Contains(out, "overloaded(cpu)")
	})
	want := "HOST  CPU  MEM  VMS  DRAIN  HINTS\nh1    92%  40%  0    -      overloaded(cpu)\n"
	if out != want {
		t.Errorf("host list:\ngot\n%s\nwant\n%s", out, want)
	}

	code, out, stderr := run("host", "drain", "h1", "--reason", "kernel 6.12")
	if code != cli.ExitOK || !strings.HasPrefix(out, "h1 drained by anonymous since ") {
		t.Fatalf("host drain: got %d %q %q", code, out, stderr)
	}
	poll(t, "the drain in host list", func() bool {
		_, out, _ = run("host", "list")
		return strings.Contains(out, "evacuate overloaded(cpu)")
	})
	if !strings.Contains(out, "anonymous 0s ago: kernel 6.12") {
		t.Errorf("host list after drain: got\n%s\nwant the mark with its reason", out)
	}
	if code, out, stderr := run("host", "undrain", "h1"); code != cli.ExitOK || out != "h1 not drained\n" {
		t.Fatalf("host undrain: got %d %q %q", code, out, stderr)
	}

	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"a host name with a control character is refused by the API", []string{"host", "drain", "h\x01"}, cli.ExitFailed, "control"},
		{"drain needs a host", []string{"host", "drain"}, cli.ExitUsage, "missing the host name"},
		{"undrain takes one host", []string{"host", "undrain", "h1", "h2"}, cli.ExitUsage, "unexpected argument"},
		{"undrain takes no reason", []string{"host", "undrain", "h1", "--reason", "x"}, cli.ExitUsage, "reason"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := run(tt.args...)
			if code != tt.wantCode || !strings.Contains(stderr, tt.wantErr) {
				t.Errorf("got %d %q, want %d mentioning %q", code, stderr, tt.wantCode, tt.wantErr)
			}
			if tt.wantCode == cli.ExitFailed {
				onlyPrintable(t, stderr)
			}
		})
	}
}

// hostilePlacementJSON is a /api/placement answer whose text tries to
// reach the terminal.
const hostilePlacementJSON = `{"hosts":[{"host":"h\u001b[2J1","usage":{"v":1,"host":"h1","ts":"2026-11-21T11:59:00Z","interval_s":10,
  "cpu":{"count":4,"used_pct":12},"memory":{"total_bytes":1,"available_bytes":1,"used_pct":0},"load":{"load1":0,"load5":0,"load15":0},"vms":[],
  "errors":["memory: \u202eunreadable"]},
  "drain":{"by":"mallory\n","reason":"\u202eevil","since":"2026-11-21T11:00:00Z"},
  "hints":[{"v":1,"host":"h1","kind":"over\u0007loaded","state":"raised","ts":"2026-11-21T11:59:00Z","since":"2026-11-21T11:59:00Z","summary":"x","evidence":{}}],"vms":3}],"plans":[]}`

func TestHostListEscapesWhatTheAPISays(t *testing.T) {
	api := fakeAPI(t, map[string]string{"/api/placement": hostilePlacementJSON})
	code, got, stderr := runCLI(t, 0, "host", "list", "--api", api.URL)
	if code != cli.ExitOK {
		t.Fatalf("exit code: got %d, want 0; stderr: %s", code, stderr)
	}
	want := "HOST       CPU  MEM  VMS  DRAIN                           HINTS\n" +
		`h\x1b[2J1  12%  ?    3    mallory\n 1h0m ago: \u202eevil  over\aloaded` + "\n"
	if got != want {
		t.Errorf("table:\ngot\n%s\nwant\n%s", got, want)
	}
	onlyPrintable(t, got)
}

func TestHostListShowsAFigureTheRelayLacksAsUnknown(t *testing.T) {
	hosts := []collector.HostPlacement{{Host: "h1", Hints: []protocol.Hint{},
		Usage: &protocol.HostUsage{V: protocol.Version, Host: "h1", CPU: protocol.HostCPU{Count: 4}, Memory: protocol.HostMemory{UsedPct: 40},
			Errors: []string{"cpu times: open /proc/stat: permission denied"}}}}
	var b strings.Builder
	if err := writeHosts(&b, hosts, time.Now(), 200); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), "HOST  CPU  MEM  VMS  DRAIN  HINTS\nh1    ?    40%  0    -      -\n"; got != want {
		t.Errorf("host list:\ngot\n%s\nwant\n%s", got, want)
	}
}
