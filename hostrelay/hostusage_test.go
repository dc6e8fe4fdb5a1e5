package hostrelay

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/internal/natstest"
	"github.com/guestdiag/guestdiag/protocol"
)

// startQEMU starts a real QEMU with no disk, stopped before its first
// instruction (-S), until the test ends.
func startQEMU(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		if os.Getenv("GUESTDIAG_REQUIRE_QEMU") != "" {
			t.Fatalf("GUESTDIAG_REQUIRE_QEMU is set and qemu-system-x86_64 is missing (scripts/deps.sh installs it): %v", err)
		}
		t.Skip("qemu-system-x86_64 not installed; scripts/deps.sh installs it")
	}
	cmd := exec.Command(bin, append([]string{"-S", "-nodefaults", "-display", "none", "-accel", "tcg"}, args...)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

func TestRelayPublishesHostUsageWithEachQEMUProcess(t *testing.T) {
	qemu := startQEMU(t, "-name", "guest=usage test,debug-threads=on", "-m", "64", "-smp", "2")
	srv := natstest.Start(t)
	cfg := testConfig(socketDir(t))
	cfg.HostUsageInterval = 100 * time.Millisecond
	log, _ := newTestLogger(t)
	_, js := startRelay(t, srv, cfg, log)
	waitStream(t, js)

	var got protocol.HostUsage
	var vm protocol.VMUsage
	// Two messages that list it, not one read twice: the first may come
	// while QEMU is still mapping itself in.
	eventually(t, "two samples listing the QEMU process", func() bool {
		samples := 0
		for _, m := range streamMsgs(t, js, protocol.HostSubject("hv1")) {
			var u protocol.HostUsage
			if err := json.Unmarshal(m.Data, &u); err != nil {
				t.Fatal(err)
			}
			for _, v := range u.VMs {
				if v.PID == qemu.Process.Pid {
					got, vm = u, v
					samples++
				}
			}
		}
		return samples >= 2
	})
	if got.Host != "hv1" || got.CPU.Count < 1 || got.Memory.TotalBytes == 0 || got.Memory.AvailableBytes > got.Memory.TotalBytes || len(got.Errors) != 0 {
		t.Errorf("host part %+v, want host hv1 with its CPUs and memory and no errors", got)
	}
	want := protocol.VMUsage{VM: "usage test", PID: qemu.Process.Pid, MemoryBytes: 64 << 20, VCPUs: 2}
	if vm.VM != want.VM || vm.MemoryBytes != want.MemoryBytes || vm.VCPUs != want.VCPUs {
		t.Errorf("VM %+v, want %+v", vm, want)
	}
	// A stopped QEMU still maps its code and some of its RAM.
	if vm.RSSBytes < 1<<20 || vm.CPUPct < 0 || vm.CPUPct > 100*float64(got.CPU.Count) {
		t.Errorf("VM uses %d bytes resident and %.2f%% CPU, want at least 1 MiB and a share of the host's CPUs", vm.RSSBytes, vm.CPUPct)
	}
}

func TestUsageSamplerMeasuresCPUBetweenSamples(t *testing.T) {
	// A busy QEMU: TCG running the empty machine's firmware.
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 not installed; scripts/deps.sh installs it")
	}
	cmd := exec.Command(bin, "-nodefaults", "-display", "none", "-accel", "tcg", "-name", "busy", "-m", "64")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	u := newUsageSampler("h", "/proc", t.TempDir(), time.Second)
	ctx := context.Background()
	find := func(s protocol.HostUsage) (protocol.VMUsage, bool) {
		for _, v := range s.VMs {
			if v.PID == cmd.Process.Pid {
				return v, true
			}
		}
		return protocol.VMUsage{}, false
	}
	eventually(t, "the first sample to list the process", func() bool {
		_, ok := find(u.sample(ctx, time.Now()))
		return ok
	})
	start := time.Now()
	<-time.After(500 * time.Millisecond) // let it run a while between samples
	v, ok := find(u.sample(ctx, time.Now()))
	if !ok {
		t.Fatal("the second sample lost the process")
	}
	t.Logf("QEMU busy over %v: %.1f%% CPU, %d MiB resident", time.Since(start).Round(time.Millisecond), v.CPUPct, v.RSSBytes>>20)
	if v.CPUPct <= 0 {
		t.Errorf("a running TCG QEMU used %.2f%% CPU between samples, want more than 0", v.CPUPct)
	}
}
