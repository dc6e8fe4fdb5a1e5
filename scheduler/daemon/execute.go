package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
	"github.com/guestdiag/guestdiag/scheduler/executor"
)

// maxHold bounds how long repeated failures keep a VM where it is.
const maxHold = 24 * time.Hour

// execute carries the plan's moves out one after another, checking before
// each that the lease is still ours.
func (d *daemon) execute(ctx context.Context, p protocol.Plan) {
	for _, m := range p.Moves {
		if err := d.lease.Check(ctx); err != nil {
			d.log.Warn("moves_stopped", "plan", p.ID, "move", m.ID, "err", err)
			return
		}
		if ctx.Err() != nil {
			return
		}
		d.move(ctx, p, m)
	}
}

// move migrates a move's VMs one by one. A chunk moves whole or not at
// all: when one of its VMs fails, those already moved are migrated back,
// newest first, so the chunk's private network is not left split across
// hosts; the outcome says what could not be moved back. Every VM of a
// failed move is then held (FailureHold, doubling with each failure in a
// row, at most a day) so the next cycle does not try it again.
func (d *daemon) move(ctx context.Context, p protocol.Plan, m protocol.PlanMove) {
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
	for _, vm := range m.VMs {
		res, err := d.migrate(ctx, vm, m.From, m.To)
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
		for i := len(moved) - 1; i >= 0; i-- {
			vm := moved[i]
			if _, err := d.migrate(ctx, vm, m.To, m.From); err != nil {
				msgs = append(msgs, fmt.Sprintf("%s could not be moved back and stays on %s: %v", vm, m.To, err))
				continue
			}
			msgs = append(msgs, fmt.Sprintf("%s moved back to %s", vm, m.From))
			d.record(ctx, vm, func(r *VMRecord) { r.Moved, r.To = time.Now().UTC(), m.From })
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

func (d *daemon) migrate(ctx context.Context, vm, from, to string) (executor.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(d.f.MigrateTimeout))
	defer cancel()
	res, err := d.cfg.Executor.Migrate(ctx, vm, from, to)
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("no answer within %v: %w", time.Duration(d.f.MigrateTimeout), err)
	}
	return res, err
}

// record updates vm's record; a record that cannot be written is logged,
// and the next leader may then plan the VM sooner than it should.
func (d *daemon) record(ctx context.Context, vm string, change func(*VMRecord)) {
	r := d.recs.get(vm)
	change(&r)
	if err := d.recs.put(ctx, r); err != nil {
		d.log.Error("vm_record_failed", "vm", vm, "err", err)
	}
}

func hold(base time.Duration, failures int) time.Duration {
	h := base
	for i := 1; i < failures && h < maxHold; i++ {
		h *= 2
	}
	return min(h, maxHold)
}
