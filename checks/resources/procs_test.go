package resources

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"fmt"
	"github.com/guestdiag/guestdiag/checks"
	"github.com/guestdiag/guestdiag/checks/internal/checktest"
	"github.com/guestdiag/guestdiag/checks/internal/procstat"
	"github.com/guestdiag/guestdiag/protocol"
)

func readFixture(t *testing.T, parts ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(append([]string{"testdata"}, parts...)...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseResProcStat(t *testing.T) {
	const page = 4096
	tests := []struct {
		name string
		pid  string
		want proc
	}{
		{"init is a user process", "1",
			proc{PID: 1, Start: 12, Name: "systemd", CPU: 5480 * time.Millisecond, RSS: 3224 * page}},
		{"kthreadd is a kernel thread by its flags", "2",
			proc{PID: 2, Start: 25, Name: "kthreadd", CPU: 30 * time.Millisecond, Kernel: true}},
		{"a kworker is a kernel thread", "10",
			proc{PID: 10, Start: 25, Name: "kworker/0:0H-kblockd", CPU: 610 * time.Millisecond, Kernel: true}},
		{"a name in parentheses keeps them", "812",
			proc{PID: 812, Start: 1203, Name: "(sd-pam)", CPU: 10 * time.Millisecond, RSS: 1181 * page}},
		{"a name with a colon and a space", "1500",
			proc{PID: 1500, Start: 5210, Name: "tmux: server", CPU: 2400 * time.Millisecond, RSS: 1024 * page}},
		{"a name that looks like the end of the name", "2001",
			proc{PID: 2001, Start: 90000, Name: "a) (b", CPU: 10 * time.Second, RSS: 51200 * page}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := procstat.Parse(readFixture(t, "proc", tt.pid, "stat"), page)
			if err != nil {
				t.Fatal(err)
			}
			if got := procOf(st); got != tt.want {
				t.Errorf("parseProcStat = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseResProcStatRejectsDamage(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"no name", "12 S 1 2 3"},
		{"a pid that is not a number", "x1 (sh) S 1 1 1 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 5 100 10"},
		{"cut short before rss", "12 (sh) S 1 1 1 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 5 100"},
		{"a negative cpu time", "12 (sh) S 1 1 1 0 -1 0 0 0 0 0 -1 1 0 0 20 0 1 0 5 100 10"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if p, err := procstat.Parse([]byte(tt.in), 4096); !errors.Is(err, procstat.ErrMalformed) {
				t.Errorf("parseProcStat(%q) = %+v, %v; want errProcStat", tt.in, p, err)
			}
		})
	}
}

func TestParseResStatusUID(t *testing.T) {
	tests := []struct {
		name, pid, want string
	}{
		{"root", "1", "0"},
		{"a user", "1500", "1000"},
		{"a setuid process shows its effective uid", "2001", "33"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseStatusUID(readFixture(t, "proc", tt.pid, "status"))
			if !ok || got != tt.want {
				t.Errorf("parseResStatusUID = %q, %v; want %q", got, ok, tt.want)
			}
		})
	}
	if got, ok := parseStatusUID([]byte("Name:\tx\nGid:\t0\t0\t0\t0\n")); ok {
		t.Errorf("status without Uid: got %q, want none", got)
	}
}

func TestParseResPasswd(t *testing.T) {
	got := parsePasswd(readFixture(t, "etc", "passwd"))
	want := map[string]string{"0": "root", "1": "daemon", "33": "www-data", "1000": "alice"}
	if len(got) != len(want) {
		t.Errorf("parseResPasswd = %v, want %v", got, want)
	}
	for uid, name := range want {
		if got[uid] != name {
			t.Errorf("uid %s = %q, want %q (the first entry wins)", uid, got[uid], name)
		}
	}
}

func TestResUsersRereadsAChangedPasswd(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "passwd"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("root:x:0:0::/root:/bin/sh\n")
	u := &users{}
	if got := u.passwdName(dir, "1000"); got != "1000" {
		t.Errorf("unknown uid = %q, want the uid itself", got)
	}
	write("root:x:0:0::/root:/bin/sh\nbob:x:1000:1000::/home/bob:/bin/sh\n")
	if got := u.passwdName(dir, "1000"); got != "bob" {
		t.Errorf("uid after the user was added = %q, want bob", got)
	}
	if got := u.passwdName(filepath.Join(dir, "missing"), "0"); got != "0" {
		t.Errorf("without a passwd file = %q, want the uid", got)
	}
}

func TestParseResPSI(t *testing.T) {
	tests := []struct {
		name string
		file []string
		want PSIResource
	}{
		{"cpu with a full line", []string{"proc", "pressure", "cpu"}, PSIResource{
			Some: &PSILine{Avg10: 16.59, Avg60: 8.90, Avg300: 4.93, TotalUs: 775730103},
			Full: &PSILine{}}},
		{"memory", []string{"proc", "pressure", "memory"}, PSIResource{
			Some: &PSILine{Avg10: 2.04, Avg60: 1.10, Avg300: 0.35, TotalUs: 41234567},
			Full: &PSILine{Avg10: 1.50, Avg60: 0.80, Avg300: 0.21, TotalUs: 30123456}}},
		{"cpu before Linux 5.13 has no full line", []string{"psi", "cpu-before-5.13"}, PSIResource{
			Some: &PSILine{Avg10: 0, Avg60: 0.12, Avg300: 0.07, TotalUs: 2345678}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePSI(readFixture(t, tt.file...))
			if err != nil {
				t.Fatal(err)
			}
			gotJSON, _ := json.Marshal(got)
			wantJSON, _ := json.Marshal(tt.want)
			if string(gotJSON) != string(wantJSON) {
				t.Errorf("parseResPSI = %s, want %s", gotJSON, wantJSON)
			}
		})
	}
	for _, bad := range []string{"bad-number", "missing-avg300"} {
		t.Run("a file with "+bad+" is an error", func(t *testing.T) {
			if got, err := parsePSI(readFixture(t, "psi", bad)); err == nil {
				t.Errorf("parseResPSI = %+v, want an error", got)
			}
		})
	}
}

func TestResTopProcs(t *testing.T) {
	s := time.Second
	prev := map[procKey]time.Duration{
		{1, 10}:   5 * s,
		{100, 50}: 10 * s,
		{200, 60}: 20 * s,
		{300, 70}: 30 * s,
		{400, 80}: 1 * s, // exited; pid 400 now belongs to a new process
	}
	cur := []proc{
		{PID: 1, Start: 10, Name: "systemd", CPU: 5 * s, RSS: 10 << 20},
		{PID: 100, Start: 50, Name: "hog", CPU: 40 * s, RSS: 50 << 20},     // 30 s of 30: 100 %
		{PID: 200, Start: 60, Name: "java", CPU: 35 * s, RSS: 900 << 20},   // 15 s: 50 %
		{PID: 300, Start: 70, Name: "idle", CPU: 30 * s, RSS: 1 << 20},     // none
		{PID: 400, Start: 999, Name: "new", CPU: 3 * s, RSS: 5 << 20},      // started in the window: 10 %
		{PID: 7, Start: 1, Name: "kworker/0:1", CPU: 99 * s, Kernel: true}, // never listed
	}
	byCPU, byMem := topProcs(prev, cur, 30*s, 3, 2)
	var gotCPU, gotMem []string
	for _, p := range byCPU {
		gotCPU = append(gotCPU, fmt.Sprintf("%s %.1f", p.Name, p.CPUPct))
	}
	for _, p := range byMem {
		gotMem = append(gotMem, fmt.Sprintf("%s %d", p.Name, p.RSSBytes>>20))
	}
	if got, want := strings.Join(gotCPU, ", "), "hog 100.0, java 50.0, new 10.0"; got != want {
		t.Errorf("by cpu = %s, want %s", got, want)
	}
	if got, want := strings.Join(gotMem, ", "), "java 900, hog 50, systemd 10"; got != want {
		t.Errorf("by memory = %s, want %s", got, want)
	}
	if byMem[0].CPUPct != 50 {
		t.Errorf("java in the memory list has cpu %v%%, want its 50%% too", byMem[0].CPUPct)
	}

	t.Run("without a previous listing only memory is ranked", func(t *testing.T) {
		byCPU, byMem := topProcs(nil, cur, 30*s, 3, 2)
		if len(byCPU) != 0 || len(byMem) != 3 || byMem[0].CPUPct != 0 {
			t.Errorf("got cpu %+v, memory %+v; want no cpu ranking and three by memory without cpu", byCPU, byMem)
		}
	})
	t.Run("a process is capped at all cpus", func(t *testing.T) {
		byCPU, _ := topProcs(map[procKey]time.Duration{}, cur[1:2], 10*s, 1, 2)
		if len(byCPU) != 1 || byCPU[0].CPUPct != 200 {
			t.Errorf("got %+v, want hog capped at 200%%", byCPU)
		}
	})
}

func TestResWindowsKernelProc(t *testing.T) {
	tests := []struct {
		pid, ppid int
		name      string
		want      bool
	}{
		{0, 0, "", true},
		{4, 0, "System", true},
		{120, 4, "Registry", true},
		{2100, 4, "Memory Compression", true},
		{400, 4, "smss.exe", false},
		{5000, 700, "Registry", false},
		{6000, 900, "sqlservr.exe", false},
	}
	for _, tt := range tests {
		if got := windowsKernelProc(tt.pid, tt.ppid, tt.name); got != tt.want {
			t.Errorf("resWindowsKernelProc(%d, %d, %q) = %v, want %v", tt.pid, tt.ppid, tt.name, got, tt.want)
		}
	}
}

// hogSource is a fakeSource with a busy process, an idle one and a big
// one, and their users.
func hogSource() *fakeSource {
	src := newFakeSource()
	src.procList = []proc{
		{PID: 1, Start: 1, Name: "systemd", RSS: 8 << 20},
		{PID: 4242, Start: 900, Name: "hog", RSS: 2 << 20},
		{PID: 5151, Start: 950, Name: "java", RSS: 600 << 20},
	}
	src.procStep = map[int]time.Duration{4242: 950 * time.Millisecond, 5151: 100 * time.Millisecond}
	src.users = map[int]string{1: "root", 4242: "alice", 5151: "tomcat"}
	return src
}

func TestResourcesTopProcesses(t *testing.T) {
	tests := []struct {
		name     string
		cfg      Config
		cpu      float64
		avail    uint64 // of 1000
		wantTop  bool
		wantText string // in the summary
	}{
		{"nothing high lists nobody", Config{CPUSamples: 1}, 20, 600, false, ""},
		{"high cpu names the hog", Config{CPUSamples: 1}, 95, 600, true, `top: "hog" (pid 4242) 95.0% of a cpu`},
		{"high memory names the biggest", Config{CPUSamples: 1}, 20, 50, true, `top: "java" (pid 5151) 600.0 MiB resident`},
		{"always lists even when fine", Config{CPUSamples: 1, TopProcessesAlways: true}, 20, 600, true, ""},
		{"top_processes -1 lists nobody", Config{CPUSamples: 1, TopProcesses: -1}, 95, 600, false, "cpu 95.0% used"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				src := hogSource()
				src.setCPU(tt.cpu)
				src.mem.Available = tt.avail
				r := newCheck(tt.cfg, src, checktest.Discard())
				res := r.Run(t.Context()) // the first run measures over the 1s first window
				d := res.Data.(Data)
				if !tt.wantTop {
					if d.TopCPU != nil || d.TopMemory != nil {
						t.Errorf("top lists = %+v %+v, want none", d.TopCPU, d.TopMemory)
					}
					if tt.cfg.TopProcesses < 0 && src.procCalls != 0 {
						t.Errorf("processes were listed %d times with top_processes -1, want never", src.procCalls)
					}
				} else {
					want := []Proc{
						{PID: 4242, Name: "hog", User: "alice", CPUPct: 95, RSSBytes: 2 << 20},
						{PID: 5151, Name: "java", User: "tomcat", CPUPct: 10, RSSBytes: 600 << 20},
					}
					if len(d.TopCPU) != 2 || d.TopCPU[0] != want[0] || d.TopCPU[1] != want[1] {
						t.Errorf("top cpu = %+v, want %+v", d.TopCPU, want)
					}
					if len(d.TopMemory) != 3 || d.TopMemory[0] != want[1] || d.TopMemory[1].Name != "systemd" {
						t.Errorf("top memory = %+v, want java, systemd, hog", d.TopMemory)
					}
				}
				if !strings.Contains(res.Summary, tt.wantText) {
					t.Errorf("summary = %q, want it to contain %q", res.Summary, tt.wantText)
				}
			})
		})
	}
}

func TestResourcesTopCPUIsOverTheRunWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := hogSource()
		src.setCPU(95)
		r := newCheck(Config{CPUSamples: 2}, src, checktest.Discard())
		r.Run(t.Context())
		time.Sleep(30 * time.Second) // the agent's interval, on the fake clock
		res := r.Run(t.Context())
		if got := codes(res.Findings); got != "res.cpu_high/warn" {
			t.Fatalf("findings = %q, want res.cpu_high/warn", got)
		}
		d := res.Data.(Data)
		// The fake adds 950 ms per listing; the second run's window is 30 s.
		if len(d.TopCPU) == 0 || d.TopCPU[0].PID != 4242 || d.TopCPU[0].CPUPct != 3.2 {
			t.Errorf("top cpu = %+v, want the hog at 0.95 s of 30 s, 3.2%%", d.TopCPU)
		}
	})
}

func TestResourcesTopProcessesFailing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := hogSource()
		src.setCPU(95)
		src.procErr = errors.New("permission denied")
		res := newCheck(Config{CPUSamples: 1}, src, checktest.Discard()).Run(t.Context())
		d := res.Data.(Data)
		if res.Status != protocol.StatusWarn {
			t.Errorf("status = %q, want warn: missing top processes do not hide the finding", res.Status)
		}
		if d.TopError != "processes: permission denied" {
			t.Errorf("top_error = %q, want the listing's error", d.TopError)
		}
	})
}

func TestResourcesStealHigh(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		samples []float64 // steal percent of consecutive runs
		want    string
	}{
		{"two samples of steal are not yet a finding", Config{}, []float64{15, 15}, ""},
		{"three samples of steal warn", Config{}, []float64{15, 15, 15}, "res.steal_high/warn"},
		{"three samples of heavy steal are critical", Config{}, []float64{35, 40, 30}, "res.steal_high/crit"},
		{"a quiet sample resets the streak", Config{}, []float64{15, 15, 5, 15}, ""},
		{"steal_samples overrides cpu_samples", Config{CPUSamples: 5, StealSamples: 2}, []float64{15, 15}, "res.steal_high/warn"},
		{"steal follows cpu_samples by default", Config{CPUSamples: 2}, []float64{15, 15}, "res.steal_high/warn"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				src := newFakeSource()
				r := newCheck(tt.cfg, src, checktest.Discard())
				var res checks.Result
				for _, s := range tt.samples {
					src.mu.Lock()
					src.cpuSteal = s
					src.mu.Unlock()
					res = r.Run(t.Context())
				}
				if got := codes(res.Findings); got != tt.want {
					t.Errorf("findings = %q, want %q (summary %q)", got, tt.want, res.Summary)
				}
				if tt.want != "" && !strings.Contains(res.Findings[0].Message, "hypervisor") {
					t.Errorf("message = %q, want it to blame the hypervisor", res.Findings[0].Message)
				}
			})
		})
	}
}

func TestResourcesSwapAndInodes(t *testing.T) {
	tests := []struct {
		name   string
		swap   swapStat
		inodes diskUsage // inode fields of /
		want   string
	}{
		{"no swap is never high", swapStat{}, diskUsage{}, ""},
		{"swap at 85% warns", swapStat{Total: 1000, Used: 850}, diskUsage{}, "res.swap_high/warn"},
		{"swap at 96% is critical", swapStat{Total: 1000, Used: 960}, diskUsage{}, "res.swap_high/crit"},
		{"inodes at 50% are fine", swapStat{}, diskUsage{InodesTotal: 100, InodesUsed: 50, InodesFree: 50}, ""},
		{"inodes at 91% warn", swapStat{}, diskUsage{InodesTotal: 100, InodesUsed: 91, InodesFree: 9}, "res.inodes_full/warn"},
		{"inodes at 98% are critical", swapStat{}, diskUsage{InodesTotal: 100, InodesUsed: 98, InodesFree: 2}, "res.inodes_full/crit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				src := newFakeSource()
				src.swapStat = tt.swap
				u := tt.inodes
				u.Total, u.Used, u.Free = 100, 40, 60
				src.usages["/"] = u
				res := newCheck(Config{}, src, checktest.Discard()).Run(t.Context())
				if got := codes(res.Findings); got != tt.want {
					t.Errorf("findings = %q, want %q (summary %q)", got, tt.want, res.Summary)
				}
				for _, f := range res.Findings {
					if f.Code == CodeInodesFull && f.Source != "/" {
						t.Errorf("inode finding source = %q, want /", f.Source)
					}
				}
			})
		})
	}
}

func TestResourcesSkipsInodesOfFilesystemsWithout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource()
		src.mountList = append(src.mountList, mount{Device: "/dev/vdb1", Mountpoint: "/data", Fstype: "btrfs"})
		src.usages["/"] = diskUsage{Total: 100, Used: 40, Free: 60, InodesTotal: 1000, InodesUsed: 250, InodesFree: 750}
		src.usages["/data"] = diskUsage{Total: 100, Used: 10, Free: 90} // btrfs reports no inodes
		res := newCheck(Config{}, src, checktest.Discard()).Run(t.Context())
		d := res.Data.(Data)
		if len(d.Disks) != 2 {
			t.Fatalf("disks = %+v, want two", d.Disks)
		}
		want := Inodes{Total: 1000, Used: 250, Free: 750, UsedPct: 25}
		if d.Disks[0].Inodes == nil || *d.Disks[0].Inodes != want {
			t.Errorf("inodes of / = %+v, want %+v", d.Disks[0].Inodes, want)
		}
		if d.Disks[1].Inodes != nil {
			t.Errorf("inodes of btrfs /data = %+v, want none", d.Disks[1].Inodes)
		}
		if res.Status != protocol.StatusOK {
			t.Errorf("status = %q (%s), want ok", res.Status, res.Summary)
		}
	})
}

func TestResourcesConfigDefaults(t *testing.T) {
	c := Config{CPU: Threshold{Warn: 50}, Swap: Threshold{Crit: 99}, TopProcesses: 100}.withDefaults()
	if c.CPU != (Threshold{Warn: 50, Crit: 98}) {
		t.Errorf("cpu with only warn set = %+v, want the default crit", c.CPU)
	}
	if c.Swap != (Threshold{Warn: 80, Crit: 99}) {
		t.Errorf("swap with only crit set = %+v, want the default warn", c.Swap)
	}
	if c.StealSamples != c.CPUSamples || c.Steal != (Threshold{Warn: 10, Crit: 30}) || c.Inodes != (Threshold{Warn: 90, Crit: 97}) {
		t.Errorf("defaults = %+v", c)
	}
	if c.TopProcesses != maxTop {
		t.Errorf("top_processes 100 = %d, want capped at %d", c.TopProcesses, maxTop)
	}
	var decoded Config
	if err := json.Unmarshal([]byte(`{"steal":{"warn":5,"crit":20},"steal_samples":4,"swap":{"warn":70,"crit":90},"inodes":{"warn":80,"crit":95},"top_processes":3,"top_processes_always":true}`), &decoded); err != nil {
		t.Fatal(err)
	}
	want := Config{Steal: Threshold{5, 20}, StealSamples: 4, Swap: Threshold{70, 90}, Inodes: Threshold{80, 95}, TopProcesses: 3, TopProcessesAlways: true}
	if decoded != want {
		t.Errorf("decoded config = %+v, want %+v", decoded, want)
	}
}

func TestResourcesDataJSON(t *testing.T) {
	d := Data{
		Disks:     []DiskData{{Mountpoint: "/", Inodes: &Inodes{Total: 10, Used: 5, Free: 5, UsedPct: 50}}},
		PSI:       &PSI{Reason: "kernel has no /proc/pressure"},
		TopCPU:    []Proc{{PID: 1, Name: "x", User: "root", CPUPct: 1.5, RSSBytes: 4096}},
		TopMemory: []Proc{{PID: 1, Name: "x", RSSBytes: 4096}},
	}
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"inodes":{"total":10,"used":5,"free":5,"used_pct":50}`,
		`"psi":{"available":false,"reason":"kernel has no /proc/pressure"}`,
		`"top_cpu":[{"pid":1,"name":"x","user":"root","cpu_pct":1.5,"rss_bytes":4096}]`,
		`"top_memory":[{"pid":1,"name":"x","cpu_pct":0,"rss_bytes":4096}]`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("json %s\nwant it to contain %s", b, want)
		}
	}
}
