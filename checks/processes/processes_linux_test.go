package processes

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/guestdiag/guestdiag/checks"
	"github.com/guestdiag/guestdiag/checks/internal/checktest"
	"github.com/guestdiag/guestdiag/protocol"
)

func fixtureRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("testdata/proc")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// TestProcessesProcfsReadsFixtures checks the wiring to procfs against real
// format stat, status, wchan and cmdline files.
func TestProcessesProcfsReadsFixtures(t *testing.T) {
	src := procfsSource{root: fixtureRoot(t), systemdDir: filepath.Join(t.TempDir(), "absent")}
	procs, err := src.processes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	byPID := map[int]proc{}
	for _, p := range procs {
		byPID[p.PID] = p
	}
	if len(procs) != 9 {
		t.Errorf("read %d processes, want 9", len(procs))
	}
	want := map[int]proc{
		2:    {PID: 2, PPID: 0, Start: 9, Name: "kthreadd", State: "S", Kernel: true},
		45:   {PID: 45, PPID: 2, Start: 512, Name: "kworker/u4:2+flush-253:0", State: "D", Kernel: true, Wchan: "io_schedule", Switches: 1203},
		812:  {PID: 812, PPID: 640, Start: 881234, Name: "cp", State: "D", Wchan: "rpc_wait_bit_killable", Switches: 5037},
		900:  {PID: 900, PPID: 640, Start: 902211, Name: "sleep", State: "T", Wchan: "do_signal_stop"},
		901:  {PID: 901, PPID: 905, Start: 902300, Name: "app", State: "t", Wchan: "ptrace_stop"},
		1201: {PID: 1201, PPID: 1200, Start: 700900, Name: "worker", State: "Z"},
		1300: {PID: 1300, PPID: 1200, Start: 710000, Name: "my (odd) name", State: "R"},
	}
	for pid, w := range want {
		if got := byPID[pid]; got != w {
			t.Errorf("pid %d = %+v, want %+v", pid, got, w)
		}
	}

	cmd, err := src.cmdline(812)
	if err != nil || cmd != "cp -a /srv/data /mnt/nfs/backup" {
		t.Errorf("cmdline(812) = %q, %v", cmd, err)
	}
	if cmd, err := src.cmdline(45); err != nil || cmd != "" {
		t.Errorf("cmdline of a kernel thread = %q, %v; want empty", cmd, err)
	}

	_, err = src.units(t.Context(), Config{FailedUnits: true})
	if !errors.Is(err, errNoManager) {
		t.Errorf("units without systemd: %v, want errProcessesNoManager", err)
	}
	if us, err := src.units(t.Context(), Config{}); us != nil || err != nil {
		t.Errorf("units with nothing to ask = %v, %v; want nothing", us, err)
	}
}

// TestProcessesRunOnFixtures runs the whole check on the fixture tree with
// a fake clock: nothing at first, every threshold passed five minutes on.
func TestProcessesRunOnFixtures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := procfsSource{root: fixtureRoot(t), systemdDir: filepath.Join(t.TempDir(), "absent")}
		c := newCheck(Config{}, src, checktest.Discard())
		res := c.Run(t.Context())
		if res.Status != protocol.StatusOK {
			t.Fatalf("first run = %s %q %+v", res.Status, res.Summary, res.Findings)
		}
		d := res.Data.(Data)
		if d.Total != 9 || d.States["D"] != 2 || len(d.Processes) != 5 {
			t.Errorf("data = total %d, states %v, %d followed; want 9, 2 in D, 5", d.Total, d.States, len(d.Processes))
		}
		i := slices.IndexFunc(d.Processes, func(p Proc) bool { return p.PID == 812 })
		if i < 0 || d.Processes[i].Cmdline != "cp -a /srv/data /mnt/nfs/backup" {
			t.Errorf("cp in data: %+v", d.Processes)
		}

		time.Sleep(5 * time.Minute)
		res = c.Run(t.Context())
		var got []string
		for _, f := range res.Findings {
			got = append(got, f.Code+" "+f.Source)
		}
		want := []string{
			"proc.hung kworker/u4:2+flush-253:0[45]", "proc.hung cp[812]",
			"proc.stopped sleep[900]", "proc.stopped app[901]",
			"proc.zombies bash[1200]",
		}
		if !slices.Equal(got, want) {
			t.Errorf("findings = %q, want %q", got, want)
		}
		if res.Status != protocol.StatusCrit {
			t.Errorf("status = %s, want crit for hung processes", res.Status)
		}
	})
}

func TestProcessesUnreadableProcIsUnknown(t *testing.T) {
	for _, root := range []string{filepath.Join(t.TempDir(), "missing"), t.TempDir()} {
		src := procfsSource{root: root, systemdDir: filepath.Join(root, "absent")}
		res := newCheck(Config{}, src, checktest.Discard()).Run(t.Context())
		if res.Status != protocol.StatusUnknown || !strings.Contains(res.Summary, root) {
			t.Errorf("root %s: %s %q, want unknown naming the root", root, res.Status, res.Summary)
		}
	}
}

// TestIntegrationProcessesStoppedAndZombie stops a real child and makes a
// real zombie, and waits for the check to report both.
func TestIntegrationProcessesStoppedAndZombie(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs a mounted /proc; run on Linux with procfs")
	}
	if _, err := exec.LookPath("sleep"); err != nil {
		t.Skip("needs sleep and sh in PATH (coreutils or busybox)")
	}
	stopped := exec.Command("sleep", "60")
	if err := stopped.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopped.Process.Kill(); stopped.Wait() })
	if err := stopped.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// sh forks the short sleep, then becomes the long one, which never
	// reaps it: the short sleep stays a zombie whose parent is the long one.
	reaper := exec.Command("sh", "-c", "sleep 0.1 & exec sleep 60")
	if err := reaper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reaper.Process.Kill(); reaper.Wait() })

	c, err := New(Config{StoppedAfter: checks.D(time.Second), ZombieAge: checks.D(time.Millisecond)}, checks.Env{Logger: checktest.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	stoppedSrc := strconv.Itoa(stopped.Process.Pid)
	reaperSrc := "sleep[" + strconv.Itoa(reaper.Process.Pid) + "]"
	start := time.Now()
	var stoppedF, zombieF *protocol.Finding
	var res checks.Result
	for deadline := start.Add(10 * time.Second); time.Now().Before(deadline) && (stoppedF == nil || zombieF == nil); {
		res = c.Run(t.Context())
		for i, f := range res.Findings {
			switch {
			case f.Code == CodeProcessesStopped && f.Source == "sleep["+stoppedSrc+"]":
				stoppedF = &res.Findings[i]
			case f.Code == CodeProcessesZombies && f.Source == reaperSrc:
				zombieF = &res.Findings[i]
			}
		}
		time.Sleep(100 * time.Millisecond) // the interval between samples
	}
	if stoppedF == nil || zombieF == nil {
		t.Fatalf("after 10 s: stopped %v, zombie %v; last result %s %q", stoppedF, zombieF, res.Status, res.Summary)
	}
	if took := stoppedF.Last.Sub(*stoppedF.First); took < time.Second {
		t.Errorf("proc.stopped after %v, want at least stopped_after", took)
	}
	if !strings.Contains(stoppedF.Message, "pid "+stoppedSrc+" sleep stopped (T)") || !strings.Contains(stoppedF.Message, "sleep 60") {
		t.Errorf("stopped finding = %+v", stoppedF)
	}
	if zombieF.Count != 1 {
		t.Errorf("zombie finding = %+v, want one zombie child", zombieF)
	}
	d := res.Data.(Data)
	var sawStopped, sawZombie bool
	for _, p := range d.Processes {
		sawStopped = sawStopped || p.PID == stopped.Process.Pid && p.State == "T"
		sawZombie = sawZombie || p.PPID == reaper.Process.Pid && p.State == "Z"
	}
	if !sawStopped || !sawZombie {
		t.Errorf("data processes %+v lack the stopped sleep or the zombie", d.Processes)
	}
}
