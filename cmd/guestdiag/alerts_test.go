package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/internal/cli"
	"github.com/guestdiag/guestdiag/protocol"
)

func alert(host, vm, code, sev string, state collector.AlertState, started time.Duration) collector.Alert {
	a := collector.Alert{
		Fingerprint: host + "/" + vm + "/" + code,
		Key:         collector.AlertKey{Host: host, VM: vm, Check: "resources", Code: code},
		State:       state, Severity: sev, Summary: code + " on " + vm,
		StartsAt: now.Add(-started), Updated: now.Add(-started),
		Evidence: collector.Evidence{Finding: protocol.Finding{Code: code, Severity: protocol.Severity(sev), Message: "m"}},
	}
	if state == collector.AlertResolved {
		a.EndsAt = now.Add(-started / 2)
	}
	return a
}

func TestWriteAlerts(t *testing.T) {
	withKB := alert("h1", "db1", "fs.full", "crit", collector.AlertFiring, 3*time.Hour+12*time.Minute)
	withKB.KB = []collector.KBMatch{{ID: "guestdiag.fs.full", Title: "A filesystem is full"}, {ID: "linux.enospc"}}
	flapping := alert("h1", "web1", "net.dns_failure", "warn", collector.AlertFiring, 90*time.Second)
	flapping.Flapping = true
	hostileAlert := alert("h\u202eevil", "web\x1b]0;pwned\x07", "x\ny", "info", collector.AlertFiring, time.Minute)
	hostileAlert.Summary = "\x1b[2J\xffcleared\nh1  db1  forged"
	hostileAlert.KB = []collector.KBMatch{{ID: "kb\x1b[31m"}}

	tests := []struct {
		name   string
		alerts []collector.Alert
		filter collector.AlertFilter
		width  int
		want   string
	}{
		{
			"firing first, then worst, then newest",
			[]collector.Alert{
				alert("h2", "old", "proc.hung", "crit", collector.AlertResolved, 48*time.Hour),
				alert("h1", "db1", "res.steal_high", "warn", collector.AlertFiring, 10*time.Minute),
				withKB,
				flapping,
			},
			collector.AlertFilter{}, 0,
			"SEVERITY  STATE     HOST  VM    CODE             SINCE  SUMMARY                  KB\n" +
				"crit      firing    h1    db1   fs.full          3h12m  fs.full on db1           guestdiag.fs.full +1\n" +
				"warn      flapping  h1    web1  net.dns_failure  1m     net.dns_failure on web1  -\n" +
				"warn      firing    h1    db1   res.steal_high   10m    res.steal_high on db1    -\n" +
				"crit      resolved  h2    old   proc.hung        1d0h   proc.hung on old         -\n",
		},
		{
			"a narrow terminal cuts the summary",
			[]collector.Alert{withKB}, collector.AlertFilter{}, 80,
			"SEVERITY  STATE   HOST  VM   CODE     SINCE  SUMMARY        KB\n" +
				"crit      firing  h1    db1  fs.full  3h12m  fs.full on d…  guestdiag.fs.full +1\n",
		},
		{
			"guest text is escaped and cannot forge a row",
			[]collector.Alert{hostileAlert}, collector.AlertFilter{}, 0,
			"SEVERITY  STATE   HOST         VM                 CODE  SINCE  SUMMARY                              KB\n" +
				"info      firing  h\\u202eevil  web\\x1b]0;pwned\\a  x\\ny  1m     \\x1b[2J\\xffcleared\\nh1  db1  forged  kb\\x1b[31m\n",
		},
		{"nothing firing", nil, collector.AlertFilter{State: collector.AlertFiring}, 0, "no firing alerts\n"},
		{"nothing matches a filter", nil, collector.AlertFilter{Host: "h9"}, 0, "no alerts match\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := writeAlerts(&b, tt.alerts, tt.filter, now, tt.width); err != nil {
				t.Fatal(err)
			}
			if got := b.String(); got != tt.want {
				t.Errorf("table:\ngot:\n%s\nwant:\n%s", got, tt.want)
			}
			onlyPrintable(t, b.String())
			for _, l := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
				if n := utf8.RuneCountInString(l); tt.width > 0 && n > tt.width {
					t.Errorf("line %q: %d runes, want at most %d", l, n, tt.width)
				}
			}
		})
	}
}

func TestSpan(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0s"},
		{45 * time.Second, "45s"},
		{12*time.Minute + 30*time.Second, "12m"},
		{3*time.Hour + 12*time.Minute, "3h12m"},
		{52 * time.Hour, "2d4h"},
	}
	for _, tt := range tests {
		if got := span(tt.d); got != tt.want {
			t.Errorf("span(%v): got %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestAlertsAsksTheAPIWithTheFilters(t *testing.T) {
	body, _ := json.Marshal([]collector.Alert{alert("h1", "db 1", "fs.full", "crit", collector.AlertFiring, time.Hour)})
	var query string
	api := fakeAPI(t, map[string]string{"/api/alerts": string(body)})
	api.Config.Handler = recordQuery(api.Config.Handler, "/api/alerts", &query)
	code, stdout, stderr := runCLI(t, 0, "alerts", "--api", api.URL, "--state", "firing", "--host", "h1", "--vm", "db 1", "--severity", "crit", "--code", "fs.full")
	if code != cli.ExitOK {
		t.Fatalf("exit code: got %d, want 0; stderr: %s", code, stderr)
	}
	if want := "code=fs.full&host=h1&severity=crit&state=firing&vm=db+1"; query != want {
		t.Errorf("query: got %q, want %q", query, want)
	}
	if !strings.Contains(stdout, "fs.full on db 1") {
		t.Errorf("stdout: got\n%s\nwant the alert's row", stdout)
	}
}

func TestAlertsJSON(t *testing.T) {
	raw := `[{"fingerprint":"f1","key":{"host":"h1","vm":"web\u202e1","code":"x"},"state":"firing","severity":"crit","summary":"a` + "\u009b" + `b\u001b[2J"}]`
	api := fakeAPI(t, map[string]string{"/api/alerts": raw})
	code, stdout, stderr := runCLI(t, 0, "alerts", "-json", "--api", api.URL)
	if code != cli.ExitOK {
		t.Fatalf("exit code: got %d, want 0; stderr: %s", code, stderr)
	}
	onlyPrintable(t, stdout)
	var got []collector.Alert
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("stdout is not an alert list: %v\n%s", err, stdout)
	}
	if len(got) != 1 || got[0].Key.VM != "web\u202e1" || got[0].Summary != "a\u009bb\x1b[2J" {
		t.Errorf("alerts: got %+v, want the API's value unchanged", got)
	}
}
