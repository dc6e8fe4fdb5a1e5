package checks

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
)

// watchedCheck counts runs and commits, and hands its trigger to the test.
type watchedCheck struct {
	mu      sync.Mutex
	runs    []time.Time
	commits int
	trigger chan func()
	watch   error
}

func (c *watchedCheck) Name() string { return "watched" }

func (c *watchedCheck) Run(context.Context) Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.runs = append(c.runs, time.Now())
	return Result{Status: protocol.StatusOK, Summary: "fine"}
}

func (c *watchedCheck) Commit() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.commits++
	return nil
}

func (c *watchedCheck) Watch(ctx context.Context, trigger func()) error {
	if c.watch != nil {
		return c.watch
	}
	c.trigger <- trigger
	<-ctx.Done()
	return nil
}

func (c *watchedCheck) counts() (runs, commits int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.runs), c.commits
}

func TestRunnerRunsOnATriggerWithinASecondAndCoalescesABurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := &watchedCheck{trigger: make(chan func(), 1)}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go Runner{Check: c, Interval: time.Hour, Timeout: time.Second, Report: func(Result) bool { return true }}.Run(ctx)
		trigger := <-c.trigger
		synctest.Wait()
		if runs, _ := c.counts(); runs != 1 {
			t.Fatalf("runs after start = %d, want 1", runs)
		}
		time.Sleep(5 * time.Second)
		start := time.Now()
		for range 10 { // a burst, as a package upgrade makes
			trigger()
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		runs, commits := c.counts()
		if runs != 2 || commits != 2 {
			t.Fatalf("after a burst of 10 triggers: %d runs, %d commits; want 2 and 2", runs, commits)
		}
		if d := c.runs[1].Sub(start); d > time.Second {
			t.Errorf("triggered run started %v after the trigger, want within 1s", d)
		}
	})
}

func TestRunnerDoesNotCommitAResultThatWasNotStored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := &watchedCheck{watch: context.Canceled}
		ctx, cancel := context.WithCancel(t.Context())
		go Runner{Check: c, Interval: time.Minute, Timeout: time.Second, Report: func(Result) bool { return false }}.Run(ctx)
		time.Sleep(150 * time.Second)
		synctest.Wait()
		cancel()
		runs, commits := c.counts()
		if runs != 3 || commits != 0 {
			t.Errorf("%d runs, %d commits; want 3 runs on the interval (the watch failed) and no commit", runs, commits)
		}
	})
}
