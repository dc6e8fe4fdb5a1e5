package checks

import (
	"context"
	"path/filepath"
	"testing"

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
	res := NewResources(ResourcesConfig{}, discard()).Run(t.Context())
	d := res.Data.(ResourcesData)
	if d.CPU == nil || d.Memory == nil || d.Swap == nil || d.Load == nil {
		t.Fatalf("missing sections: %+v (summary %q)", d, res.Summary)
	}
	if d.Memory.TotalBytes == 0 || d.CPU.Count == 0 {
		t.Errorf("implausible data: memory %+v, cpu %+v", d.Memory, d.CPU)
	}
}
