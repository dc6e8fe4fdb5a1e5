package processes

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/guestdiag/guestdiag/checks"
	"github.com/guestdiag/guestdiag/checks/internal/checktest"
	"github.com/guestdiag/guestdiag/protocol"
)

// fake is a source whose answers the test sets.
type fake struct {
	mu       sync.Mutex
	procs    []proc
	procErr  error
	unitList []Unit
	unitErr  error
	cmdlines map[int]string
	block    chan struct{} // when set, cmdline waits for it to close
	reads    int
	boot     string
}

func (f *fake) bootID() string { return f.boot }

func (f *fake) processes(context.Context) ([]proc, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]proc(nil), f.procs...), f.procErr
}

func (f *fake) cmdline(pid int) (string, error) {
	f.mu.Lock()
	f.reads++
	block := f.block
	f.mu.Unlock()
	if block != nil {
		<-block
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.cmdlines[pid]; ok {
		return c, nil
	}
	return "", errors.New("no such process")
}

func (f *fake) units(context.Context, Config) ([]Unit, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Unit(nil), f.unitList...), f.unitErr
}

func (f *fake) set(procs ...proc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.procs = procs
}

func findingsWith(fs []protocol.Finding, code string) []protocol.Finding {
	var out []protocol.Finding
	for _, f := range fs {
		if f.Code == code {
			out = append(out, f)
		}
	}
	return out
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestProcessesTrack(t *testing.T) {
	t1 := t0.Add(15 * time.Second)
	d := proc{PID: 10, Start: 100, Name: "cp", State: "D", Switches: 7}
	tests := []struct {
		name      string
		prev      map[key]seenState
		proc      proc
		wantSince time.Time
		wantKept  bool
	}{
		{"a process first seen in D starts now", nil, d, t1, true},
		{"a process still in D without running keeps its since",
			map[key]seenState{{10, 100}: {Class: 'D', Since: t0, Switches: 7}}, d, t0, true},
		{"a process in D that ran in between starts afresh",
			map[key]seenState{{10, 100}: {Class: 'D', Since: t0, Switches: 6}}, d, t1, true},
		{"a process that went from T to D starts afresh",
			map[key]seenState{{10, 100}: {Class: 'T', Since: t0, Switches: 7}}, d, t1, true},
		{"a reused PID with another start time starts afresh",
			map[key]seenState{{10, 99}: {Class: 'D', Since: t0, Switches: 7}}, d, t1, true},
		{"stopped by a tracer counts as stopped",
			map[key]seenState{{10, 100}: {Class: 'T', Since: t0}},
			proc{PID: 10, Start: 100, State: "t"}, t0, true},
		{"a process that left D is forgotten",
			map[key]seenState{{10, 100}: {Class: 'D', Since: t0}},
			proc{PID: 10, Start: 100, State: "S"}, time.Time{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := track(tt.prev, []proc{tt.proc}, t1)
			s, ok := got[key{10, 100}]
			if ok != tt.wantKept {
				t.Fatalf("kept = %v, want %v (%v)", ok, tt.wantKept, got)
			}
			if ok && !s.Since.Equal(tt.wantSince) {
				t.Errorf("since = %v, want %v", s.Since, tt.wantSince)
			}
			if len(got) > 1 {
				t.Errorf("remembers %d processes, want at most 1: %v", len(got), got)
			}
		})
	}
}

func TestProcessesFindingsThresholds(t *testing.T) {
	cfg := DefaultConfig().withDefaults()
	now := t0.Add(10 * time.Minute)
	procs := []proc{
		{PID: 2, Name: "kthreadd", State: "S", Kernel: true},
		{PID: 45, PPID: 2, Start: 5, Name: "kworker/0:1", State: "D", Kernel: true, Wchan: "io_schedule"},
		{PID: 812, PPID: 1, Start: 6, Name: "cp", State: "D", Wchan: "rpc_wait_bit_killable"},
		{PID: 813, PPID: 1, Start: 7, Name: "dd", State: "D"},
		{PID: 900, PPID: 1, Start: 8, Name: "sleep", State: "T"},
		{PID: 901, PPID: 1, Start: 9, Name: "app", State: "t"},
		{PID: 1200, PPID: 1, Start: 10, Name: "bash", State: "S"},
		{PID: 1201, PPID: 1200, Start: 11, Name: "worker", State: "Z"},
		{PID: 1202, PPID: 1200, Start: 12, Name: "worker", State: "Z"},
		{PID: 1300, PPID: 1, Start: 13, Name: "fresh", State: "Z"},
	}
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	seen := map[key]seenState{
		{45, 5}:    {Class: 'D', Since: ago(3 * time.Minute)},
		{812, 6}:   {Class: 'D', Since: ago(2 * time.Minute), Cmdline: "cp -a /srv /mnt/nfs", CmdlineRead: true},
		{813, 7}:   {Class: 'D', Since: ago(119 * time.Second)},
		{900, 8}:   {Class: 'T', Since: ago(time.Minute)},
		{901, 9}:   {Class: 'T', Since: ago(59 * time.Second)},
		{1201, 11}: {Class: 'Z', Since: ago(6 * time.Minute)},
		{1202, 12}: {Class: 'Z', Since: ago(5 * time.Minute)},
		{1300, 13}: {Class: 'Z', Since: ago(time.Second)},
	}
	fs, listed, left := findingsOf(cfg, procs, seen, now)

	hung := findingsWith(fs, CodeProcessesHung)
	if len(hung) != 2 {
		t.Fatalf("hung findings = %+v, want the kworker and cp (dd is 1 s short)", hung)
	}
	if hung[0].Source != "kworker/0:1[45]" || !strings.Contains(hung[0].Message, "kernel thread 45 [kworker/0:1]") ||
		!strings.Contains(hung[0].Message, "io_schedule") || hung[0].Severity != protocol.SeverityCrit {
		t.Errorf("kernel thread finding = %+v", hung[0])
	}
	if hung[1].Source != "cp[812]" || !strings.Contains(hung[1].Message, "cp -a /srv /mnt/nfs") || !hung[1].First.Equal(ago(2*time.Minute)) {
		t.Errorf("cp finding = %+v", hung[1])
	}

	stopped := findingsWith(fs, CodeProcessesStopped)
	if len(stopped) != 1 || stopped[0].Source != "sleep[900]" || stopped[0].Severity != protocol.SeverityWarn {
		t.Errorf("stopped findings = %+v, want only sleep[900] (app is 1 s short)", stopped)
	}

	zombies := findingsWith(fs, CodeProcessesZombies)
	if len(zombies) != 1 {
		t.Fatalf("zombie findings = %+v, want one for parent bash", zombies)
	}
	if z := zombies[0]; z.Source != "bash[1200]" || z.Count != 2 || !strings.Contains(z.Message, "oldest pid 1201") {
		t.Errorf("zombie finding = %+v", z)
	}

	if len(listed) != 8 || left != 0 {
		t.Errorf("listed %d (left out %d), want the 8 followed processes", len(listed), left)
	}
	if listed[0].PID != 1201 || listed[len(listed)-1].PID != 1300 {
		t.Errorf("list not oldest first: first %d, last %d", listed[0].PID, listed[len(listed)-1].PID)
	}
	if listed[0].ForSec != 360 {
		t.Errorf("for_s = %v, want 360", listed[0].ForSec)
	}
}

func TestProcessesZombieCount(t *testing.T) {
	cfg := Config{ZombieCount: 3}.withDefaults()
	var procs []proc
	seen := map[key]seenState{}
	for i := range 4 {
		procs = append(procs, proc{PID: 100 + i, PPID: 1, Start: 1, Name: "z", State: "Z"})
		seen[key{100 + i, 1}] = seenState{Class: 'Z', Since: t0}
	}
	fs, _, _ := findingsOf(cfg, procs, seen, t0)
	if len(fs) != 1 || fs[0].Code != CodeProcessesZombies || fs[0].Count != 4 || !strings.Contains(fs[0].Message, "more than 3") {
		t.Errorf("findings = %+v, want one counting 4 zombies", fs)
	}
}

func TestProcessesFindingsAreBounded(t *testing.T) {
	cfg := DefaultConfig().withDefaults()
	now := t0.Add(time.Hour)
	var procs []proc
	seen := map[key]seenState{}
	for i := range 70 {
		procs = append(procs, proc{PID: 1000 + i, Start: 1, Name: "hung", State: "D"})
		seen[key{1000 + i, 1}] = seenState{Class: 'D', Since: t0}
		procs = append(procs, proc{PID: 5000 + i, PPID: 3000 + i, Start: 1, Name: "z", State: "Z"})
		seen[key{5000 + i, 1}] = seenState{Class: 'Z', Since: t0}
	}
	fs, listed, left := findingsOf(cfg, procs, seen, now)
	hung := findingsWith(fs, CodeProcessesHung)
	if len(hung) != maxPerCode+1 || hung[maxPerCode].Count != 60 {
		t.Errorf("hung: %d findings, last %+v; want %d and one counting 60", len(hung), hung[len(hung)-1], maxPerCode)
	}
	zombies := findingsWith(fs, CodeProcessesZombies)
	// ten parents by name, one for the other 60, one for the count over 50
	if len(zombies) != maxPerCode+2 || zombies[maxPerCode].Count != 60 || zombies[maxPerCode+1].Count != 70 {
		t.Errorf("zombies: %d findings: %+v", len(zombies), zombies)
	}
	if len(listed) != maxListed || left != 140-maxListed {
		t.Errorf("listed %d, left out %d", len(listed), left)
	}
}

func TestProcessesUnitFindings(t *testing.T) {
	now := t0
	ago := func(d time.Duration) *time.Time { t := now.Add(-d); return &t }
	after := 5 * time.Minute
	tests := []struct {
		name    string
		unit    Unit
		wantSev protocol.Severity // "" for no finding
		wantMsg string
	}{
		{"a failed watched unit is critical",
			Unit{Name: "nginx.service", Manager: "systemd", LoadState: "loaded", State: "failed", SubState: "failed", Since: ago(time.Hour), Watched: true},
			protocol.SeverityCrit, "unit nginx.service failed (failed) 1h0m0s ago"},
		{"a failed unit that is not watched is a warning",
			Unit{Name: "foo.mount", Manager: "systemd", LoadState: "loaded", State: "failed", SubState: "failed"},
			protocol.SeverityWarn, "unit foo.mount failed (failed)"},
		{"a watched unit activating past the limit is stuck",
			Unit{Name: "db.service", Manager: "systemd", State: "activating", SubState: "start-pre", Since: ago(6 * time.Minute), Watched: true},
			protocol.SeverityWarn, "unit db.service stuck activating (start-pre) for 6m0s"},
		{"a watched unit activating within the limit is fine",
			Unit{Name: "db.service", Manager: "systemd", State: "activating", SubState: "start", Since: ago(4 * time.Minute), Watched: true},
			"", ""},
		{"a watched unit that is active is fine",
			Unit{Name: "db.service", Manager: "systemd", State: "active", SubState: "running", Since: ago(time.Hour), Watched: true},
			"", ""},
		{"a watched unit that does not exist is info",
			Unit{Name: "nope.service", Manager: "systemd", LoadState: "not-found", State: "inactive", SubState: "dead", Watched: true},
			protocol.SeverityInfo, "watched unit nope.service does not exist"},
		{"a stopped automatic service is critical",
			Unit{Name: "Dnscache", Manager: "scm", State: "stopped", StartType: "auto", ExitCode: 1067, Since: ago(0), Watched: true},
			protocol.SeverityCrit, "service Dnscache is set to start automatically but is stopped, exit code 1067"},
		{"a stopped delayed automatic service is fine for a while after boot",
			Unit{Name: "WinRM", Manager: "scm", State: "stopped", StartType: "auto_delayed", Since: ago(time.Minute), Watched: true},
			"", ""},
		{"a delayed automatic service stopped past the limit is critical",
			Unit{Name: "WinRM", Manager: "scm", State: "stopped", StartType: "auto_delayed", Since: ago(10 * time.Minute), Watched: true},
			protocol.SeverityCrit, "service WinRM is set to start automatically but is stopped"},
		{"a stopped manual service is fine",
			Unit{Name: "W32Time", Manager: "scm", State: "stopped", StartType: "manual", Since: ago(time.Hour), Watched: true},
			"", ""},
		{"a service stuck starting is a warning",
			Unit{Name: "LanmanServer", Manager: "scm", State: "start_pending", StartType: "auto", Since: ago(5 * time.Minute), Watched: true},
			protocol.SeverityWarn, "service LanmanServer stuck in START_PENDING for 5m0s"},
		{"a watched service that does not exist is info",
			Unit{Name: "QEMU-GA", Manager: "scm", State: "not_found", Watched: true},
			protocol.SeverityInfo, "watched service QEMU-GA does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := unitFindings([]Unit{tt.unit}, now, after)
			if tt.wantSev == "" {
				if len(fs) != 0 {
					t.Errorf("findings = %+v, want none", fs)
				}
				return
			}
			if len(fs) != 1 {
				t.Fatalf("findings = %+v, want one", fs)
			}
			f := fs[0]
			if f.Code != CodeProcessesServiceFailed || f.Severity != tt.wantSev || f.Message != tt.wantMsg || f.Source != tt.unit.Name {
				t.Errorf("finding = %+v, want %s %q", f, tt.wantSev, tt.wantMsg)
			}
		})
	}
}

func TestProcessesTrackUnitsFillsSinceOnlyWhereUnknown(t *testing.T) {
	told := t0.Add(-time.Hour)
	units := []Unit{
		{Name: "a", State: "start_pending"},
		{Name: "b", State: "activating", Since: &told},
	}
	seen := trackUnits(nil, units, t0)
	if !units[0].Since.Equal(t0) || !units[1].Since.Equal(told) {
		t.Fatalf("since = %v, %v; want first seen for a, systemd's for b", units[0].Since, units[1].Since)
	}
	later := t0.Add(time.Minute)
	units = []Unit{{Name: "a", State: "start_pending"}}
	seen = trackUnits(seen, units, later)
	if !units[0].Since.Equal(t0) {
		t.Errorf("a still pending: since = %v, want %v", units[0].Since, t0)
	}
	units = []Unit{{Name: "a", State: "running"}}
	trackUnits(seen, units, later)
	if !units[0].Since.Equal(later) {
		t.Errorf("a now running: since = %v, want %v", units[0].Since, later)
	}
}

func TestProcessesWindowsUnit(t *testing.T) {
	tests := []struct {
		name                 string
		state, start         uint32
		delayed              bool
		exit, svcExit        uint32
		wantState, wantStart string
		wantExit             uint32
	}{
		{"a running automatic service", 4, 2, false, 0, 0, "running", "auto", 0},
		{"a delayed automatic service", 1, 2, true, 0, 0, "stopped", "auto_delayed", 0},
		{"a service stuck stopping", 3, 3, false, 0, 0, "stop_pending", "manual", 0},
		{"a service that failed with its own code", 1, 2, false, 1066, 42, "stopped", "auto", 42},
		{"a disabled service", 1, 4, false, 1077, 0, "stopped", "disabled", 1077},
		{"a state this code does not know", 9, 7, false, 0, 0, "state_9", "start_7", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := windowsUnit("svc", tt.state, tt.start, tt.delayed, tt.exit, tt.svcExit)
			if u.State != tt.wantState || u.StartType != tt.wantStart || u.ExitCode != tt.wantExit || u.Manager != "scm" || !u.Watched {
				t.Errorf("unit = %+v, want state %s, start %s, exit %d", u, tt.wantState, tt.wantStart, tt.wantExit)
			}
		})
	}
}

func TestProcessesSystemdNames(t *testing.T) {
	for in, want := range map[string]string{"nginx": "nginx.service", "sshd.service": "sshd.service", "home.mount": "home.mount", "backup.timer": "backup.timer"} {
		if got := systemdUnitName(in); got != want {
			t.Errorf("processesSystemdUnitName(%q) = %q, want %q", in, got, want)
		}
	}
	for state, want := range map[string]string{"activating": "InactiveExitTimestamp", "deactivating": "ActiveExitTimestamp", "failed": "InactiveEnterTimestamp", "maintenance": ""} {
		if got := systemdSinceProperty(state); got != want {
			t.Errorf("processesSystemdSinceProperty(%q) = %q, want %q", state, got, want)
		}
	}
}

func TestProcessesParseStatusLine(t *testing.T) {
	tests := []struct {
		line    string
		want    int
		wantErr bool
	}{
		{"HTTP/1.1 200 OK\r\n", 200, false},
		{"HTTP/1.0 302 Found\r\n", 302, false},
		{"HTTP/1.1 503\r\n", 503, false},
		{"SSH-2.0-OpenSSH_9.2\r\n", 0, true},
		{"HTTP/1.1 2000 OK\r\n", 0, true},
		{"HTTP/1.1 abc OK\r\n", 0, true},
	}
	for _, tt := range tests {
		got, err := parseStatusLine([]byte(tt.line))
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("processesParseStatusLine(%q) = %d, %v; want %d, error %v", tt.line, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestProcessesConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		probes  []Probe
		wantErr string
	}{
		{"tcp and http probes are fine", []Probe{{Name: "db", TCP: "127.0.0.1:5432"}, {Name: "web", HTTP: "http://localhost:8080/healthz?full=1"}}, ""},
		{"a probe needs a name", []Probe{{TCP: "127.0.0.1:1"}}, "no name"},
		{"a probe needs one target", []Probe{{Name: "x", TCP: "127.0.0.1:1", HTTP: "http://127.0.0.1/"}}, "exactly one"},
		{"a tcp probe needs a port", []Probe{{Name: "x", TCP: "127.0.0.1"}}, "missing port"},
		{"https is refused", []Probe{{Name: "x", HTTP: "https://127.0.0.1/"}}, "no TLS"},
		{"names are unique", []Probe{{Name: "x", TCP: "a:1"}, {Name: "x", TCP: "b:1"}}, "named twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Probes = tt.probes
			_, err := New(cfg, checks.Env{Logger: checktest.Discard()})
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("NewProcesses: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("NewProcesses error = %v, want one saying %q", err, tt.wantErr)
			}
		})
	}
}

// TestProcessesRunFollowsAStoppedProcess runs the check on a fake clock
// until the stopped process passes stopped_after.
func TestProcessesRunFollowsAStoppedProcess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fake{cmdlines: map[int]string{900: "sleep 600"}}
		src.set(proc{PID: 1, Name: "init", State: "S"}, proc{PID: 900, PPID: 1, Start: 42, Name: "sleep", State: "T", Wchan: "do_signal_stop"})
		src.unitErr = fmt.Errorf("systemd is not running: %w", errNoManager)
		c := newCheck(Config{}, src, checktest.Discard())

		res := c.Run(t.Context())
		if res.Status != protocol.StatusOK || len(res.Findings) != 0 {
			t.Fatalf("first run = %s %q %+v, want ok", res.Status, res.Summary, res.Findings)
		}
		d := res.Data.(Data)
		if len(d.Processes) != 1 || d.Processes[0].Cmdline != "sleep 600" || d.Processes[0].Wchan != "do_signal_stop" {
			t.Errorf("data processes = %+v", d.Processes)
		}
		if d.UnitsSkipped == "" || d.Total != 2 || d.States["T"] != 1 {
			t.Errorf("data = %+v, want units skipped and 2 processes", d)
		}

		time.Sleep(59 * time.Second)
		if res := c.Run(t.Context()); len(res.Findings) != 0 {
			t.Fatalf("after 59 s: %+v, want no finding yet", res.Findings)
		}
		time.Sleep(time.Second)
		res = c.Run(t.Context())
		if res.Status != protocol.StatusWarn || len(res.Findings) != 1 || res.Findings[0].Code != CodeProcessesStopped {
			t.Fatalf("after 60 s = %s %+v, want proc.stopped", res.Status, res.Findings)
		}
		if want := "pid 900 sleep stopped (T) by a signal for 1m0s: sleep 600"; res.Summary != want {
			t.Errorf("summary = %q, want %q", res.Summary, want)
		}

		src.set(proc{PID: 1, Name: "init", State: "S"}, proc{PID: 900, PPID: 1, Start: 42, Name: "sleep", State: "S"})
		if res := c.Run(t.Context()); res.Status != protocol.StatusOK {
			t.Errorf("after SIGCONT = %s %+v, want ok", res.Status, res.Findings)
		}
		if src.reads != 1 {
			t.Errorf("command line read %d times, want once", src.reads)
		}
	})
}

func TestProcessesRunIsUnknownWhenItCannotGather(t *testing.T) {
	noSystemd := fmt.Errorf("systemd is not running: %w", errNoManager)
	tests := []struct {
		name        string
		procErr     error
		unitErr     error
		units       []string
		wantStatus  protocol.Status
		wantSummary string
	}{
		{"an unreadable process table is unknown", errors.New("open /proc: no such file or directory"), noSystemd, nil,
			protocol.StatusUnknown, "could not gather processes: open /proc"},
		{"no systemd without watched units is only noted", nil, noSystemd, nil,
			protocol.StatusOK, "units not checked: systemd is not running"},
		{"no systemd with watched units is unknown", nil, noSystemd, []string{"nginx"},
			protocol.StatusUnknown, "could not gather units: systemd is not running"},
		{"a bus that does not answer is unknown", nil, errors.New("connect to systemd: permission denied"), nil,
			protocol.StatusUnknown, "could not gather units: connect to systemd: permission denied"},
		{"windows has no process states but is not unknown for it", fmt.Errorf("windows has no D, T or Z process states: %w", errors.ErrUnsupported), nil, nil,
			protocol.StatusOK, "0 units or services looked at"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &fake{procErr: tt.procErr, unitErr: tt.unitErr}
			src.set(proc{PID: 1, Name: "init", State: "S"})
			c := newCheck(Config{Units: tt.units, Services: append([]string{}, tt.units...)}, src, checktest.Discard())
			res := c.Run(t.Context())
			if res.Status != tt.wantStatus || !strings.Contains(res.Summary, tt.wantSummary) {
				t.Errorf("run = %s %q, want %s containing %q", res.Status, res.Summary, tt.wantStatus, tt.wantSummary)
			}
		})
	}
}

// TestProcessesStuckCmdlineReadIsAbandoned: reading the command line of a
// process that holds its memory map lock blocks; the run must go on without
// it and not start a second read while the first is stuck.
func TestProcessesStuckCmdlineReadIsAbandoned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fake{block: make(chan struct{}), cmdlines: map[int]string{7: "stuck --hard"}}
		src.set(proc{PID: 7, Start: 1, Name: "stuck", State: "D"})
		src.unitErr = errNoManager
		c := newCheck(Config{}, src, checktest.Discard())
		start := time.Now()
		res := c.Run(t.Context())
		if took := time.Since(start); took != time.Second {
			t.Errorf("run took %v, want the 1 s cmdline limit", took)
		}
		if d := res.Data.(Data); len(d.Processes) != 1 || d.Processes[0].Cmdline != "" {
			t.Errorf("processes = %+v, want one without a command line", d.Processes)
		}
		c.Run(t.Context())
		if src.reads != 1 {
			t.Errorf("reads started = %d, want 1 while the first is stuck", src.reads)
		}
		close(src.block)
		synctest.Wait()
		res = c.Run(t.Context())
		if d := res.Data.(Data); d.Processes[0].Cmdline != "stuck --hard" {
			t.Errorf("after the read returned: cmdline %q, want it read again", d.Processes[0].Cmdline)
		}
	})
}

func TestProcessesProbes(t *testing.T) {
	alive, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer alive.Close()
	go func() {
		for {
			c, err := alive.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	var held []net.Conn
	var heldMu sync.Mutex
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			heldMu.Lock()
			held = append(held, c) // never answers
			heldMu.Unlock()
		}
	}()
	defer func() {
		heldMu.Lock()
		defer heldMu.Unlock()
		for _, c := range held {
			c.Close()
		}
	}()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			if r.Host == "" || r.URL.RawQuery != "deep=1" {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			w.Write([]byte("ok"))
		case "/moved":
			http.Redirect(w, r, "/healthz", http.StatusFound)
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()

	tests := []struct {
		name      string
		probe     Probe
		wantAlive bool
		wantErr   string
		wantCode  int
	}{
		{"a listening port is alive", Probe{Name: "tcp-up", TCP: alive.Addr().String()}, true, "", 0},
		{"a closed port does not respond", Probe{Name: "tcp-down", TCP: closedAddr}, false, "refused", 0},
		{"an http 200 is alive", Probe{Name: "web", HTTP: srv.URL + "/healthz?deep=1"}, true, "", 200},
		{"an http redirect is alive", Probe{Name: "web-moved", HTTP: srv.URL + "/moved"}, true, "", 302},
		{"an http 503 does not respond", Probe{Name: "web-down", HTTP: srv.URL + "/broken"}, false, "http status 503", 503},
		{"a server that never answers times out", Probe{Name: "web-silent", HTTP: "http://" + silent.Addr().String() + "/", Timeout: checks.D(200 * time.Millisecond)}, false, "no answer within 200ms", 0},
	}
	var probes []Probe
	for _, tt := range tests {
		probes = append(probes, tt.probe)
	}
	src := &fake{unitErr: errNoManager}
	src.set(proc{PID: 1, Name: "init", State: "S"})
	c, err := New(Config{Probes: probes}, checks.Env{Logger: checktest.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	c.src = src
	res := c.Run(t.Context())
	got := res.Data.(Data).Probes
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := got[i]
			if r.Alive != tt.wantAlive || !strings.Contains(r.Error, tt.wantErr) || r.HTTPStatus != tt.wantCode {
				t.Errorf("probe = %+v, want alive %v, error with %q, status %d", r, tt.wantAlive, tt.wantErr, tt.wantCode)
			}
		})
	}
	dead := findingsWith(res.Findings, CodeProcessesAppNotResponds)
	if len(dead) != 3 || res.Status != protocol.StatusWarn {
		t.Fatalf("findings = %+v, want 3 proc.app_not_responding", res.Findings)
	}
	if dead[0].Source != "tcp-down" || dead[0].Severity != protocol.SeverityWarn {
		t.Errorf("first finding = %+v", dead[0])
	}
}

func TestProcessesResultIsAValidEnvelope(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fake{unitErr: errNoManager}
		var procs []proc
		for i := range 300 {
			procs = append(procs, proc{PID: 100 + i, PPID: 1, Start: 1, Name: strings.Repeat("n", 15), State: []string{"D", "T", "Z"}[i%3]})
		}
		src.set(procs...)
		src.unitList = []Unit{}
		for i := range 80 {
			src.unitList = append(src.unitList, Unit{Name: fmt.Sprintf("u%d.service", i), Manager: "systemd", State: "failed", SubState: "failed"})
		}
		c := newCheck(Config{}, src, checktest.Discard())
		c.Run(t.Context())
		time.Sleep(time.Hour)
		res := c.Run(t.Context())
		if len(res.Findings) > 60 {
			t.Errorf("%d findings, want about 50 at most", len(res.Findings))
		}
		e := protocol.Envelope{V: protocol.Version, Kind: protocol.KindResult, Run: "r", Seq: 1, TS: time.Now(),
			Check: Name, Status: res.Status, Summary: res.Summary, Findings: res.Findings}
		if err := e.Validate(); err != nil {
			t.Errorf("result does not validate as an envelope: %v", err)
		}
		if d := res.Data.(Data); len(d.Units) != maxListed || d.UnitsLeftOut != 30 {
			t.Errorf("units listed %d, left out %d", len(d.Units), d.UnitsLeftOut)
		}
	})
}
