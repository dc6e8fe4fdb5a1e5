package hostrelay

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/internal/natstest"
	"github.com/guestdiag/guestdiag/protocol"
)

// fakeProc writes what findQEMU reads of one QEMU process under root.
func fakeProc(t *testing.T, root string, pid int, ticks uint64, args ...string) {
	t.Helper()
	dir := filepath.Join(root, fmt.Sprint(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f := make([]string, 20)
	for i := range f {
		f[i] = "0"
	}
	f[0], f[11], f[19] = "S", fmt.Sprint(ticks), "4242"
	files := map[string]string{
		"cmdline": strings.Join(append([]string{"/usr/bin/qemu-system-x86_64"}, args...), "\x00") + "\x00",
		"stat":    fmt.Sprintf("%d (qemu-system-x86) %s\n", pid, strings.Join(f, " ")),
		"statm":   "10000 256 0 0 0 0 0\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func qemuWithChannel(name, sock string) []string {
	return []string{"-name", "guest=" + name, "-m", "256", "-chardev", "socket,id=c0,path=" + sock + ",server=on,wait=off",
		"-device", "virtserialport,chardev=c0,name=org.guestdiag.agent.0"}
}

func TestSharedMachineCountsOnlyTheVMsOfItsChannels(t *testing.T) {
	root := t.TempDir()
	mine, theirs := "/run/lab/hostA/domain-1-web1/org.guestdiag.agent.0", "/run/lab/hostB/domain-1-db1/org.guestdiag.agent.0"
	sample := func(ticksMine, ticksTheirs uint64, u *usageSampler, at time.Time) protocol.HostUsage {
		fakeProc(t, root, 101, ticksMine, qemuWithChannel("web1", mine)...)
		fakeProc(t, root, 102, ticksTheirs, qemuWithChannel("db1", theirs)...)
		return u.sample(context.Background(), at)
	}
	served := func() map[string]bool { return map[string]bool{mine: true} }
	t0 := time.Now()

	t.Run("a shared machine's host is its declared CPUs and memory and its own VMs", func(t *testing.T) {
		u := newUsageSampler("hostA", root, t.TempDir(), time.Second)
		u.shared, u.served = SharedMachine{CPUs: 2, MemoryBytes: 1 << 30}, served
		sample(0, 0, u, t0)
		// 1.5 CPU-seconds in one second: 150 % of one CPU, 75 % of two.
		got := sample(150, 80, u, t0.Add(time.Second))
		if len(got.VMs) != 1 || got.VMs[0].VM != "web1" || got.VMs[0].CPUPct != 150 {
			t.Fatalf("VMs %+v, want web1 alone at 150%% CPU", got.VMs)
		}
		if got.CPU.Count != 2 || got.CPU.UsedPct != 75 {
			t.Errorf("host CPU %+v, want 2 CPUs 75%% used", got.CPU)
		}
		rss := uint64(256 * os.Getpagesize())
		want := protocol.HostMemory{TotalBytes: 1 << 30, AvailableBytes: 1<<30 - rss, UsedPct: round2(float64(rss) / (1 << 30) * 100)}
		if got.Memory != want {
			t.Errorf("host memory %+v, want %+v", got.Memory, want)
		}
	})
	t.Run("a host whose VMs want more than its CPUs is at 100 percent", func(t *testing.T) {
		u := newUsageSampler("hostA", root, t.TempDir(), time.Second)
		u.shared, u.served = SharedMachine{CPUs: 1}, served
		sample(0, 0, u, t0)
		if got := sample(150, 0, u, t0.Add(time.Second)); got.CPU.UsedPct != 100 || got.Memory.TotalBytes == 0 {
			t.Errorf("host CPU %+v memory %+v, want 100%% used and the machine's memory", got.CPU, got.Memory)
		}
	})
	t.Run("without the option every QEMU process is listed", func(t *testing.T) {
		u := newUsageSampler("hostA", root, t.TempDir(), time.Second)
		if got := sample(0, 0, u, t0); len(got.VMs) != 2 {
			t.Errorf("VMs %+v, want both", got.VMs)
		}
	})
}

func TestSharedMachineFlag(t *testing.T) {
	tests := []struct {
		name, arg string
		want      SharedMachine
		err       bool
	}{
		{name: "a CPU count alone declares the CPUs", arg: "2", want: SharedMachine{CPUs: 2}},
		{name: "memory takes a size with a suffix", arg: "2,memory=1G", want: SharedMachine{CPUs: 2, MemoryBytes: 1 << 30}},
		{name: "memory without a suffix is in MiB", arg: "4,memory=512", want: SharedMachine{CPUs: 4, MemoryBytes: 512 << 20}},
		{name: "zero CPUs is refused", arg: "0", err: true},
		{name: "an unknown key is refused", arg: "2,mem=1G", err: true},
		{name: "a memory that is not a size is refused", arg: "2,memory=lots", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got SharedMachine
			fs := flag.NewFlagSet("relay", flag.ContinueOnError)
			fs.SetOutput(new(strings.Builder))
			fs.Var(SharedMachineFlag(&got), "shared-machine", "")
			err := fs.Parse([]string{"--shared-machine", tt.arg})
			if (err != nil) != tt.err {
				t.Fatalf("error %v, want an error: %v", err, tt.err)
			}
			if !tt.err && got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestRelayOnASharedMachinePublishesOnlyItsChannelsQEMU(t *testing.T) {
	dir := socketDir(t)
	mine, theirs := filepath.Join(dir, "mine.sock"), filepath.Join(dir, "theirs.sock")
	chardev := func(p string) []string {
		return []string{"-chardev", "socket,id=c0,path=" + p + ",server=on,wait=off"}
	}
	qm := startQEMU(t, append([]string{"-name", "web1", "-m", "64"}, chardev(mine)...)...)
	qt := startQEMU(t, append([]string{"-name", "db1", "-m", "64"}, chardev(theirs)...)...)
	srv := natstest.Start(t)
	cfg := testConfig(dir)
	cfg.Static = []Channel{{Name: "web1", Path: mine}}
	cfg.HostUsageInterval = 100 * time.Millisecond
	cfg.SharedMachine = SharedMachine{CPUs: 3, MemoryBytes: 2 << 30}
	log, _ := newTestLogger(t)
	_, js := startRelay(t, srv, cfg, log)
	waitStream(t, js)

	var got protocol.HostUsage
	eventually(t, "a sample listing web1's QEMU", func() bool {
		for _, m := range streamMsgs(t, js, protocol.HostSubject("hv1")) {
			var u protocol.HostUsage
			if err := json.Unmarshal(m.Data, &u); err != nil {
				t.Fatal(err)
			}
			if len(u.VMs) > 0 {
				got = u
				return true
			}
		}
		return false
	})
	if len(got.VMs) != 1 || got.VMs[0].PID != qm.Process.Pid {
		t.Errorf("VMs %+v, want only web1's QEMU (pid %d), not db1's (pid %d)", got.VMs, qm.Process.Pid, qt.Process.Pid)
	}
	if got.CPU.Count != 3 || got.Memory.TotalBytes != 2<<30 {
		t.Errorf("host CPU %+v memory %+v, want the declared 3 CPUs and 2 GiB", got.CPU, got.Memory)
	}
}
