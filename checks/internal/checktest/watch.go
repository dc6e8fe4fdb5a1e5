package checktest

import (
	"context"
	"log/slog"
	"testing"
	"time"
)

// Watcher is what checks.Watcher asks of a check; it is repeated here so
// that tests inside package checks can use this package without a cycle.
type Watcher interface {
	Watch(ctx context.Context, trigger func()) error
}

// Watching is a Watcher running in a test.
type Watching struct {
	triggered chan struct{}
	done      chan error
	cancel    context.CancelFunc
}

// StartWatch runs w.Watch until the test ends, and then checks that Watch
// returned nil once its context was cancelled.
func StartWatch(t *testing.T, w Watcher) *Watching {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	wt := &Watching{triggered: make(chan struct{}, 1), done: make(chan error, 1), cancel: cancel}
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

// Drain forgets triggers that came before now.
func (wt *Watching) Drain() {
	select {
	case <-wt.triggered:
	default:
	}
}

// Await fails the test unless a trigger comes within d, and returns how
// long it took.
func (wt *Watching) Await(t *testing.T, what string, d time.Duration) time.Duration {
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

// Discard is a logger for checks under test whose logs nobody reads.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// Poll reports whether a trigger came within d, and fails the test if
// Watch returned meanwhile.
func (wt *Watching) Poll(t *testing.T, d time.Duration) bool {
	t.Helper()
	select {
	case <-wt.triggered:
		return true
	case err := <-wt.done:
		wt.done <- err // for the cleanup
		t.Fatalf("Watch returned early: %v", err)
	case <-time.After(d):
	}
	return false
}

// Until waits for ready, and fails the test if Watch returns first.
func (wt *Watching) Until(t *testing.T, ready <-chan struct{}) {
	t.Helper()
	select {
	case <-ready:
	case err := <-wt.done:
		wt.done <- err // for the cleanup
		t.Fatalf("Watch returned before it was ready: %v", err)
	}
}
