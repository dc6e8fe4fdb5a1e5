package wine

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/internal/pkgbuild"
	"github.com/guestdiag/guestdiag/internal/winetest"
)

// Where the MSI puts things in a prefix: Wine's ProgramFiles is
// C:\Program Files and its ProgramData C:\ProgramData, as on Windows.
const (
	msiExe     = `C:\Program Files\guestdiag\guestdiag-agent.exe`
	msiConfig  = `C:\ProgramData\guestdiag\agent.yaml`
	msiState   = `C:\ProgramData\guestdiag`
	serviceKey = `HKLM\System\CurrentControlSet\Services\guestdiag-agent`
	sourceKey  = `HKLM\System\CurrentControlSet\Services\EventLog\Application\guestdiag-agent`
)

// templateConfig is what an administrator puts in ProgramData before
// installing, as when baking a template: the MSI must leave it as it is.
// It points the agent at the named-pipe stand-in (the virtio-serial device
// cannot exist under Wine) and keeps the network and logs checks off, as
// agentConfig does, for its reasons.
const templateConfig = `{"device":"\\\\.\\pipe\\guestdiag-standin","heartbeat":"1s",` +
	`"checks":{"network":{"enabled":false},"logs":{"enabled":false}}}`

// buildMSI builds the agent's MSI as `make packages` does, through
// internal/pkgbuild and Debian's wixl, around a windows/amd64 agent built
// for the test, and returns the MSI's path and the agent's.
func buildMSI(t *testing.T) (msi, exe string) {
	t.Helper()
	for _, tool := range []string{"wixl", "msibuild"} {
		if _, err := exec.LookPath(tool); err != nil {
			msg := tool + " is missing (apt-get install wixl msitools; scripts/deps.sh installs them)"
			if os.Getenv("GUESTDIAG_VMLAB") == "require" || os.Getenv("GUESTDIAG_REQUIRE_PACKAGING") == "1" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	bin := t.TempDir()
	exe = filepath.Join(bin, "windows_amd64", "guestdiag-agent.exe")
	copyFile(t, winetest.Build(t, "github.com/guestdiag/guestdiag/cmd/guestdiag-agent"), exe)
	packaging, err := filepath.Abs(filepath.Join("..", "..", "packaging"))
	if err != nil {
		t.Fatal(err)
	}
	msi, err = pkgbuild.BuildMSI(context.Background(), pkgbuild.Inputs{Packaging: packaging, Bin: bin, Version: "1.2.3"}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return msi, exe
}

// TestIntegrationWineMSI installs the agent's MSI with Wine's msiexec into
// a fresh prefix, as an administrator would (`msiexec /i … /qn`), checks
// what they would check afterwards, and uninstalls it with `msiexec /x`.
func TestIntegrationWineMSI(t *testing.T) {
	winetest.Require(t)
	msi, built := buildMSI(t)
	p := winetest.NewPrefix(t)
	standinExe := winetest.Build(t, "github.com/guestdiag/guestdiag/test/wine/standin")

	if err := os.MkdirAll(p.HostPath(msiState), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.HostPath(msiConfig), []byte(templateConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	// Services inherit services.exe's environment, and their own stderr
	// goes nowhere: Wine's trace of event log writes is how the test reads
	// what the service says. A boot makes services.exe trace them.
	p.Setenv("WINEDEBUG", "-all,+eventlog")
	p.Reboot()
	host := startStandin(t, p, standinExe)

	in := p.Run(5*time.Minute, "msiexec", "/i", winetest.WinPath(msi), "/qn")
	t.Logf("msiexec /i took %v", in.Took.Round(time.Millisecond))
	if in.Exit != 0 {
		t.Fatalf("msiexec /i: %v", in)
	}
	got, err := os.ReadFile(p.HostPath(msiExe))
	if err != nil {
		t.Fatalf("no agent in Program Files after the install: %v", err)
	}
	if want, _ := os.ReadFile(built); !bytes.Equal(got, want) {
		t.Errorf("%s (%d bytes) is not the agent put in the MSI (%d bytes)", msiExe, len(got), len(want))
	}
	if b, err := os.ReadFile(p.HostPath(msiConfig)); err != nil || string(b) != templateConfig {
		t.Errorf("the config in ProgramData after the install = %q (%v), want the one placed before it, untouched", b, err)
	}

	reg := p.Run(time.Minute, "reg", "query", serviceKey)
	t.Logf("service key:\n%s", reg.Stdout)
	for _, want := range []string{
		`DisplayName    REG_SZ    guestdiag agent`,
		`Start    REG_DWORD    0x2`, // SERVICE_AUTO_START
		`ObjectName    REG_SZ    LocalSystem`,
	} {
		if !strings.Contains(reg.Stdout, want) {
			t.Errorf("service key lacks %q:\n%s", want, reg.Stdout)
		}
	}
	if !regexp.MustCompile(`ImagePath    REG_(EXPAND_)?SZ    "?C:\\Program Files\\guestdiag\\guestdiag-agent\.exe"? service run\r?\n`).MatchString(reg.Stdout) {
		t.Errorf("service ImagePath is not the installed exe with `service run`:\n%s", reg.Stdout)
	}
	ev := p.Run(time.Minute, "reg", "query", sourceKey)
	t.Logf("event log source key:\n%s", ev.Stdout)
	for _, want := range []string{
		`EventMessageFile    REG_EXPAND_SZ    %SystemRoot%\System32\EventCreate.exe`,
		`TypesSupported    REG_DWORD    0x7`,
		`CustomSource    REG_DWORD    0x1`,
	} {
		if !strings.Contains(ev.Stdout, want) {
			t.Errorf("event log source key lacks %q: %v", want, ev)
		}
	}

	// ServiceControl Start="install": msiexec started the service, which
	// reached the stand-in host with its hello and wrote its spool under
	// the default state dir, ProgramData\guestdiag.
	a := &wineAgent{Prefix: p, Exe: p.HostPath(msiExe), WinExe: msiExe}
	if r := p.Run(time.Minute, a.Exe, "config", "check"); r.Exit != 0 || !strings.Contains(r.Stdout, msiConfig+" is valid") {
		t.Errorf("config check of the default config file: %v", r)
	}
	waitFor(t, "service running after the install", time.Minute, func() bool { return serviceStatus(t, a)["state"] == "running" })
	// Resume lines, unspooled, may come first on a connection.
	for first := ""; first == "" || strings.Contains(first, `"kind":"resume"`); {
		select {
		case first = <-host.lines:
			if !strings.Contains(first, `"kind":"resume"`) && (!strings.Contains(first, `"kind":"hello"`) || !strings.Contains(first, `"os":"windows"`)) {
				t.Errorf("the service's first message to the host = %s, want its hello", first)
			}
		case <-time.After(2 * time.Minute):
			out, _ := exec.Command("find", filepath.Join(p.Dir, "drive_c"), "-path", "*guestdiag*", "-not", "-path", "*/windows/*").CombinedOutput()
			t.Fatalf("the MSI's service sent no hello to the stand-in host within 2 minutes; boot log:\n%s\nfiles:\n%s", p.BootLog(), out)
		}
	}
	waitFor(t, "a hello in the spool in ProgramData", time.Minute, func() bool {
		return strings.Contains(spoolText(t, p.HostPath(msiState)), `"kind":"hello"`)
	})
	// The MSI cannot set recovery actions; `service run` set them at its
	// start, and said so in the event log. Wine cannot read them back
	// (when it can, this fails: assert `service status` instead).
	want := `trace:eventlog:ReportEventW L"service guestdiag-agent recovery actions set: restart after [5s 30s 1m0s], reset after 24h0m0s (they could not be read: Invalid level.)"`
	waitFor(t, "the service's event saying it set its recovery actions", time.Minute, func() bool { return strings.Contains(p.BootLog(), want) })
	t.Logf("service status: %v", serviceStatus(t, a))

	// A copy outside Program Files asks the service manager afterwards.
	probe := filepath.Join(t.TempDir(), "guestdiag-agent.exe")
	copyFile(t, a.Exe, probe)
	un := p.Run(5*time.Minute, "msiexec", "/x", winetest.WinPath(msi), "/qn")
	t.Logf("msiexec /x took %v", un.Took.Round(time.Millisecond))
	if un.Exit != 0 {
		t.Fatalf("msiexec /x: %v", un)
	}
	// ServiceControl Stop="both": the service stopped, so the host saw its
	// client leave.
	host.received(t, time.Minute)
	if r := p.Run(time.Minute, probe, "service", "status"); r.Exit == 0 || !strings.Contains(r.Stderr, "open service guestdiag-agent") {
		t.Errorf("service status after msiexec /x succeeded: %v", r)
	}
	if r := p.Run(time.Minute, "reg", "query", serviceKey); r.Exit == 0 {
		t.Errorf("service key still there after msiexec /x:\n%s", r.Stdout)
	}
	if _, err := os.Stat(p.HostPath(msiExe)); !os.IsNotExist(err) {
		t.Errorf("%s after msiexec /x: %v, want it gone", msiExe, err)
	}
	if r := p.Run(time.Minute, "reg", "query", sourceKey); strings.Contains(r.Stdout, "EventCreate.exe") {
		t.Errorf("event log source still registered after msiexec /x:\n%s", r.Stdout)
	}
	// The config component is permanent, and the spool is the agent's own:
	// both stay in ProgramData.
	if b, err := os.ReadFile(p.HostPath(msiConfig)); err != nil || string(b) != templateConfig {
		t.Errorf("the config in ProgramData after msiexec /x = %q (%v), want it kept", b, err)
	}
	if !strings.Contains(spoolText(t, p.HostPath(msiState)), `"kind":"hello"`) {
		t.Error("the spool in ProgramData is gone after msiexec /x, want it kept")
	}
}
