package checks

import (
	"context"
	"testing"
	"time"
)

// watching is a Watcher running in a test.
type watching struct {
	triggered chan struct{}
	done      chan error
	cancel    context.CancelFunc
}

// startWatch runs w.Watch until the test ends, and then checks that Watch
// returned nil once its context was cancelled.
func startWatch(t *testing.T, w Watcher) *watching {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	wt := &watching{triggered: make(chan struct{}, 1), done: make(chan error, 1), cancel: cancel}
	go func() {
		wt.done <- w.Watch(ctx, func() {
			select {
			case wt.triggered <- struct{}{}:
			default:
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-wt.done:
			if err != nil {
				t.Errorf("Watch returned %v after cancel, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Watch did not return after cancel")
		}
	})
	return wt
}

// drain forgets triggers that came before now.
func (wt *watching) drain() {
	select {
	case <-wt.triggered:
	default:
	}
}

// await fails the test unless a trigger comes within d, and returns how
// long it took.
func (wt *watching) await(t *testing.T, what string, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	select {
	case <-wt.triggered:
		return time.Since(start)
	case err := <-wt.done:
		wt.done <- err // for the cleanup
		t.Fatalf("Watch returned before %s: %v", what, err)
	case <-time.After(d):
		t.Fatalf("no trigger within %v of %s", d, what)
	}
	return 0
}
