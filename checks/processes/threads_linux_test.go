package processes

import (
	"bufio"
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
	"github.com/guestdiag/guestdiag/checks/internal/procstat"
	"github.com/guestdiag/guestdiag/protocol"
)

func threadsRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("testdata/threads/proc")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func TestProcessesProcfsReadsWorkerThreads(t *testing.T) {
	src := procfsSource{root: threadsRoot(t), systemdDir: filepath.Join(t.TempDir(), "absent")}
	procs, err := src.processes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var threads []proc
	for _, p := range procs {
		if p.TID != 0 {
			threads = append(threads, p)
		}
	}
	want := []proc{
		{PID: 1400, PPID: 1, Start: 500100, Name: "java", State: "D", Wchan: "rpc_wait_bit_killable", Switches: 712, TID: 1401, Thread: "worker-1"},
		{PID: 1600, PPID: 1, Start: 610020, Name: "app", State: "t", Wchan: "ptrace_stop", TID: 1601, Thread: "app-handler"},
	}
	slices.SortFunc(threads, func(a, b proc) int { return a.TID - b.TID })
	if !slices.Equal(threads, want) {
		t.Errorf("worker threads = %+v\nwant %+v", threads, want)
	}
	if n := len(procs) - len(threads); n != 4 {
		t.Errorf("read %d processes, want 4", n)
	}
}

func TestProcessesRunReportsAHungWorkerThread(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := procfsSource{root: threadsRoot(t), systemdDir: filepath.Join(t.TempDir(), "absent")}
		c := newCheck(Config{}, src, checktest.Discard())
		if res := c.Run(t.Context()); res.Status != protocol.StatusOK {
			t.Fatalf("first run = %s %q %+v", res.Status, res.Summary, res.Findings)
		}
		time.Sleep(5 * time.Minute)
		res := c.Run(t.Context())
		var got []string
		for _, f := range res.Findings {
			got = append(got, f.Code+" "+f.Source)
		}
		want := []string{
			"proc.hung java[1400]/worker-1[1401]",
			"proc.stopped batch[1500]",
			"proc.stopped app[1600]/app-handler[1601]",
		}
		if !slices.Equal(got, want) {
			t.Errorf("findings = %q, want %q", got, want)
		}
		if len(res.Findings) > 0 {
			msg := res.Findings[0].Message
			if !strings.HasPrefix(msg, "pid 1400 java thread 1401 worker-1 in uninterruptible sleep (D)") ||
				!strings.Contains(msg, "rpc_wait_bit_killable") || !strings.HasSuffix(msg, ": java -jar app.jar") {
				t.Errorf("hung thread message = %q", msg)
			}
		}
		d := res.Data.(Data)
		i := slices.IndexFunc(d.Processes, func(p Proc) bool { return p.TID == 1401 })
		if i < 0 || d.Processes[i].PID != 1400 || d.Processes[i].Thread != "worker-1" {
			t.Errorf("data processes = %+v, want the thread 1401 of pid 1400", d.Processes)
		}
		if res.Status != protocol.StatusCrit {
			t.Errorf("status = %s, want crit for a hung thread", res.Status)
		}
	})
}

// TestIntegrationProcessesStoppedThreadsAreOneProcess stops a real process
// with worker threads: every thread shows T, and the check reports the
// process once, not once per thread.
func TestIntegrationProcessesStoppedThreadsAreOneProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/task"); err != nil {
		t.Skip("needs a mounted /proc; run on Linux with procfs")
	}
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("needs python3 in PATH to start a process with a worker thread")
	}
	cmd := exec.Command(py, "-c", "import threading, time\n"+
		"threading.Thread(target=time.sleep, args=(60,), name='worker').start()\n"+
		"print('ready', flush=True)\ntime.sleep(60)\n")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("helper did not start its thread: %q, %v", line, err)
	}
	pid := cmd.Process.Pid
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}

	// Every thread reaches T; the worker thread is read as one.
	deadline := time.Now().Add(5 * time.Second)
	for {
		tasks, err := procstat.ReadTasks(t.Context(), "/proc", pid)
		if err != nil {
			t.Fatal(err)
		}
		if len(tasks) > 0 && !slices.ContainsFunc(tasks, func(s procstat.Stat) bool { return s.State != "T" }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker threads of %d after SIGSTOP: %+v, want at least one, all in T", pid, tasks)
		}
		time.Sleep(20 * time.Millisecond) // the interval between samples
	}

	c, err := New(Config{StoppedAfter: checks.D(time.Millisecond)}, checks.Env{Logger: checktest.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	var mine []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && len(mine) == 0; {
		res := c.Run(t.Context())
		for _, f := range res.Findings {
			if strings.Contains(f.Source, "["+strconv.Itoa(pid)+"]") {
				mine = append(mine, f.Code+" "+f.Source)
			}
		}
		time.Sleep(20 * time.Millisecond) // the interval between samples
	}
	if want := []string{"proc.stopped python3[" + strconv.Itoa(pid) + "]"}; !slices.Equal(mine, want) {
		t.Errorf("findings about the stopped process = %q, want %q", mine, want)
	}
}
