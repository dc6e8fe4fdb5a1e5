package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
	"github.com/guestdiag/guestdiag/scheduler/executor"
	"github.com/guestdiag/guestdiag/scheduler/lease"
)

// maxHold bounds how long repeated failures keep a VM where it is.
const maxHold = 24 * time.Hour

// recordTimeout bounds one write of a VM record, which runs on a context
// of its own: what a move did must be written even when the scheduler
// stops or loses the lease meanwhile.
const recordTimeout = 5 * time.Second

// execute carries the plan's moves out one after another, checking before
// each that the lease is still ours. The migrations run on a context that
// ends when the lease is lost: a migration may take MigrateTimeout, far
// longer than the lease lives, and must not go on under a scheduler that
// another may have replaced.
func (d *daemon) execute(ctx context.Context, p protocol.Plan) {
	held, stop := d.whileHeld(ctx)
	defer stop()
	for _, m := range p.Moves {
		if err := d.lease.Check(held); err != nil {
			d.log.Warn("moves_stopped", "plan", p.ID, "move", m.ID, "err", err)
			return
		}
		if held.Err() != nil {
			return
		}
		d.move(ctx, held, p, m)
	}
}

// whileHeld returns a context cancelled, with lease.ErrNotHeld as its
// cause, once the lease is lost: when Changed reports it, or when Held
// says so at a check every TTL/3, for a renewal that never returned to
// report it.
func (d *daemon) whileHeld(ctx context.Context) (context.Context, context.CancelFunc) {
	held, cancel := context.WithCancelCause(ctx)
	go func() {
		tick := time.NewTicker(time.Duration(d.f.Lease.TTL) / 3)
		defer tick.Stop()
		for {
			changed := d.lease.Changed()
			if !d.lease.Held() {
				cancel(lease.ErrNotHeld)
				return
			}
			select {
			case <-held.Done():
				return
			case <-changed:
			case <-tick.C:
			}
		}
	}()
	return held, func() { cancel(nil) }
}

// move migrates a move's VMs one by one, on held; outcomes are published
// on ctx. A chunk moves whole or not at all: when one of its VMs fails,
// those already moved are migrated back, newest first, so the chunk's
// private network is not left split across hosts; the outcome says what
// could not be moved back. The migrations back run to their end even if
// the scheduler stops or loses the lease meanwhile, since stopping them
// would leave the chunk split. A VM whose migration may have completed
// (executor.ErrMovedUnconfirmed) is recorded on the target and nothing is
// moved back: that would split the chunk the other way. Every VM of a
// failed move is then held (FailureHold, doubling with each failure in a
// row, at most a day) so the next cycle does not try it again.
func (d *daemon) move(ctx, held context.Context, p protocol.Plan, m protocol.PlanMove) {
	out := protocol.MoveOutcome{V: 1, Kind: protocol.PlanKindMove, Plan: p.ID, Move: m.ID, VMs: m.VMs,
		From: m.From, To: m.To, Scheduler: d.cfg.Name, Executor: d.cfg.Executor.Name()}
	out.State, out.TS = protocol.MoveStarted, time.Now().UTC()
	if err := d.publish(ctx, protocol.OutcomeSubject(p.ID, m.ID), out, m.ID+"/"+out.State); err != nil {
		// Without a record of the start nobody could tell what happened.
		d.log.Error("move_not_started", "move", m.ID, "err", err)
		return
	}
	begin := time.Now()
	var moved []string
	var sum executor.Result
	var failErr error
	unconfirmed := ""
	for _, vm := range m.VMs {
		res, err := d.migrate(held, vm, m.From, m.To)
		if errors.Is(err, executor.ErrMovedUnconfirmed) {
			unconfirmed = vm
			d.record(ctx, vm, func(r *VMRecord) { r.Moved, r.To = time.Now().UTC(), m.To })
		}
		if err != nil {
			failErr = fmt.Errorf("%s: %w", vm, err)
			break
		}
		moved = append(moved, vm)
		d.record(ctx, vm, func(r *VMRecord) { r.Moved, r.To, r.Failures, r.HoldUntil = time.Now().UTC(), m.To, 0, time.Time{} })
		sum.Duration += res.Duration
		sum.Downtime = max(sum.Downtime, res.Downtime)
	}
	out.TS = time.Now().UTC()
	if failErr == nil {
		out.State = protocol.MoveDone
		// The hypervisor's figure when it gave one, else the wall clock.
		if sum.Duration == 0 {
			sum.Duration = time.Since(begin)
		}
		out.DurationMS, out.DowntimeMS = sum.Duration.Milliseconds(), sum.Downtime.Milliseconds()
		d.log.Info("move_done", "move", m.ID, "from", m.From, "to", m.To, "duration", sum.Duration)
	} else {
		out.State = protocol.MoveFailed
		msgs := []string{failErr.Error()}
		if unconfirmed != "" {
			msgs = append(msgs, unconfirmedNote(unconfirmed, moved, m))
		} else {
			msgs = append(msgs, d.moveBack(ctx, moved, m)...)
		}
		out.Error = strings.Join(msgs, "; ")
		now := time.Now().UTC()
		for _, vm := range m.VMs {
			d.record(ctx, vm, func(r *VMRecord) {
				r.Failed, r.LastError = now, out.Error
				r.Failures++
				r.HoldUntil = now.Add(hold(time.Duration(d.f.FailureHold), r.Failures))
			})
		}
		d.log.Error("move_failed", "move", m.ID, "from", m.From, "to", m.To, "err", out.Error)
	}
	if err := d.publish(ctx, protocol.OutcomeSubject(p.ID, m.ID), out, m.ID+"/"+out.State); err != nil {
		d.log.Error("move_outcome_not_published", "move", m.ID, "state", out.State, "err", err)
	}
}

// moveBack migrates the VMs of a failed chunk back, newest first, each
// within MigrateTimeout but not cut short by ctx's end, and says how each
// went.
func (d *daemon) moveBack(ctx context.Context, moved []string, m protocol.PlanMove) []string {
	var msgs []string
	back := context.WithoutCancel(ctx)
	for i := len(moved) - 1; i >= 0; i-- {
		vm := moved[i]
		if _, err := d.migrate(back, vm, m.To, m.From); err != nil {
			msgs = append(msgs, fmt.Sprintf("%s could not be moved back and stays on %s: %v", vm, m.To, err))
			continue
		}
		msgs = append(msgs, fmt.Sprintf("%s moved back to %s", vm, m.From))
		d.record(ctx, vm, func(r *VMRecord) { r.Moved, r.To = time.Now().UTC(), m.From })
	}
	return msgs
}

// unconfirmedNote says where a move whose VM may have completed its
// migration left each of its VMs.
func unconfirmedNote(vm string, moved []string, m protocol.PlanMove) string {
	note := fmt.Sprintf("%s may be on %s: recorded there and held, nothing moved back", vm, m.To)
	if len(moved) > 0 {
		note += fmt.Sprintf("; %s stay on %s", strings.Join(moved, ", "), m.To)
	}
	if left := m.VMs[len(moved)+1:]; len(left) > 0 {
		note += fmt.Sprintf("; %s stay on %s", strings.Join(left, ", "), m.From)
	}
	return note
}

// migrate runs one migration within MigrateTimeout, with an in-flight
// record around it: written before (and the migration refused when it
// cannot be), cleared after, so that a scheduler taking over while this
// one is cut off does not plan the VM while it may still migrate.
func (d *daemon) migrate(ctx context.Context, vm, from, to string) (executor.Result, error) {
	settle := func(r *VMRecord) { r.InFlight, r.InFlightTo, r.InFlightBy = time.Time{}, "", "" }
	if err := d.record(ctx, vm, func(r *VMRecord) { r.InFlight, r.InFlightTo, r.InFlightBy = time.Now().UTC(), to, d.cfg.Name }); err != nil {
		d.record(ctx, vm, settle)
		return executor.Result{}, fmt.Errorf("not started: the in-flight record could not be written: %w", err)
	}
	defer d.record(ctx, vm, settle)
	mctx, cancel := context.WithTimeout(ctx, time.Duration(d.f.MigrateTimeout))
	defer cancel()
	// A nil error means the VM moved, even when the context ended as it
	// did: the executor knows, the context does not.
	res, err := d.cfg.Executor.Migrate(mctx, vm, from, to)
	switch {
	case err == nil:
	case errors.Is(context.Cause(ctx), lease.ErrNotHeld):
		err = fmt.Errorf("stopped as the lease was lost: %w", err)
	case errors.Is(err, context.DeadlineExceeded):
		err = fmt.Errorf("no answer within %v: %w", time.Duration(d.f.MigrateTimeout), err)
	}
	return res, err
}

// record updates vm's record on a context of its own; a record that
// cannot be written is kept in memory and logged, and the next leader may
// then plan the VM sooner than it should.
func (d *daemon) record(ctx context.Context, vm string, change func(*VMRecord)) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	r := d.recs.get(vm)
	change(&r)
	err := d.recs.put(ctx, r)
	if err != nil {
		d.log.Error("vm_record_failed", "vm", vm, "err", err)
	}
	return err
}

func hold(base time.Duration, failures int) time.Duration {
	h := base
	for i := 1; i < failures && h < maxHold; i++ {
		h *= 2
	}
	return min(h, maxHold)
}
