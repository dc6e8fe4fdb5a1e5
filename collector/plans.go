package collector

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/protocol"
)

// DefaultPlans is how many of the newest plans every collector keeps.
const DefaultPlans = 50

// maxPendingOutcomes bounds the outcomes kept for plans not seen yet, the
// oldest going first: enough for the two outcomes of each move of a few
// large plans.
const maxPendingOutcomes = 2048

// planState is the newest plans and their moves' outcomes, as read from
// guestdiag.plan and guestdiag.plan.> by this collector's own ordered
// consumer.
type planState struct {
	mu sync.RWMutex
	// order holds plan ids, oldest first; at most Config.Plans.
	order []string
	plans map[string]*PlanRecord
	// pending holds outcomes whose plan has not arrived, oldest first;
	// at most maxPendingOutcomes.
	pending []protocol.MoveOutcome
}

// followPlans reads every plan (protocol.PlanSubject) and move outcome
// (protocol.OutcomeSubjects) from the start of the stream, then each new
// one, until ctx is cancelled. Every collector needs all of them, so it
// reads through an ordered consumer of its own rather than the shared
// durable, which hands each message to one collector only; the ordered
// consumer keeps no state on the server. The stream keeps a bounded number
// of plans and each move's outcomes have a subject of their own, which
// MaxAge bounds, so reading back from the start costs that much.
func (c *Collector) followPlans(ctx context.Context, stream jetstream.Stream) error {
	c.plans.mu.Lock()
	c.plans.order, c.plans.plans, c.plans.pending = nil, make(map[string]*PlanRecord), nil
	c.plans.mu.Unlock()
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{protocol.PlanSubject, protocol.OutcomeSubjects},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("plan consumer: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("plan consumer: %w", err)
	}
	defer it.Stop()
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("plan consumer: %w", err)
		}
		if err := c.applyPlanMessage(msg.Data()); err != nil {
			c.poisonLog.warn(c.log, "plan_message_skipped", "subject", msg.Subject(), "err", err)
		}
	}
}

// applyPlanMessage keeps a plan, or the outcome of one of its moves.
func (c *Collector) applyPlanMessage(data []byte) error {
	var head struct {
		V    int    `json:"v"`
		Kind string `json:"kind"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return fmt.Errorf("plan message: %w", err)
	}
	if head.V != protocol.Version {
		return fmt.Errorf("plan message: %w: v %d", protocol.ErrUnsupportedVersion, head.V)
	}
	switch head.Kind {
	case protocol.PlanKindPlan:
		var p protocol.Plan
		if err := json.Unmarshal(data, &p); err != nil {
			return fmt.Errorf("plan: %w", err)
		}
		if p.ID == "" {
			return fmt.Errorf("plan without an id")
		}
		c.keepPlan(p)
	case protocol.PlanKindMove:
		var o protocol.MoveOutcome
		if err := json.Unmarshal(data, &o); err != nil {
			return fmt.Errorf("move outcome: %w", err)
		}
		c.keepOutcome(o)
	default:
		return fmt.Errorf("plan message of kind %q", head.Kind)
	}
	return nil
}

func (c *Collector) keepPlan(p protocol.Plan) {
	c.plans.mu.Lock()
	defer c.plans.mu.Unlock()
	if r, ok := c.plans.plans[p.ID]; ok {
		r.Plan = p
		return
	}
	r := &PlanRecord{Plan: p, Outcomes: map[string]protocol.MoveOutcome{}}
	c.plans.plans[p.ID] = r
	c.plans.order = append(c.plans.order, p.ID)
	for len(c.plans.order) > c.cfg.Plans {
		delete(c.plans.plans, c.plans.order[0])
		c.plans.order = c.plans.order[1:]
	}
	// Config.Plans is at least 1, so p itself is never trimmed.
	kept := c.plans.pending[:0]
	for _, o := range c.plans.pending {
		if o.Plan == p.ID {
			newestOutcome(r, o)
			continue
		}
		kept = append(kept, o)
	}
	clear(c.plans.pending[len(kept):])
	c.plans.pending = kept
}

// keepOutcome records o as its move's newest outcome unless a later one is
// there already. In a cluster an outcome can be read before its plan, so
// one of a plan not seen is kept pending, a bounded number of them; one
// whose plan never comes (older than the newest Config.Plans) is pushed
// out by newer ones.
func (c *Collector) keepOutcome(o protocol.MoveOutcome) {
	c.plans.mu.Lock()
	defer c.plans.mu.Unlock()
	r, ok := c.plans.plans[o.Plan]
	if !ok {
		if len(c.plans.pending) >= maxPendingOutcomes {
			copy(c.plans.pending, c.plans.pending[1:])
			c.plans.pending = c.plans.pending[:len(c.plans.pending)-1]
		}
		c.plans.pending = append(c.plans.pending, o)
		return
	}
	newestOutcome(r, o)
}

func newestOutcome(r *PlanRecord, o protocol.MoveOutcome) {
	if cur, ok := r.Outcomes[o.Move]; ok && cur.TS.After(o.TS) {
		return
	}
	r.Outcomes[o.Move] = o
}

// planRecords returns copies of the kept plans, newest first.
func (c *Collector) planRecords() []PlanRecord {
	c.plans.mu.RLock()
	defer c.plans.mu.RUnlock()
	out := make([]PlanRecord, 0, len(c.plans.order))
	for i := len(c.plans.order) - 1; i >= 0; i-- {
		r := c.plans.plans[c.plans.order[i]]
		outcomes := make(map[string]protocol.MoveOutcome, len(r.Outcomes))
		for k, v := range r.Outcomes {
			outcomes[k] = v
		}
		out = append(out, PlanRecord{Plan: r.Plan, Outcomes: outcomes})
	}
	return out
}
