package wine

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/internal/winetest"
)

// checkResult is one line of `guestdiag-agent check NAME --once --json`.
type checkResult struct {
	Check    string `json:"check"`
	Status   string `json:"status"`
	Summary  string `json:"summary"`
	Findings []struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"findings"`
	Data json.RawMessage `json:"data"`
}

func (r checkResult) codes() []string {
	var out []string
	for _, f := range r.Findings {
		out = append(out, f.Code+" "+f.Message)
	}
	return out
}

// runCheck runs one check once under Wine and decodes its single result.
func runCheck(t *testing.T, a *wineAgent, name string, args ...string) checkResult {
	t.Helper()
	r := a.Run(3*time.Minute, a.Exe, append([]string{"check", name, "--once", "--json"}, args...)...)
	t.Logf("check %s under Wine: exit %d in %v", name, r.Exit, r.Took.Round(time.Millisecond))
	var res checkResult
	if err := json.Unmarshal([]byte(strings.TrimSpace(r.Stdout)), &res); err != nil || res.Check != name {
		t.Fatalf("check %s printed no result: %v\n%v", name, err, r)
	}
	return res
}

// regAdd sets one registry value with Wine's reg.exe.
func regAdd(t *testing.T, a *wineAgent, key, name, typ, data string) {
	t.Helper()
	if r := a.Run(time.Minute, "reg", "add", key, "/v", name, "/t", typ, "/d", data, "/f"); r.Exit != 0 {
		t.Fatalf("reg add %s /v %s: %v", key, name, r)
	}
}

// TestIntegrationWineChecks runs each check once under Wine with
// `check NAME --once --json` and judges its result by what Wine
// implements. The network check runs in TestIntegrationWineNetworkCheck,
// inside a network namespace.
func TestIntegrationWineChecks(t *testing.T) {
	a := newWineAgent(t)

	t.Run("version runs, and how long a start takes is logged", func(t *testing.T) {
		best := time.Hour
		for range 3 {
			r := a.Run(time.Minute, a.Exe, "version")
			if r.Exit != 0 {
				t.Fatalf("version: %v", r)
			}
			best = min(best, r.Took)
		}
		t.Logf("wine64 guestdiag-agent.exe version: best of 3 took %v", best.Round(time.Millisecond))
	})

	t.Run("software reports a program added to the Uninstall key", func(t *testing.T) {
		state := `C:\swstate`
		base := runCheck(t, a, "software", "--state-dir", state)
		if base.Status != "ok" || !strings.HasPrefix(base.Summary, "baseline recorded") {
			t.Fatalf("first run = %s %q, want ok with a baseline", base.Status, base.Summary)
		}
		key := `HKLM\Software\Microsoft\Windows\CurrentVersion\Uninstall\GuestdiagWineTest`
		regAdd(t, a, key, "DisplayName", "REG_SZ", "guestdiag wine test")
		regAdd(t, a, key, "DisplayVersion", "REG_SZ", "1.2.3")
		regAdd(t, a, key, "Publisher", "REG_SZ", "guestdiag")
		got := runCheck(t, a, "software", "--state-dir", state)
		found := false
		for _, c := range got.codes() {
			found = found || strings.HasPrefix(c, "sw.installed ") && strings.Contains(c, "guestdiag wine test") && strings.Contains(c, "1.2.3")
		}
		if !found {
			t.Errorf("second run findings = %q, want sw.installed for guestdiag wine test 1.2.3", got.codes())
		}
		if _, err := os.Stat(a.HostPath(state)); err != nil {
			t.Errorf("no state dir in the prefix: %v", err)
		}
	})

	t.Run("firewall reads the profile keys, then reports their change", func(t *testing.T) {
		state := `C:\fwstate`
		// A fresh prefix has no FirewallPolicy key at all.
		none := runCheck(t, a, "firewall", "--state-dir", state)
		if none.Status != "unknown" || !strings.Contains(none.Summary, `FirewallPolicy: File not found.`) {
			t.Errorf("without the key: %s %q, want unknown saying the key is missing", none.Status, none.Summary)
		}
		key := `HKLM\SYSTEM\CurrentControlSet\Services\SharedAccess\Parameters\FirewallPolicy`
		for _, p := range []string{"DomainProfile", "StandardProfile", "PublicProfile"} {
			regAdd(t, a, key+`\`+p, "EnableFirewall", "REG_DWORD", "1")
			regAdd(t, a, key+`\`+p, "DefaultInboundAction", "REG_DWORD", "1")
		}
		on := runCheck(t, a, "firewall", "--state-dir", state)
		if on.Status != "ok" || on.Summary != "firewall is on: all profiles on, blocking inbound connections by default" {
			t.Errorf("all profiles on: %s %q", on.Status, on.Summary)
		}
		regAdd(t, a, key+`\PublicProfile`, "EnableFirewall", "REG_DWORD", "0")
		off := runCheck(t, a, "firewall", "--state-dir", state)
		codes := strings.Join(off.codes(), "\n")
		if off.Status != "crit" || !strings.Contains(codes, "fw.disabled firewall is off: Public profile is off") || !strings.Contains(codes, "fw.changed ") {
			t.Errorf("Public profile turned off: %s %q, findings:\n%s\nwant crit with fw.disabled and fw.changed", off.Status, off.Summary, codes)
		}
	})

	t.Run("resources reports this machine's memory and processors", func(t *testing.T) {
		got := runCheck(t, a, "resources")
		var data struct {
			CPU struct {
				Count int `json:"count"`
			} `json:"cpu"`
			Memory struct {
				Total uint64 `json:"total_bytes"`
			} `json:"memory"`
			Disks []struct {
				Mountpoint string `json:"mountpoint"`
				Total      uint64 `json:"total_bytes"`
			} `json:"disks"`
		}
		if err := json.Unmarshal(got.Data, &data); err != nil {
			t.Fatalf("resources data: %v", err)
		}
		if got.Status == "unknown" {
			t.Errorf("resources = unknown: %q", got.Summary)
		}
		// Wine answers NtQuerySystemInformation from the host's own
		// figures, so they can be checked against /proc.
		if data.CPU.Count != runtime.NumCPU() {
			t.Errorf("cpu count = %d, this machine has %d", data.CPU.Count, runtime.NumCPU())
		}
		host := memTotal(t)
		if diff := float64(data.Memory.Total) - float64(host); diff < -0.02*float64(host) || diff > 0.02*float64(host) {
			t.Errorf("memory total = %d bytes, /proc/meminfo says %d", data.Memory.Total, host)
		}
		if len(data.Disks) == 0 || data.Disks[0].Mountpoint != "C:" || data.Disks[0].Total == 0 {
			t.Errorf("disks = %+v, want C: first with a size", data.Disks)
		}
	})

	t.Run("processes says unknown with Wine's service manager's answer", func(t *testing.T) {
		got := runCheck(t, a, "processes")
		// Wine's QueryServiceConfig2W answers ERROR_INVALID_LEVEL for the
		// levels the check asks for. When Wine gains them, this fails and
		// the check's real result should be asserted instead.
		if got.Status != "unknown" || !strings.Contains(got.Summary, "query config of service EventLog: Invalid level.") {
			t.Errorf("processes = %s %q, want unknown with Wine's Invalid level", got.Status, got.Summary)
		}
	})

	t.Run("logs is aborted by Wine at EvtCreateBookmark", func(t *testing.T) {
		r := a.Run(3*time.Minute, a.Exe, "check", "logs", "--once", "--json")
		// Wine kills the process from inside the unimplemented entry point;
		// no code of ours runs after it. When Wine implements it, this
		// fails: then assert the check's real result here.
		const abort = "unimplemented function wevtapi.dll.EvtCreateBookmark, aborting"
		if r.Exit == 0 || !strings.Contains(r.Stderr, abort) || strings.TrimSpace(r.Stdout) != "" {
			t.Errorf("check logs under Wine: want the process aborted with %q and no result; got %v", abort, r)
		}
	})
}

// TestIntegrationWineNetworkCheck runs the network check under Wine in a
// network namespace with no routes at all (only a loopback that is down):
// it must not say ok. Every Wine process of the prefix runs in the
// namespace, so nothing can reach a real address.
func TestIntegrationWineNetworkCheck(t *testing.T) {
	winetest.Require(t)
	if os.Geteuid() != 0 {
		t.Skip("makes a network namespace with ip netns add; run as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip (iproute2) for a network namespace")
	}
	ns := fmt.Sprintf("gdwine-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", ns, err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })

	built := winetest.Build(t, "github.com/guestdiag/guestdiag/cmd/guestdiag-agent")
	p := winetest.NewPrefixInNetns(t, ns)
	a := &wineAgent{Prefix: p, WinExe: `C:\guestdiag\guestdiag-agent.exe`}
	a.Exe = p.HostPath(a.WinExe)
	copyFile(t, built, a.Exe)
	got := runCheck(t, a, "network")
	t.Logf("network in an empty namespace: %s %q %q", got.Status, got.Summary, got.codes())
	if got.Status == "ok" {
		t.Errorf("network = ok in a namespace with no routes: %q", got.Summary)
	}
	if codes := strings.Join(got.codes(), "\n"); got.Status != "crit" || !strings.Contains(codes, "net.no_default_route ") {
		t.Errorf("network = %s with %q, want crit with net.no_default_route", got.Status, codes)
	}
}

// memTotal returns MemTotal from /proc/meminfo in bytes.
func memTotal(t *testing.T) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, err := strconv.ParseUint(f[1], 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	t.Fatal("no MemTotal in /proc/meminfo")
	return 0
}
