package collector

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
)

func applyJSON(t *testing.T, c *Collector, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.applyPlanMessage(b); err != nil {
		t.Fatal(err)
	}
}

func TestAnOutcomeReadBeforeItsPlanIsKeptUntilThePlanArrives(t *testing.T) {
	c := &Collector{cfg: Config{}.withDefaults()}
	c.plans.plans = make(map[string]*PlanRecord)
	ts := time.Unix(1000, 0).UTC()
	applyJSON(t, c, protocol.MoveOutcome{V: 1, Kind: protocol.PlanKindMove, Plan: "p1", Move: "p1/1", State: protocol.MoveDone, TS: ts.Add(2 * time.Second)})
	applyJSON(t, c, protocol.MoveOutcome{V: 1, Kind: protocol.PlanKindMove, Plan: "p1", Move: "p1/1", State: protocol.MoveStarted, TS: ts.Add(time.Second)})
	applyJSON(t, c, protocol.MoveOutcome{V: 1, Kind: protocol.PlanKindMove, Plan: "p2", Move: "p2/1", State: protocol.MoveStarted, TS: ts})
	applyJSON(t, c, protocol.Plan{V: 1, Kind: protocol.PlanKindPlan, ID: "p1", TS: ts, Moves: []protocol.PlanMove{{ID: "p1/1"}}})

	recs := c.planRecords()
	if len(recs) != 1 {
		t.Fatalf("plans: got %d, want 1", len(recs))
	}
	if got := recs[0].Outcomes["p1/1"].State; got != protocol.MoveDone {
		t.Errorf("p1/1: got %q, want the newest outcome, done", got)
	}
	if got := len(c.plans.pending); got != 1 || c.plans.pending[0].Plan != "p2" {
		t.Errorf("pending: got %+v, want only p2's outcome", c.plans.pending)
	}
}

func TestOutcomesOfPlansNeverSeenAreBounded(t *testing.T) {
	c := &Collector{cfg: Config{}.withDefaults()}
	c.plans.plans = make(map[string]*PlanRecord)
	for i := range maxPendingOutcomes + 10 {
		applyJSON(t, c, protocol.MoveOutcome{V: 1, Kind: protocol.PlanKindMove, Plan: fmt.Sprintf("gone%d", i), Move: "m", State: protocol.MoveDone})
	}
	if got := len(c.plans.pending); got != maxPendingOutcomes {
		t.Fatalf("pending: got %d, want %d", got, maxPendingOutcomes)
	}
	if got, want := c.plans.pending[0].Plan, "gone10"; got != want {
		t.Errorf("oldest pending: got %s, want %s (the oldest go first)", got, want)
	}
}
