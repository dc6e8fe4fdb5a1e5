package wine

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/internal/winetest"
)

// spoolText returns everything spooled under the state dir's spool, as
// one string (segments hold the NDJSON lines behind binary record heads).
func spoolText(t *testing.T, dir string) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "spool", "*.seg"))
	var b strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err == nil {
			b.Write(data)
		}
	}
	return b.String()
}

// serviceStatus runs `guestdiag-agent service status` and returns its
// "key: value" lines.
func serviceStatus(t *testing.T, a *wineAgent) map[string]string {
	t.Helper()
	r := a.Run(time.Minute, a.Exe, "service", "status")
	if r.Exit != 0 {
		t.Fatalf("service status: %v", r)
	}
	st := map[string]string{}
	for _, l := range strings.Split(r.Stdout, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), ": "); ok {
			st[k] = v
		}
	}
	return st
}

// TestIntegrationWineService installs the agent as a Windows service with
// its own `service install`, starts it with Wine's `net start`, sees it
// reach Running and write its spool, stops it, shows that Wine's boot
// starts it again (start type automatic), and uninstalls it. Where Wine
// lacks a call, the test asserts Wine's exact answer, so that it says so
// when Wine gains it.
func TestIntegrationWineService(t *testing.T) {
	a := newWineAgent(t)
	stateWin := `C:\gdstate`
	state := a.HostPath(stateWin)

	standinExe := winetest.Build(t, "github.com/guestdiag/guestdiag/test/wine/standin")
	r := a.Run(2*time.Minute, a.Exe, "service", "install", "--state-dir", stateWin, "--heartbeat", "1s", "--config", a.Config,
		"--device", standinPipe)
	if r.Exit != 0 || !strings.Contains(r.Stdout, "installed service guestdiag-agent") {
		t.Fatalf("service install: %v", r)
	}
	// Wine's ChangeServiceConfig2W knows no SERVICE_CONFIG_FAILURE_ACTIONS_FLAG.
	if !strings.Contains(r.Stderr, `msg=recovery_on_reported_failures_not_set service=guestdiag-agent err="Invalid level."`) {
		t.Errorf("install said nothing of Wine's missing FAILURE_ACTIONS_FLAG (if Wine has it now, drop this assertion):\n%v", r)
	}
	reg := a.Run(time.Minute, "reg", "query", `HKLM\System\CurrentControlSet\Services\guestdiag-agent`)
	for _, want := range []string{
		`DisplayName    REG_SZ    guestdiag agent`,
		`Start    REG_DWORD    0x2`, // SERVICE_AUTO_START
		`ImagePath    REG_SZ    C:\guestdiag\guestdiag-agent.exe service run --state-dir C:\gdstate --heartbeat 1s --config C:\guestdiag\agent.json --device \\.\pipe\guestdiag-standin`,
	} {
		if !strings.Contains(reg.Stdout, want) {
			t.Errorf("service key lacks %q:\n%s", want, reg.Stdout)
		}
	}
	if ev := a.Run(time.Minute, "reg", "query", `HKLM\System\CurrentControlSet\Services\EventLog\Application\guestdiag-agent`); !strings.Contains(ev.Stdout, `EventCreate.exe`) {
		t.Errorf("no event log source registered: %v", ev)
	}

	st := serviceStatus(t, a)
	if st["state"] != "stopped" || st["start"] != "automatic" {
		t.Errorf("after install: %v, want stopped and automatic", st)
	}
	// Wine stores the restart actions without complaint but cannot read
	// them back: QueryServiceConfig2W answers ERROR_INVALID_LEVEL.
	switch rec := st["recovery"]; rec {
	case "restart after [5s 30s 1m0s], reset after 24h0m0s":
	case "unknown: Invalid level.":
		t.Logf("Wine cannot read recovery actions back: %s", rec)
	default:
		t.Errorf("recovery = %q, want the restarts after 5s, 30s and 60s with a one-day reset", rec)
	}

	// The host side, standing in for the virtio-serial device: it reads
	// and acknowledges nothing, so everything stays in the spool too.
	host := startStandin(t, a.Prefix, standinExe)
	start := a.Run(2*time.Minute, "net", "start", "guestdiag-agent")
	if start.Exit != 0 || !strings.Contains(start.Stdout, "The guestdiag agent service was started successfully.") {
		t.Fatalf("net start: %v", start)
	}
	t.Logf("net start took %v", start.Took.Round(time.Millisecond))
	waitFor(t, "service running", time.Minute, func() bool { return serviceStatus(t, a)["state"] == "running" })

	// The running service writes its hello and then heartbeats to the
	// spool in its state dir: no host is connected, so they stay there.
	var run string
	waitFor(t, "hello and a heartbeat in the spool", 2*time.Minute, func() bool {
		text := spoolText(t, state)
		m := regexp.MustCompile(`"kind":"hello","run":"([A-Za-z0-9_-]{22})"`).FindStringSubmatch(text)
		if m == nil || !strings.Contains(text, `"os":"windows"`) {
			return false
		}
		run = m[1]
		return strings.Contains(text, `"kind":"heartbeat","run":"`+run+`"`)
	})
	if _, err := os.Stat(filepath.Join(state, "checks", "software.snapshot.json")); err != nil {
		t.Errorf("the software check kept no snapshot in the state dir: %v", err)
	}
	for first := ""; first == "" || strings.Contains(first, `"kind":"resume"`); {
		select {
		case first = <-host.lines:
			if !strings.Contains(first, `"kind":"resume"`) && !strings.Contains(first, `"kind":"hello","run":"`+run+`"`) {
				t.Errorf("the service's first message to the host = %s, want its hello", first)
			}
		case <-time.After(time.Minute):
			t.Fatal("the service sent no hello to the stand-in host within a minute")
		}
	}

	stop := a.Run(2*time.Minute, "net", "stop", "guestdiag-agent")
	if stop.Exit != 0 || !strings.Contains(stop.Stdout, "The guestdiag agent service was stopped successfully.") {
		t.Fatalf("net stop: %v", stop)
	}
	if st := serviceStatus(t, a); st["state"] != "stopped" {
		t.Errorf("after net stop: state %q", st["state"])
	}
	// Stopping released the port: the host side sees its client leave
	// (the stand-in exits then), as a driver update needs.
	host.received(t, time.Minute)

	// Wine's boot starts automatic services, as Windows' does. From here
	// on Wine traces event log writes to the boot's stderr.
	a.Setenv("WINEDEBUG", "-all,+eventlog")
	a.Reboot()
	waitFor(t, "service running again after the prefix's boot", 2*time.Minute, func() bool {
		return serviceStatus(t, a)["state"] == "running"
	})
	// A second run, with its own run id, joined the first in the spool.
	waitFor(t, "a second hello after the boot", time.Minute, func() bool {
		return strings.Count(spoolText(t, state), `"kind":"hello"`) >= 2
	})
	// The service's start, and the agent's warning that its port is
	// missing, reached the event log.
	for _, want := range [][]string{
		{`trace:eventlog:ReportEventW L"service guestdiag-agent running"`},
		// Quoted twice, by slog and by Wine's trace, so matched in parts;
		// the stand-in host is gone.
		{`warn:eventlog:ReportEventW L"level=WARN msg=port_unavailable`, `guestdiag-standin: File not found.`},
	} {
		waitFor(t, fmt.Sprintf("an event log line with %q", want), time.Minute, func() bool { return hasLine(a.BootLog(), want...) })
	}

	// A crash: Windows would restart the service after 5 s (its recovery
	// actions). Wine's service manager does not notice the process is gone
	// and keeps saying Running; the test asserts that for 15 s, so it
	// fails, and tells, when Wine starts honouring recovery actions.
	if r := a.Run(time.Minute, "taskkill", "/F", "/IM", "guestdiag-agent.exe"); r.Exit != 0 || !strings.Contains(r.Stdout, "forcibly terminated") {
		t.Fatalf("taskkill: %v", r)
	}
	hellos := strings.Count(spoolText(t, state), `"kind":"hello"`)
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(time.Second) {
		if n := strings.Count(spoolText(t, state), `"kind":"hello"`); n != hellos {
			t.Fatalf("the killed service started again (%d hellos, %d before): Wine honours recovery actions now; assert the 5 s restart instead", n, hellos)
		}
	}
	if st := serviceStatus(t, a); st["state"] != "running" {
		t.Errorf("Wine's state for the killed service = %q; it used to keep saying running", st["state"])
	}
	a.Reboot()
	waitFor(t, "service running after the boot that follows the crash", 2*time.Minute, func() bool {
		return serviceStatus(t, a)["state"] == "running"
	})

	un := a.Run(2*time.Minute, a.Exe, "service", "uninstall")
	if un.Exit != 0 || !strings.Contains(un.Stdout, "removed service guestdiag-agent") {
		t.Fatalf("service uninstall: %v", un)
	}
	if want := `trace:eventlog:ReportEventW L"service guestdiag-agent stopped"`; !strings.Contains(a.BootLog(), want) {
		t.Errorf("the stop reached no event log: no %q in\n%s", want, a.BootLog())
	}
	if r := a.Run(time.Minute, a.Exe, "service", "status"); r.Exit == 0 {
		t.Errorf("service status after uninstall succeeded: %v", r)
	}
	if ev := a.Run(time.Minute, "reg", "query", `HKLM\System\CurrentControlSet\Services\EventLog\Application\guestdiag-agent`); strings.Contains(ev.Stdout, "EventCreate.exe") {
		t.Errorf("event log source still registered after uninstall: %v", ev)
	}

	// A service made by other means (an installer's ServiceInstall, sc
	// create) without `service run` on its command line: the agent sees
	// it was started by the service manager and serves it all the same.
	plainState := `C:\gdplain`
	if r := a.Run(time.Minute, "sc", "create", "guestdiag-plain", "binPath=", a.WinExe+" --state-dir "+plainState+" --config "+a.Config); r.Exit != 0 {
		t.Fatalf("sc create: %v", r)
	}
	if r := a.Run(2*time.Minute, "net", "start", "guestdiag-plain"); r.Exit != 0 || !strings.Contains(r.Stdout, "started successfully") {
		t.Fatalf("net start of the sc-created service: %v", r)
	}
	waitFor(t, "a hello in the sc-created service's spool", time.Minute, func() bool {
		return strings.Contains(spoolText(t, a.HostPath(plainState)), `"kind":"hello"`)
	})
	if r := a.Run(2*time.Minute, "net", "stop", "guestdiag-plain"); r.Exit != 0 || !strings.Contains(r.Stdout, "stopped successfully") {
		t.Errorf("net stop of the sc-created service: %v", r)
	}
	a.Run(time.Minute, "sc", "delete", "guestdiag-plain")
}

// hasLine says whether one line of text contains every part.
func hasLine(text string, parts ...string) bool {
	for _, l := range strings.Split(text, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(l, p)
		}
		if all {
			return true
		}
	}
	return false
}
