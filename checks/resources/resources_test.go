package resources

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/guestdiag/guestdiag/checks"
	"github.com/guestdiag/guestdiag/checks/internal/checktest"
	"github.com/guestdiag/guestdiag/protocol"
)

// fakeSource serves programmable numbers. cpuUsed and cpuSteal set the
// next sample's share of busy and stolen time; each cpuTimes call advances
// the counters by 100 s. Each procs call advances every process's CPU
// time by its entry in procStep.
type fakeSource struct {
	mu        sync.Mutex
	cpu       cpuTimes
	cpuUsed   float64
	cpuSteal  float64
	cpuErr    error
	mem       memoryStat
	memErr    error
	swapStat  swapStat
	mountList []mount
	usages    map[string]diskUsage
	block     map[string]chan struct{} // usage of these mountpoints waits for the channel
	calls     map[string]int
	procList  []proc
	procStep  map[int]time.Duration
	procErr   error
	procCalls int
	users     map[int]string
	pressure  *PSI
}

func newFakeSource() *fakeSource {
	return &fakeSource{
		mem:       memoryStat{Total: 1000, Available: 600},
		mountList: []mount{{Device: "/dev/vda1", Mountpoint: "/", Fstype: "ext4"}},
		usages:    map[string]diskUsage{"/": {Total: 100, Used: 40, Free: 60}},
		block:     map[string]chan struct{}{},
		calls:     map[string]int{},
	}
}

func (f *fakeSource) cpuTimes(context.Context) (cpuTimes, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cpuErr != nil {
		return cpuTimes{}, f.cpuErr
	}
	f.cpu.User += f.cpuUsed
	f.cpu.Steal += f.cpuSteal
	f.cpu.Idle += 100 - f.cpuUsed - f.cpuSteal
	return f.cpu, nil
}

func (f *fakeSource) setCPU(used float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cpuUsed = used
}

func (f *fakeSource) callCount(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[path]
}

func (f *fakeSource) memory(context.Context) (memoryStat, error) { return f.mem, f.memErr }
func (f *fakeSource) swap(context.Context) (swapStat, error)     { return f.swapStat, nil }
func (f *fakeSource) load(context.Context) (LoadData, error) {
	return LoadData{Load1: 0.5, Load5: 0.4, Load15: 0.3}, nil
}
func (f *fakeSource) mounts(context.Context) ([]mount, error) { return f.mountList, nil }

func (f *fakeSource) usage(path string) (diskUsage, error) {
	f.mu.Lock()
	f.calls[path]++
	ch := f.block[path]
	u, ok := f.usages[path]
	f.mu.Unlock()
	if ch != nil {
		<-ch
	}
	if !ok {
		return diskUsage{}, errors.New("no such mount")
	}
	return u, nil
}

func (f *fakeSource) procs(context.Context) ([]proc, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.procCalls++
	if f.procErr != nil {
		return nil, f.procErr
	}
	for i := range f.procList {
		f.procList[i].CPU += f.procStep[f.procList[i].PID]
	}
	return slices.Clone(f.procList), nil
}

func (f *fakeSource) procUser(_ context.Context, p proc) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.users[p.PID]
}

func (f *fakeSource) psi(context.Context) *PSI { return f.pressure }

func codes(fs []protocol.Finding) string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Code+"/"+string(f.Severity))
	}
	return strings.Join(out, ",")
}

func TestCPUPercent(t *testing.T) {
	prev := cpuTimes{User: 10, Nice: 1, System: 5, Idle: 80, Iowait: 2, Irq: 1, Softirq: 1, Steal: 0}
	cur := cpuTimes{User: 40, Nice: 1, System: 15, Idle: 120, Iowait: 12, Irq: 2, Softirq: 2, Steal: 8}
	got, err := cpuPercent(prev, cur, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// total delta 100: user 30, system 12, idle 40, iowait 10, steal 8
	want := CPUData{WindowSec: 30, Count: got.Count, UsedPct: 50, UserPct: 30, SystemPct: 12, IowaitPct: 10, StealPct: 8, IdlePct: 40}
	if got != want {
		t.Errorf("cpuPercent = %+v, want %+v", got, want)
	}
	if _, err := cpuPercent(cur, cur, time.Second); err == nil {
		t.Error("cpuPercent of identical samples: got no error, want one")
	}
}

func TestResourcesCPUHigh(t *testing.T) {
	tests := []struct {
		name    string
		samples []float64 // busy percent of consecutive runs
		want    string    // findings of the last run
	}{
		{"two high samples are not yet a finding", []float64{95, 95}, ""},
		{"three high samples in a row warn", []float64{95, 95, 95}, "res.cpu_high/warn"},
		{"three very high samples in a row are critical", []float64{99, 99, 99}, "res.cpu_high/crit"},
		{"a mix of very high and high only warns", []float64{99, 95, 99}, "res.cpu_high/warn"},
		{"a low sample resets the streak", []float64{95, 95, 50, 95, 95}, ""},
		{"the streak keeps counting", []float64{50, 95, 95, 95, 95}, "res.cpu_high/warn"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				src := newFakeSource()
				r := newCheck(Config{}, src, checktest.Discard())
				var res checks.Result
				for _, s := range tt.samples {
					src.setCPU(s)
					res = r.Run(t.Context())
				}
				if got := codes(res.Findings); got != tt.want {
					t.Errorf("findings = %q, want %q (summary %q)", got, tt.want, res.Summary)
				}
				wantStatus := protocol.StatusOK
				if tt.want != "" {
					wantStatus = protocol.Status(strings.SplitN(tt.want, "/", 2)[1])
				}
				if res.Status != wantStatus {
					t.Errorf("status = %q, want %q", res.Status, wantStatus)
				}
			})
		})
	}
}

func TestResourcesFirstRunMeasuresOverWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource()
		src.setCPU(25)
		r := newCheck(Config{FirstWindow: checks.D(2 * time.Second)}, src, checktest.Discard())
		start := time.Now()
		res := r.Run(t.Context())
		if got := time.Since(start); got != 2*time.Second {
			t.Errorf("first run took %v, want the 2s window", got)
		}
		d := res.Data.(Data)
		if d.CPU == nil || d.CPU.UsedPct != 25 || d.CPU.WindowSec != 2 {
			t.Fatalf("first run cpu = %+v, want 25%% over 2s", d.CPU)
		}
		time.Sleep(30 * time.Second) // the agent's interval, on the fake clock
		start = time.Now()
		res = r.Run(t.Context())
		if got := time.Since(start); got != 0 {
			t.Errorf("second run took %v, want no extra window", got)
		}
		if d := res.Data.(Data); d.CPU.WindowSec != 30 {
			t.Errorf("second run window = %vs, want the 30s since the first", d.CPU.WindowSec)
		}
	})
}

func TestResourcesThresholds(t *testing.T) {
	tests := []struct {
		name       string
		available  uint64 // of 1000
		rootUsed   uint64 // of 100
		wantCodes  string
		wantStatus protocol.Status
	}{
		{"everything low is ok", 600, 40, "", protocol.StatusOK},
		{"memory at 90% warns", 100, 40, "res.memory_high/warn", protocol.StatusWarn},
		{"memory at 98% is critical", 20, 40, "res.memory_high/crit", protocol.StatusCrit},
		{"a disk at 92% warns", 600, 92, "res.disk_full/warn", protocol.StatusWarn},
		{"a full disk and high memory", 100, 99, "res.memory_high/warn,res.disk_full/crit", protocol.StatusCrit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				src := newFakeSource()
				src.mem.Available = tt.available
				src.usages["/"] = diskUsage{Total: 100, Used: tt.rootUsed, Free: 100 - tt.rootUsed}
				res := newCheck(Config{}, src, checktest.Discard()).Run(t.Context())
				if got := codes(res.Findings); got != tt.wantCodes {
					t.Errorf("findings = %q, want %q", got, tt.wantCodes)
				}
				if res.Status != tt.wantStatus {
					t.Errorf("status = %q, want %q (summary %q)", res.Status, tt.wantStatus, res.Summary)
				}
				for _, f := range res.Findings {
					if f.Code == CodeDiskFull && f.Source != "/" {
						t.Errorf("disk finding source = %q, want the mountpoint /", f.Source)
					}
				}
			})
		})
	}
}

func TestResourcesUnknownWhenAMetricFails(t *testing.T) {
	tests := []struct {
		name string
		fail func(*fakeSource)
		want string // in the summary
	}{
		{"memory fails", func(s *fakeSource) { s.memErr = errors.New("meminfo unreadable") }, "memory: meminfo unreadable"},
		{"cpu fails", func(s *fakeSource) { s.cpuErr = errors.New("stat unreadable") }, "cpu: stat unreadable"},
		{"a statfs fails", func(s *fakeSource) { delete(s.usages, "/") }, "statfs /: no such mount"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				src := newFakeSource()
				tt.fail(src)
				res := newCheck(Config{}, src, checktest.Discard()).Run(t.Context())
				if res.Status != protocol.StatusUnknown {
					t.Errorf("status = %q, want unknown", res.Status)
				}
				if !strings.Contains(res.Summary, tt.want) {
					t.Errorf("summary = %q, want it to contain %q", res.Summary, tt.want)
				}
			})
		})
	}
}

func TestResourcesStuckStatfsIsAbandoned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource()
		src.mountList = append(src.mountList, mount{Device: "nfs:/export", Mountpoint: "/mnt/nfs", Fstype: "nfs4"})
		src.usages["/mnt/nfs"] = diskUsage{Total: 100, Used: 10, Free: 90}
		release := make(chan struct{})
		src.block["/mnt/nfs"] = release
		r := newCheck(Config{DiskTimeout: checks.D(5 * time.Second)}, src, checktest.Discard())

		start := time.Now()
		res := r.Run(t.Context())
		// 1s of CPU window, then 5s for the disks.
		if got := time.Since(start); got != 6*time.Second {
			t.Errorf("run with a stuck statfs took %v, want 6s", got)
		}
		if res.Status != protocol.StatusUnknown || !strings.Contains(res.Summary, "statfs /mnt/nfs: no answer within 5s") {
			t.Errorf("got %q %q, want unknown naming the stuck mount", res.Status, res.Summary)
		}
		if d := res.Data.(Data); len(d.Disks) != 1 || d.Disks[0].Mountpoint != "/" {
			t.Errorf("disks = %+v, want / measured anyway", d.Disks)
		}

		res = r.Run(t.Context())
		if got := src.callCount("/mnt/nfs"); got != 1 {
			t.Errorf("statfs of the stuck mount was started %d times, want 1 while it hangs", got)
		}
		if !strings.Contains(res.Summary, "statfs /mnt/nfs: no answer since") {
			t.Errorf("second summary = %q, want it to say the mount is still stuck", res.Summary)
		}

		close(release)
		synctest.Wait()
		res = r.Run(t.Context())
		if res.Status != protocol.StatusOK {
			t.Errorf("after the mount recovered: %q %q, want ok", res.Status, res.Summary)
		}
		if got := src.callCount("/mnt/nfs"); got != 2 {
			t.Errorf("statfs of the recovered mount was started %d times in all, want 2", got)
		}
	})
}

func TestRealMounts(t *testing.T) {
	in := []mount{
		{"/dev/vda1", "/", "ext4"},
		{"proc", "/proc", "proc"},
		{"tmpfs", "/run", "tmpfs"},
		{"/dev/vdb1", "/var", "xfs"},
		{"/dev/vdb1", "/srv/bind", "xfs"},
		{"/dev/loop0", "/snap/core/1", "squashfs"},
		{"/dev/sr0", "/media/cdrom", "iso9660"},
		{"/dev/vdc1", "/var/lib/docker/overlay2/x", "ext4"},
		{"/dev/vdd1", "/devdata", "ext4"},
		{"server:/export", "/mnt/nfs", "nfs4"},
		{`\\?\Volume{1}`, `C:\`, "NTFS"},
		{`\\?\Volume{2}`, `D:\`, "CDFS"},
	}
	var got []string
	for _, m := range realMounts(in) {
		got = append(got, m.Mountpoint)
	}
	want := []string{"/", "/var", "/devdata", "/mnt/nfs", `C:\`}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("realMounts = %q, want %q", got, want)
	}
}

func TestStatusOf(t *testing.T) {
	f := func(sev protocol.Severity) protocol.Finding { return protocol.Finding{Severity: sev} }
	tests := []struct {
		name     string
		findings []protocol.Finding
		want     protocol.Status
	}{
		{"no findings is ok", nil, protocol.StatusOK},
		{"info alone is ok", []protocol.Finding{f(protocol.SeverityInfo)}, protocol.StatusOK},
		{"a warning warns", []protocol.Finding{f(protocol.SeverityInfo), f(protocol.SeverityWarn)}, protocol.StatusWarn},
		{"crit wins over warn", []protocol.Finding{f(protocol.SeverityWarn), f(protocol.SeverityCrit)}, protocol.StatusCrit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := checks.StatusOf(tt.findings); got != tt.want {
				t.Errorf("StatusOf = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestResourcesResultIsAValidEnvelope(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource()
		src.mem.Available = 10
		res := newCheck(Config{}, src, checktest.Discard()).Run(t.Context())
		e := protocol.Envelope{V: protocol.Version, Kind: protocol.KindResult, Run: "r", Seq: 1, TS: time.Now(),
			Check: Name, Status: res.Status, Summary: res.Summary, Findings: res.Findings}
		if err := e.Validate(); err != nil {
			t.Errorf("result does not validate as an envelope: %v", err)
		}
	})
}
