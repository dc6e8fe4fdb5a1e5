package checks

import (
	"context"
	"log/slog"
	"time"
)

// Runner runs one check now, then on its interval and whenever the check's
// Watcher reports a change. Runs never overlap.
type Runner struct {
	Check    Check
	Interval time.Duration
	Timeout  time.Duration
	Logger   *slog.Logger
	// Report takes each result and returns true once it is stored; only
	// then is the check's pending position committed.
	Report func(Result) bool
	// Settle is how long a trigger waits for more changes before the run
	// starts, so that a burst (a package upgrade rewriting its database, a
	// ruleset reloaded rule by rule) makes one report. MinGap keeps
	// triggered runs at least this far apart.
	Settle time.Duration
	MinGap time.Duration
}

// Run returns when ctx ends.
func (r Runner) Run(ctx context.Context) {
	logger := r.logger()
	settle, minGap := r.Settle, r.MinGap
	if settle <= 0 {
		settle = 150 * time.Millisecond
	}
	if minGap <= 0 {
		minGap = time.Second
	}
	triggered := make(chan struct{}, 1)
	if w, ok := r.Check.(Watcher); ok {
		go func() {
			err := w.Watch(ctx, func() {
				select {
				case triggered <- struct{}{}:
				default:
				}
			})
			if err != nil && ctx.Err() == nil {
				logger.Warn("check_watch_failed", "check", r.Check.Name(), "err", err, "polling_every", r.Interval)
			}
		}()
	}
	if r.Interval <= 0 {
		r.Interval = time.Minute
	}
	tick := time.NewTicker(r.Interval)
	defer tick.Stop()
	var last time.Time
	for {
		last = time.Now()
		r.Once(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-triggered:
			if s, ok := r.Check.(Settler); ok && !waitQuiet(ctx, s, triggered) {
				return
			}
			wait := max(settle, minGap-time.Since(last))
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			select { // the settle period already covers a trigger in it
			case <-triggered:
			default:
			}
			tick.Reset(r.Interval)
		}
	}
}

func (r Runner) logger() *slog.Logger {
	if r.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Logger
}

// Once runs the check once, reports the result and commits the check's
// position if the report was stored.
func (r Runner) Once(ctx context.Context) {
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	res := r.Check.Run(rctx)
	cancel()
	if ctx.Err() != nil {
		return // shutting down: an aborted run is not a finding
	}
	if !r.Report(res) {
		return
	}
	if c, ok := r.Check.(Committer); ok {
		if err := c.Commit(); err != nil {
			r.logger().Warn("check_commit_failed", "check", r.Check.Name(), "err", err)
		}
	}
}
