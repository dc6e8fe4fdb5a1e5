package processes

import (
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/guestdiag/guestdiag/checks"
	"github.com/guestdiag/guestdiag/checks/internal/checktest"
	"github.com/guestdiag/guestdiag/protocol"
)

func TestProcessesTimersSurviveARestart(t *testing.T) {
	stopped := proc{PID: 900, PPID: 1, Start: 42, Name: "sleep", State: "T"}
	tests := []struct {
		name string
		// after the restart
		proc      proc
		boot      string
		wantFound bool
	}{
		{"the restarted check goes on timing the same process", stopped, "boot-1", true},
		{"a reused pid with another start time starts afresh", proc{PID: 900, PPID: 1, Start: 77, Name: "sleep", State: "T"}, "boot-1", false},
		{"after a reboot the same pid and start time start afresh", stopped, "boot-2", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				dir := t.TempDir()
				src := &fake{cmdlines: map[int]string{900: "sleep 600"}, boot: "boot-1"}
				src.set(proc{PID: 1, Name: "init", State: "S"}, stopped)
				first := newCheck(Config{}, src, checktest.Discard())
				first.restore(checks.NewState(dir, Name))
				if res := first.Run(t.Context()); len(res.Findings) != 0 {
					t.Fatalf("first run: %+v, want no finding yet", res.Findings)
				}
				time.Sleep(40 * time.Second)
				first.Run(t.Context())
				if _, err := os.Stat(filepath.Join(dir, Name+"."+stateKey+".json")); err != nil {
					t.Fatalf("nothing saved: %v", err)
				}

				// The agent restarts 20 s later: stopped_after (60 s) has passed
				// since the first sample, not since the restart.
				time.Sleep(20 * time.Second)
				src.mu.Lock()
				src.boot = tt.boot
				src.mu.Unlock()
				src.set(proc{PID: 1, Name: "init", State: "S"}, tt.proc)
				second := newCheck(Config{}, src, checktest.Discard())
				second.restore(checks.NewState(dir, Name))
				res := second.Run(t.Context())
				found := len(res.Findings) == 1 && res.Findings[0].Code == CodeProcessesStopped
				if found != tt.wantFound {
					t.Fatalf("after the restart: %s %+v; want proc.stopped %v", res.Status, res.Findings, tt.wantFound)
				}
				if !tt.wantFound {
					return
				}
				if want := "pid 900 sleep stopped (T) by a signal for 1m0s: sleep 600"; res.Summary != want {
					t.Errorf("summary = %q, want %q", res.Summary, want)
				}
				if res.Status != protocol.StatusWarn {
					t.Errorf("status = %s, want warn", res.Status)
				}
				if src.reads != 1 {
					t.Errorf("command line read %d times, want once: it is kept with the timer", src.reads)
				}
			})
		})
	}
}

func TestProcessesStateThatDoesNotDecodeStartsAfresh(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, Name+"."+stateKey+".json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := &fake{}
	src.set(proc{PID: 900, Start: 42, Name: "sleep", State: "T"})
	c := newCheck(Config{}, src, checktest.Discard())
	c.restore(checks.NewState(dir, Name))
	if res := c.Run(t.Context()); res.Status != protocol.StatusOK || len(c.seen) != 1 {
		t.Errorf("run = %s %+v, following %d; want ok, following the one stopped process", res.Status, res.Findings, len(c.seen))
	}
}
