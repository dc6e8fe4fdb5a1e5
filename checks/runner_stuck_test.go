package checks

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
)

// deafCheck ignores its context: each run blocks until release is closed.
type deafCheck struct {
	release chan struct{}
	started atomic.Int32
	running atomic.Int32
}

func (c *deafCheck) Name() string { return "deaf" }

func (c *deafCheck) Run(context.Context) Result {
	c.started.Add(1)
	c.running.Add(1)
	defer c.running.Add(-1)
	<-c.release
	return Result{Status: protocol.StatusOK, Summary: "late"}
}

type reports struct {
	mu  sync.Mutex
	got []Result
	at  []time.Duration
}

func (r *reports) report(start time.Time) func(Result) bool {
	return func(res Result) bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.got = append(r.got, res)
		r.at = append(r.at, time.Since(start))
		return true
	}
}

func TestRunnerAbandonsAStuckRunAndDoesNotPileUpRuns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := &deafCheck{release: make(chan struct{})}
		var r reports
		start := time.Now()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			Runner{Check: c, Interval: time.Minute, Timeout: 10 * time.Second, Grace: 5 * time.Second, Report: r.report(start)}.Run(ctx)
		}()
		// Three intervals pass with the first run still stuck.
		time.Sleep(3*time.Minute + time.Second)
		synctest.Wait()
		r.mu.Lock()
		got, at := r.got, r.at
		r.mu.Unlock()
		if len(got) != 4 {
			t.Fatalf("%d reports, want 4: the abandoned run, then one per interval saying it is still stuck", len(got))
		}
		if at[0] != 15*time.Second {
			t.Errorf("stuck reported after %v, want timeout 10s + grace 5s", at[0])
		}
		for i, res := range got {
			if res.Status != protocol.StatusUnknown || len(res.Findings) != 1 || res.Findings[0].Code != CodeCheckStuck {
				t.Errorf("report %d = %+v, want unknown with agent.check_stuck", i, res)
			}
		}
		if !strings.Contains(got[1].Summary, "not started again") {
			t.Errorf("later report says %q, want it to say the check is not started again", got[1].Summary)
		}
		if n := c.started.Load(); n != 1 {
			t.Errorf("check started %d times, want once: no new run while the stuck one goes on", n)
		}

		close(c.release)
		synctest.Wait()
		time.Sleep(time.Minute)
		synctest.Wait()
		r.mu.Lock()
		last := r.got[len(r.got)-1]
		r.mu.Unlock()
		if c.started.Load() != 2 || last.Status != protocol.StatusOK {
			t.Errorf("after the stuck run returned: %d runs, last report %+v; want a second, normal run", c.started.Load(), last)
		}
		cancel()
		<-done
	})
}

// busyCheck burns CPU time by its clock: it advances the fake CPU
// counter it shares with the runner.
type busyCheck struct{ cpu *atomic.Int64 }

func (c busyCheck) Name() string { return "busy" }

func (c busyCheck) Run(context.Context) Result {
	c.cpu.Add(int64(1500 * time.Millisecond))
	return Result{Status: protocol.StatusOK, Summary: "done"}
}

func TestRunnerFlagsARunOverItsCPUBudget(t *testing.T) {
	tests := []struct {
		name     string
		budget   time.Duration
		wantCode bool
	}{
		{"a run using 1.5s against a 1s budget gets agent.budget_exceeded", time.Second, true},
		{"a run within a 2s budget gets no finding", 2 * time.Second, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cpu atomic.Int64
			var got Result
			Runner{
				Check: busyCheck{&cpu}, Timeout: time.Second, CPUBudget: tt.budget,
				CPUTime: func() time.Duration { return time.Duration(cpu.Load()) },
				Report:  func(r Result) bool { got = r; return true },
			}.Once(t.Context())
			has := len(got.Findings) == 1 && got.Findings[0].Code == CodeBudgetExceeded
			if has != tt.wantCode {
				t.Errorf("findings %+v, want budget_exceeded: %v", got.Findings, tt.wantCode)
			}
			if got.Status != protocol.StatusOK {
				t.Errorf("status %s, want the check's own ok: the finding is info", got.Status)
			}
		})
	}
}
