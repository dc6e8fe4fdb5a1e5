package collector_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/protocol"
)

// A plan of many moves in execute mode makes two outcomes per move; the
// stream keeps a bounded number of messages per subject, so the plan and
// its outcomes must not share one or the outcomes push the plan out.
func TestACollectorStartedAfterAPlanOf200MovesShowsThePlanAndEveryOutcome(t *testing.T) {
	e := newEnv(t)
	first := e.startCollector(t)
	waitPlacement(t, first.c, "the stream set up", func(collector.Placement) bool {
		_, err := e.js.Stream(context.Background(), "GUESTDIAG")
		return err == nil
	})
	r := e.relay(t, "s")
	const id, n = "20260102T030405.000Z-s1", 200
	plan := protocol.Plan{V: 1, Kind: protocol.PlanKindPlan, ID: id, TS: t0, Scheduler: "s1", Mode: protocol.ModeExecute}
	for i := 1; i <= n; i++ {
		plan.Moves = append(plan.Moves, protocol.PlanMove{ID: fmt.Sprintf("%s/%d", id, i), VMs: []string{fmt.Sprintf("vm%d", i)}, From: "h1", To: "h2", Reason: "h1 overloaded"})
	}
	r.publish(protocol.PlanSubject, plan)
	for i, m := range plan.Moves {
		o := protocol.MoveOutcome{V: 1, Kind: protocol.PlanKindMove, Plan: id, Move: m.ID, VMs: m.VMs, From: "h1", To: "h2",
			State: protocol.MoveStarted, TS: t0.Add(time.Duration(2*i+1) * time.Second), Scheduler: "s1", Executor: "qmp"}
		r.publish(protocol.OutcomeSubject(id, m.ID), o)
		o.State, o.TS, o.DurationMS = protocol.MoveDone, o.TS.Add(time.Second), int64(1000+i)
		r.publish(protocol.OutcomeSubject(id, m.ID), o)
	}

	later := e.startCollector(t)
	for name, c := range map[string]*collector.Collector{"running": first.c, "started later": later.c} {
		p := waitPlacement(t, c, "the plan with every outcome done", func(p collector.Placement) bool {
			if len(p.Plans) != 1 || len(p.Plans[0].Outcomes) != n {
				return false
			}
			for _, o := range p.Plans[0].Outcomes {
				if o.State != protocol.MoveDone {
					return false
				}
			}
			return true
		})
		rec := p.Plans[0]
		if got := len(rec.Plan.Moves); got != n {
			t.Errorf("%s collector: moves: got %d, want %d", name, got, n)
		}
		for i, m := range plan.Moves {
			if got, want := rec.Outcomes[m.ID].DurationMS, int64(1000+i); got != want {
				t.Errorf("%s collector: %s duration: got %d ms, want %d ms", name, m.ID, got, want)
			}
		}
	}
}
