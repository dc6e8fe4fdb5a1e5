//go:build linux

package processes

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestMain lets the OOM test run this binary as the process that
// allocates until its cgroup's limit kills it.
func TestMain(m *testing.M) {
	if os.Getenv("GUESTDIAG_TEST_ALLOCATE") == "1" {
		allocate()
		return
	}
	os.Exit(m.Run())
}

// allocate waits for a line on stdin (sent once it is in the test's
// cgroup), then touches up to 256 MiB, a MiB at a time, and exits if the
// OOM killer has not killed it by then.
func allocate() {
	bufio.NewReader(os.Stdin).ReadString('\n')
	var keep [][]byte
	for range 256 {
		b := make([]byte, 1<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		keep = append(keep, b)
	}
	fmt.Println(len(keep))
	os.Exit(3)
}

func waitUntil(t *testing.T, what string, limit time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s", what, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// tracefsForTest returns where tracefs is mounted, mounting it on a
// temporary directory (unmounted after the test) when it is not.
func tracefsForTest(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("tracing signals needs root (CAP_SYS_ADMIN on tracefs); run the test as root")
	}
	for _, d := range []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"} {
		if _, err := os.Stat(filepath.Join(d, "instances")); err == nil {
			return d
		}
	}
	dir := t.TempDir()
	if err := unix.Mount("tracefs", dir, "tracefs", 0, ""); err != nil {
		t.Skipf("tracefs is not mounted and cannot be mounted here (%v)", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, 0) })
	return dir
}

func TestTraceSignalsNamesTheSenderOfAKill(t *testing.T) {
	root := tracefsForTest(t)
	cfg := DefaultConfig()
	cfg.TraceSignals, cfg.Tracefs = true, root
	p := newCheck(cfg, nil, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.traceSignals(ctx, func() {}) }()
	enable := filepath.Join(root, "instances", traceInstance, "events", "signal", "signal_generate", "enable")
	waitUntil(t, "tracefs instance", 5*time.Second, func() bool {
		b, err := os.ReadFile(enable)
		return err == nil && strings.TrimSpace(string(b)) == "1"
	})

	victim := exec.Command("sleep", "60")
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	defer victim.Process.Kill()
	killer := exec.Command("kill", "-KILL", strconv.Itoa(victim.Process.Pid))
	start := time.Now()
	if err := killer.Run(); err != nil {
		t.Fatal(err)
	}
	victim.Wait()
	var got *Sender
	waitUntil(t, "traced SIGKILL", 2*time.Second, func() bool {
		p.ev.mu.Lock()
		defer p.ev.mu.Unlock()
		got = p.ev.sender(victim.Process.Pid, 9, time.Now())
		return got != nil
	})
	t.Logf("kill to traced signal: %s", time.Since(start).Round(time.Microsecond))
	if got.Comm != "kill" || got.PID != killer.Process.Pid || got.Code != 0 {
		t.Errorf("sender %+v, want kill[%d] code 0", *got, killer.Process.Pid)
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("traceSignals returned %v after cancel", err)
	}
	if _, err := os.Stat(filepath.Join(root, "instances", traceInstance)); !os.IsNotExist(err) {
		t.Errorf("instance left after stop (%v)", err)
	}
}

// oomCgroup makes a memory cgroup of 32 MiB without swap under the test's
// own: cgroup v2 when the memory controller is there, else v1. It returns
// the directory, the file to write a pid to, and the path the kernel
// prints for it.
func oomCgroup(t *testing.T) (dir, procs, path string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("making a memory cgroup needs root; run the test as root")
	}
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Skip(err)
	}
	name := fmt.Sprintf("guestdiag-oomtest-%d", os.Getpid())
	for _, l := range strings.Split(strings.TrimSpace(string(self)), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) != 3 {
			continue
		}
		var base string
		var limits map[string]string
		switch {
		case f[1] == "" && hasMemoryController("/sys/fs/cgroup"):
			base, procs = "/sys/fs/cgroup", "cgroup.procs"
			limits = map[string]string{"memory.max": "33554432", "memory.swap.max": "0"}
		case f[1] == "memory":
			base, procs = "/sys/fs/cgroup/memory", "tasks"
			limits = map[string]string{"memory.limit_in_bytes": "33554432", "memory.memsw.limit_in_bytes": "33554432"}
		default:
			continue
		}
		path = filepath.Join(f[2], name)
		dir = filepath.Join(base, path)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Skipf("cannot make a memory cgroup at %s: %v", dir, err)
		}
		t.Cleanup(func() {
			if err := os.Remove(dir); err != nil {
				t.Errorf("remove test cgroup: %v", err)
			}
		})
		for file, v := range limits {
			if err := os.WriteFile(filepath.Join(dir, file), []byte(v), 0); err != nil && !strings.Contains(file, "sw") {
				t.Fatalf("set %s: %v", file, err)
			}
		}
		return dir, filepath.Join(dir, procs), path
	}
	t.Skip("no memory cgroup controller here (neither cgroup v2 with memory nor v1 memory)")
	return "", "", ""
}

func hasMemoryController(root string) bool {
	b, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
	return err == nil && strings.Contains(" "+string(b)+" ", " memory")
}

func TestOOMKillIsReportedFromKmsg(t *testing.T) {
	_, procs, path := oomCgroup(t)
	if _, err := os.Stat("/dev/kmsg"); err != nil {
		t.Skip("no /dev/kmsg here")
	}
	cfg := DefaultConfig()
	p := newCheck(cfg, &fake{}, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	triggered := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		done <- p.watchKmsg(ctx, func() {
			select {
			case triggered <- struct{}{}:
			default:
			}
		})
	}()

	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), "GUESTDIAG_TEST_ALLOCATE=1")
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Process.Kill()
	if err := os.WriteFile(procs, []byte(strconv.Itoa(child.Process.Pid)), 0); err != nil {
		t.Fatalf("move the child into the test cgroup: %v", err)
	}
	// kmsg is opened at its end before the child starts allocating.
	waitUntil(t, "kmsg reader", 5*time.Second, func() bool { return fdOpen(os.Getpid(), "/dev/kmsg") })
	stdin.Write([]byte("go\n"))
	err = child.Wait()
	if ws, ok := child.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, not killed by the OOM killer", err)
	}
	select {
	case <-triggered:
	case <-time.After(2 * time.Second):
		t.Fatal("no trigger within 2 s of the OOM kill")
	}
	res := p.Run(context.Background())
	ready := time.Now()
	d := res.Data.(Data)
	var got *OOMKill
	for i := range d.OOMKills {
		if d.OOMKills[i].PID == child.Process.Pid {
			got = &d.OOMKills[i]
		}
	}
	if got == nil {
		t.Fatalf("no OOM kill of pid %d in %+v", child.Process.Pid, d.OOMKills)
	}
	if got.At != nil {
		t.Logf("kernel's kill record to record read: %s; to finding ready: %s", got.Seen.Sub(*got.At).Round(time.Microsecond), ready.Sub(*got.At).Round(time.Microsecond))
	}
	if got.Cgroup != path || got.Constraint != "CONSTRAINT_MEMCG" || got.AnonRSSKB < 16<<10 {
		t.Errorf("got %+v, want cgroup %s, CONSTRAINT_MEMCG, anon-rss near 32 MiB", *got, path)
	}
	if i := findingFor(res.Findings, CodeProcessesOOMKilled, fmt.Sprintf("%s[%d]", got.Name, got.PID)); i < 0 {
		t.Errorf("no %s finding in %+v", CodeProcessesOOMKilled, res.Findings)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("watchKmsg returned %v after cancel", err)
	}
}

// fdOpen says whether process pid has target open.
func fdOpen(pid int, target string) bool {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && l == target {
			return true
		}
	}
	return false
}
