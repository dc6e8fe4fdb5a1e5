package guestagent

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

const envPriorityChild = "GUESTDIAG_PRIORITY_CHILD"

// TestPriorityChild lowers its own priority, starts a new thread, and
// prints the nice value and I/O priority of every thread it has.
func TestPriorityChild(t *testing.T) {
	if os.Getenv(envPriorityChild) == "" {
		t.Skip("runs only as the child of TestLowerPrioritySetsEveryThread")
	}
	if err := lowerPriority(discardLogger()); err != nil {
		fmt.Println("ERR", err)
		return
	}
	// A thread made after the change must inherit it.
	done := make(chan struct{})
	hold := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		close(done)
		<-hold
	}()
	<-done
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, task := range tasks {
		tid, _ := strconv.Atoi(task.Name())
		b, err := os.ReadFile("/proc/self/task/" + task.Name() + "/stat")
		if err != nil {
			continue
		}
		// nice is the 17th field after the command name, which ends in ")".
		fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
		prio, _, _ := unix.Syscall(unix.SYS_IOPRIO_GET, ioprioWhoProc, uintptr(tid), 0)
		fmt.Printf("T %d %s %d\n", tid, fields[16], prio)
	}
	close(hold)
}

func TestLowerPrioritySetsEveryThread(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestPriorityChild$", "-test.v")
	cmd.Env = append(os.Environ(), envPriorityChild+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	threads := 0
	wantIO := ioprioClassBE<<ioprioClassSh | lowIOPrioLevel
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "ERR") {
			t.Fatalf("child: %s", line)
		}
		var tid, nice, io int
		if _, err := fmt.Sscanf(line, "T %d %d %d", &tid, &nice, &io); err != nil {
			continue
		}
		threads++
		if nice != lowNice || io != wantIO {
			t.Errorf("thread %d: nice %d, I/O priority %#x; want nice %d and best-effort level 7 (%#x)", tid, nice, io, lowNice, wantIO)
		}
	}
	if threads < 2 {
		t.Fatalf("child listed %d threads, want several:\n%s", threads, out)
	}
}
