package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/protocol"
)

func testVM() collector.VM {
	seen := collector.Origin{Run: "r1", Seq: 9, TS: now.Add(-12 * time.Second), Received: now.Add(-12 * time.Second)}
	return collector.VM{
		Name: "db1", Host: "h1", UUID: "3f0e2a1c-0000-4000-8000-000000000001",
		Channel:  collector.Channel{Name: "/run/db1.sock", State: protocol.ChannelConnected, Since: now.Add(-2 * time.Hour)},
		LastSeen: now.Add(-12 * time.Second),
		Hello: &collector.Hello{ClaimedHostname: "db1.example", OS: "linux", Platform: "debian 12", Kernel: "6.12.0", Arch: "amd64",
			AgentVersion: "0.1.0", Origin: seen},
		Heartbeat: &collector.Heartbeat{UptimeSec: 3*3600 + 120, Spooled: 4, Origin: seen},
		Checks: map[string]*collector.Check{
			"resources": {Kind: protocol.KindResult, Status: protocol.StatusCrit, Summary: "/var 99% full", Origin: seen,
				Findings: []protocol.Finding{{Code: "res.disk_full", Severity: protocol.SeverityCrit, Source: "/var", Message: "/var is 99% full (1.2 GiB free)"}}},
			"network": {Kind: protocol.KindResult, Status: protocol.StatusOK, Summary: "gateway and DNS answer", Origin: seen},
		},
	}
}

func testAlertWithKB() collector.Alert {
	a := alert("h1", "db1", "res.disk_full", "crit", collector.AlertFiring, 2*time.Hour+5*time.Minute)
	a.Key.Check, a.Key.Source = "resources", "/var"
	a.Summary = "/var 99% full"
	a.KB = []collector.KBMatch{{ID: "guestdiag.res.disk_full", Title: "A filesystem is nearly full", Resolution: []string{
		"Find what grew with `du -xh --max-depth=2 /var | sort -h | tail`.",
		"Free space: rotate or remove old logs, then `journalctl --vacuum-size=500M`.",
	}}}
	return a
}

func TestWriteVM(t *testing.T) {
	r := vmReport{
		VM:           testVM(),
		Alerts:       []collector.Alert{testAlertWithKB()},
		AlertsServed: true, TimelineServed: true,
	}
	for i := range 12 {
		r.Timeline = append(r.Timeline, collector.TimelineEvent{TS: now.Add(-time.Duration(i+1) * time.Minute), Kind: "status", Check: "resources", From: "warn", To: "crit", Text: fmt.Sprintf("event %d", i)})
	}
	var b bytes.Buffer
	if err := writeVM(&b, r, now, 0); err != nil {
		t.Fatal(err)
	}
	want := `db1 on host h1
  uuid        3f0e2a1c-0000-4000-8000-000000000001
  channel     connected since 2h ago (/run/db1.sock)
  last seen   12s ago
  hello       agent 0.1.0 on linux (debian 12, 6.12.0, amd64)
  hostname    db1.example (the guest's claim)
  heartbeat   12s ago, uptime 3h2m, 4 spooled, 0 dropped

checks
  resources  crit  /var 99% full  (12s ago)
    crit  res.disk_full  [/var]  /var is 99% full (1.2 GiB free)
  network  ok  gateway and DNS answer  (12s ago)

firing alerts
  crit  res.disk_full  resources  [/var]  for 2h5m  /var 99% full
    kb guestdiag.res.disk_full: A filesystem is nearly full
      1. Find what grew with ` + "`du -xh --max-depth=2 /var | sort -h | tail`" + `.
      2. Free space: rotate or remove old logs, then ` + "`journalctl --vacuum-size=500M`" + `.

timeline, newest 10 of 12
  1m ago   status resources  warn → crit  event 0
`
	if got := b.String(); !strings.HasPrefix(got, want) {
		t.Errorf("page:\ngot:\n%s\nwant it to start with:\n%s", got, want)
	}
	if got := strings.Count(b.String(), "status resources"); got != timelineShown {
		t.Errorf("timeline events shown: got %d, want %d", got, timelineShown)
	}
}

func TestWriteVMEscapesGuestText(t *testing.T) {
	v := testVM()
	v.Hello.ClaimedHostname = "\x1b]0;pwned\x07"
	v.Hello.Platform = "\u202eevil"
	v.Checks["resources"].Summary = "\x1b[2J"
	v.Checks["resources"].Findings[0].Message = "a\nh1  forged line\xff"
	v.Checks["x\x1b[31m"] = &collector.Check{Status: "crit\x07"}
	a := testAlertWithKB()
	a.KB[0].Resolution = []string{"step\x1b[8mhidden"}
	r := vmReport{VM: v, Alerts: []collector.Alert{a}, AlertsServed: true, TimelineServed: true,
		Timeline: []collector.TimelineEvent{{TS: now, Kind: "hello\n", Text: "\u202e\x1b]8;;http://evil\x07"}}}
	var b bytes.Buffer
	if err := writeVM(&b, r, now, 0); err != nil {
		t.Fatal(err)
	}
	got := b.String()
	onlyPrintable(t, got)
	for _, want := range []string{`\x1b]0;pwned\a (the guest's claim)`, `\u202eevil`, `crit  \x1b[2J  (12s ago)`, `a\nh1  forged line\xff`, `x\x1b[31m  crit\a`, `1. step\x1b[8mhidden`, `hello\n`, `\u202e\x1b]8;;http://evil\a`} {
		if !strings.Contains(got, want) {
			t.Errorf("page has no %q:\n%s", want, got)
		}
	}
}

func TestWriteVMWrapsToTheTerminal(t *testing.T) {
	a := testAlertWithKB()
	a.KB[0].Resolution = []string{strings.Repeat("a long resolution step ", 8)}
	r := vmReport{VM: testVM(), Alerts: []collector.Alert{a}, AlertsServed: true}
	var b bytes.Buffer
	if err := writeVM(&b, r, now, 60); err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
		if n := utf8.RuneCountInString(l); n > 60 {
			t.Errorf("line %q: %d runes, want at most 60", l, n)
		}
	}
	// The step's lines after the first hang under its text, not its number.
	if !strings.Contains(b.String(), "\n      1. a long resolution step a long resolution step a\n         long resolution step") {
		t.Errorf("page:\n%s\nwant the resolution step wrapped under its text", b.String())
	}
	if !strings.Contains(b.String(), "timeline: this collector does not serve timelines") {
		t.Errorf("page:\n%s\nwant a note that the timeline is not served", b.String())
	}
}
