package checks

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
)

// Runner runs one check now, then on its interval and whenever the check's
// Watcher reports a change. Runs never overlap: a run that overstays its
// Timeout by Grace is abandoned and reported as agent.check_stuck, and the
// check is not started again until that run returns.
type Runner struct {
	Check    Check
	Interval time.Duration
	Timeout  time.Duration
	// Grace is how long past Timeout a run may take to return, for a
	// check that honours its context late, before it is abandoned.
	Grace  time.Duration
	Logger *slog.Logger
	// Report takes each result and returns true once it is stored; only
	// then is the check's pending position committed.
	Report func(Result) bool
	// Settle is how long a trigger waits for more changes before the run
	// starts, so that a burst (a package upgrade rewriting its database, a
	// ruleset reloaded rule by rule) makes one report. MinGap keeps
	// triggered runs at least this far apart.
	Settle time.Duration
	MinGap time.Duration
	// CPUTime, when set, returns the CPU time the process has used so
	// far; a run whose difference exceeds CPUBudget gets an
	// agent.budget_exceeded finding. It measures the whole process, so
	// work done meanwhile by other checks counts against this one.
	CPUTime   func() time.Duration
	CPUBudget time.Duration
}

// Finding codes of the runner.
const (
	CodeCheckStuck     = "agent.check_stuck"
	CodeBudgetExceeded = "agent.budget_exceeded"
)

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
	var (
		last  time.Time
		stuck *stuckRun
	)
	for {
		last = time.Now()
		stuck = r.once(ctx, stuck)
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

// stuckRun is a run that was abandoned; done is closed when it returns.
type stuckRun struct {
	since time.Time
	done  chan struct{}
}

// Once runs the check once, reports the result and commits the check's
// position if the report was stored.
func (r Runner) Once(ctx context.Context) { r.once(ctx, nil) }

// once runs the check unless an abandoned run of it is still going, and
// returns the run that is abandoned afterwards, if any.
func (r Runner) once(ctx context.Context, stuck *stuckRun) *stuckRun {
	timeout, grace := r.Timeout, r.Grace
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	if grace <= 0 {
		grace = 5 * time.Second
	}
	if stuck != nil {
		select {
		case <-stuck.done:
			stuck = nil
		default:
			r.logger().Warn("check_still_stuck", "check", r.Check.Name(), "since", stuck.since)
			r.Report(stuckResult(fmt.Sprintf("the run started %s ago is still running; not started again until it returns",
				time.Since(stuck.since).Round(time.Second)), timeout+grace))
			return stuck
		}
	}
	var cpu0 time.Duration
	if r.CPUTime != nil {
		cpu0 = r.CPUTime()
	}
	started := time.Now()
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	results := make(chan Result, 1)
	go func() { results <- r.Check.Run(rctx) }()
	limit := time.NewTimer(timeout + grace)
	defer limit.Stop()
	var res Result
	select {
	case res = <-results:
	case <-ctx.Done():
		return nil // shutting down: an aborted run is not a finding
	case <-limit.C:
		// Waiting longer would hold up every later run of this check; the
		// goroutine is left to finish and its result thrown away.
		s := &stuckRun{since: started, done: make(chan struct{})}
		go func() {
			<-results
			close(s.done)
			r.logger().Info("check_stuck_returned", "check", r.Check.Name(), "after", time.Since(started))
		}()
		r.logger().Error("check_stuck", "check", r.Check.Name(), "timeout", timeout, "grace", grace)
		r.Report(stuckResult(fmt.Sprintf("the run did not return within its %v timeout and %v grace; abandoned", timeout, grace), timeout+grace))
		return s
	}
	if ctx.Err() != nil {
		return nil
	}
	if r.CPUTime != nil && r.CPUBudget > 0 {
		if used := r.CPUTime() - cpu0; used > r.CPUBudget {
			r.logger().Warn("check_budget_exceeded", "check", r.Check.Name(), "cpu", used, "budget", r.CPUBudget)
			res.Findings = append(res.Findings, protocol.Finding{
				Code:     CodeBudgetExceeded,
				Severity: protocol.SeverityInfo,
				Message: protocol.Clip(fmt.Sprintf("the run used %v of CPU (the agent process's, measured around the run), over its budget of %v",
					used.Round(time.Millisecond), r.CPUBudget), protocol.MaxMessageLen),
			})
		}
	}
	if !r.Report(res) {
		return nil
	}
	if c, ok := r.Check.(Committer); ok {
		if err := c.Commit(); err != nil {
			r.logger().Warn("check_commit_failed", "check", r.Check.Name(), "err", err)
		}
	}
	return nil
}

func stuckResult(why string, limit time.Duration) Result {
	return Result{
		Status:  protocol.StatusUnknown,
		Summary: protocol.Clip("check stuck: "+why, protocol.MaxSummaryLen),
		Findings: []protocol.Finding{{
			Code:     CodeCheckStuck,
			Severity: protocol.SeverityWarn,
			Message:  protocol.Clip(fmt.Sprintf("a run ignored its time limit of %v: %s", limit, why), protocol.MaxMessageLen),
		}},
	}
}
