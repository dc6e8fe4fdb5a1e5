package resources

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/checks"
	"github.com/guestdiag/guestdiag/checks/internal/checktest"
	"github.com/shirou/gopsutil/v3/common"
)

// TestPsutilSourceReadsProcFixtures checks the wiring to gopsutil against
// the files under testdata/proc, so that a field mapped to the wrong mode
// or unit shows up.
func TestPsutilSourceReadsProcFixtures(t *testing.T) {
	root, err := filepath.Abs("testdata/proc")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.WithValue(t.Context(), common.EnvKey, common.EnvMap{common.HostProcEnvKey: root})
	var src psutilSource

	ct, err := src.cpuTimes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The fixture's first line in USER_HZ ticks: user 1000 nice 200 system 300
	// idle 8000 iowait 100 irq 10 softirq 20 steal 70; at 100 ticks a second.
	want := cpuTimes{User: 10, Nice: 2, System: 3, Idle: 80, Iowait: 1, Irq: 0.1, Softirq: 0.2, Steal: 0.7}
	if ct != want {
		t.Errorf("cpuTimes = %+v, want %+v", ct, want)
	}

	m, err := src.memory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if wantMem := (memoryStat{Total: 2048000 << 10, Available: 204800 << 10}); m != wantMem {
		t.Errorf("memory = %+v, want %+v", m, wantMem)
	}

	l, err := src.load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if wantLoad := (LoadData{Load1: 0.52, Load5: 0.40, Load15: 0.31}); l != wantLoad {
		t.Errorf("load = %+v, want %+v", l, wantLoad)
	}

	ms, err := src.mounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range realMounts(ms) {
		got = append(got, m.Device+" "+m.Mountpoint+" "+m.Fstype)
	}
	wantMounts := []string{"/dev/vda1 / ext4", "/dev/vdb1 /var xfs"}
	if len(got) != len(wantMounts) || got[0] != wantMounts[0] || got[1] != wantMounts[1] {
		t.Errorf("real mounts = %q, want %q", got, wantMounts)
	}
}

// TestResourcesOnThisMachine gathers real data: every section must come
// back on a Linux machine.
func TestResourcesOnThisMachine(t *testing.T) {
	res := New(Config{}, checktest.Discard()).Run(t.Context())
	d := res.Data.(Data)
	if d.CPU == nil || d.Memory == nil || d.Swap == nil || d.Load == nil {
		t.Fatalf("missing sections: %+v (summary %q)", d, res.Summary)
	}
	if d.PSI == nil {
		t.Error("no psi section on Linux; want it, if only to say it is not available")
	}
	if d.Memory.TotalBytes == 0 || d.CPU.Count == 0 {
		t.Errorf("implausible data: memory %+v, cpu %+v", d.Memory, d.CPU)
	}
}

func fixtureCtx(t testing.TB, proc string) context.Context {
	t.Helper()
	root, err := filepath.Abs(proc)
	if err != nil {
		t.Fatal(err)
	}
	etc, err := filepath.Abs("testdata/etc")
	if err != nil {
		t.Fatal(err)
	}
	return context.WithValue(context.Background(), common.EnvKey,
		common.EnvMap{common.HostProcEnvKey: root, common.HostEtcEnvKey: etc})
}

// TestPsutilSourceListsProcessFixtures reads testdata/proc the way the
// agent reads /proc: kernel threads left out, users from the fixture
// passwd.
func TestPsutilSourceListsProcessFixtures(t *testing.T) {
	ctx := fixtureCtx(t, "testdata/proc")
	src := psutilSource{users: &users{}}
	ps, err := src.procs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int]string{}
	for _, p := range ps {
		got[p.PID] = p.Name + " " + src.procUser(ctx, p)
	}
	want := map[int]string{1: "systemd root", 812: "(sd-pam) 1002", 1500: "tmux: server alice", 2001: "a) (b www-data"}
	if len(got) != len(want) {
		t.Errorf("processes = %v, want %v (kthreadd and the kworker left out)", got, want)
	}
	for pid, w := range want {
		if got[pid] != w {
			t.Errorf("pid %d = %q, want %q", pid, got[pid], w)
		}
	}
	if u := src.procUser(ctx, proc{PID: 999999}); u != "" {
		t.Errorf("user of a process that is gone = %q, want empty", u)
	}
}

func TestPsutilSourcePSI(t *testing.T) {
	src := psutilSource{}
	got := src.psi(fixtureCtx(t, "testdata/proc"))
	if got == nil || !got.Available || got.CPU == nil || got.Memory == nil || got.IO == nil {
		t.Fatalf("psi from fixtures = %+v, want all three", got)
	}
	if got.IO.Full.Avg60 != 0.71 || got.CPU.Some.TotalUs != 775730103 {
		t.Errorf("psi io full = %+v, cpu some = %+v; want the fixture's numbers", got.IO.Full, got.CPU.Some)
	}
	none := src.psi(fixtureCtx(t, t.TempDir()))
	if none == nil || none.Available || !strings.Contains(none.Reason, "CONFIG_PSI") {
		t.Errorf("psi without /proc/pressure = %+v, want not available, saying why", none)
	}
}

// TestIntegrationResourcesNamesACPUHog runs a busy shell loop and expects
// the check, with a threshold every busy machine reaches, to name it.
func TestIntegrationResourcesNamesACPUHog(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("needs sh: apt-get install -y --no-install-recommends dash")
	}
	hog := exec.Command(sh, "-c", "while :; do :; done")
	if err := hog.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		hog.Process.Kill()
		hog.Wait()
	})
	r := New(Config{
		CPU:         Threshold{Warn: 1, Crit: 100},
		CPUSamples:  2,
		FirstWindow: checks.D(500 * time.Millisecond),
	}, checktest.Discard())
	r.Run(t.Context())
	// The agent's interval, shortened: the second sample needs a window in
	// which the hog can run.
	time.Sleep(500 * time.Millisecond)
	res := r.Run(t.Context())
	d := res.Data.(Data)
	if !strings.Contains(codes(res.Findings), CodeCPUHigh) {
		t.Fatalf("findings = %q, want %s (summary %q)", codes(res.Findings), CodeCPUHigh, res.Summary)
	}
	var found *Proc
	for i, p := range d.TopCPU {
		if p.PID == hog.Process.Pid {
			found = &d.TopCPU[i]
		}
		if p.PID == 2 || strings.HasPrefix(p.Name, "kworker") {
			t.Errorf("top cpu lists kernel thread %+v", p)
		}
	}
	if found == nil {
		t.Fatalf("top cpu = %+v, want the hog pid %d among them", d.TopCPU, hog.Process.Pid)
	}
	// How much of a core the hog gets depends on what else the machine
	// runs; that it is listed, busy, with its user and memory does not.
	if found.CPUPct <= 0 || found.User == "" || found.RSSBytes == 0 {
		t.Errorf("hog = %+v, want a busy process with a user and memory", *found)
	}
	if len(d.TopMemory) == 0 {
		t.Error("no top memory list")
	}
}

// BenchmarkResourcesRun is one run of the check on this machine, with the
// top processes listed every time; cpu-ns/op is the CPU time the process
// spent, which is the agent's budget (statfs goroutines included).
func BenchmarkResourcesRun(b *testing.B) {
	r := New(Config{TopProcessesAlways: true, FirstWindow: checks.D(100 * time.Millisecond)}, checktest.Discard())
	r.Run(b.Context()) // the first run waits for its CPU window
	var before, after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r.Run(b.Context())
	}
	b.StopTimer()
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	used := after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano()
	b.ReportMetric(float64(used)/float64(b.N), "cpu-ns/op")
}
