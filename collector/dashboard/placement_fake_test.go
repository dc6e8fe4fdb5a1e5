package dashboard

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/protocol"
)

// markCall is one Drain or Undrain the fake source was asked for.
type markCall struct {
	Drain            bool
	Host, By, Reason string
}

// Placement, Drain and Undrain make the fake a Placer, standing in for the
// collector's placement view (built in package collector) in unit tests.
func (f *fakeSource) Placement() collector.Placement {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := collector.Placement{Hosts: slices.Clone(f.place.Hosts), Plans: slices.Clone(f.place.Plans)}
	for i := range p.Hosts {
		if d := p.Hosts[i].Drain; d != nil {
			c := *d
			p.Hosts[i].Drain = &c
		}
	}
	return p
}

func (f *fakeSource) Drain(_ context.Context, host, by, reason string) error {
	return f.mark(markCall{Drain: true, Host: host, By: by, Reason: reason})
}

func (f *fakeSource) Undrain(_ context.Context, host, by string) error {
	return f.mark(markCall{Host: host, By: by})
}

func (f *fakeSource) mark(c markCall) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := slices.IndexFunc(f.place.Hosts, func(h collector.HostPlacement) bool { return h.Host == c.Host })
	if i < 0 {
		return fmt.Errorf("no host %q", c.Host)
	}
	f.marks = append(f.marks, c)
	if c.Drain {
		f.place.Hosts[i].Drain = &collector.Drain{By: c.By, Reason: c.Reason, Since: time.Now()}
	} else {
		f.place.Hosts[i].Drain = nil
	}
	return nil
}

// calls returns the Drain and Undrain calls so far.
func (f *fakeSource) calls() []markCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.marks)
}

// hostileHost is a host name as a hostile relay might report it; it sorts
// last.
const hostileHost = "zz-" + imgPayload + "\x1b[31m"

// placementFixture: kvm-a overloaded on CPU for 4 of 5 samples; kvm-b
// drained by a hostile operator name with a hostile reason and showing
// contention from the hostile guests; kvm-c never sampled but underloaded
// (a hint without Since); hostileHost never sampled. One plan in execute
// mode with a done chunk move, a failed move whose error is hostile, and a
// started one; an older advisory plan.
func placementFixture() collector.Placement {
	samples := make([]protocol.HostSample, 5)
	for i := range samples {
		samples[i] = protocol.HostSample{TS: t0.Add(time.Duration(i-5) * 10 * time.Second), CPUPct: []float64{62, 91, 93, 95, 97}[i], MemPct: 40}
	}
	usage := func(host string, cpu, mem float64) *protocol.HostUsage {
		return &protocol.HostUsage{V: 1, Host: host, TS: t0.Add(-10 * time.Second), IntervalS: 10,
			CPU: protocol.HostCPU{Count: 16, UsedPct: cpu}, Memory: protocol.HostMemory{TotalBytes: 64 << 30, UsedPct: mem}}
	}
	return collector.Placement{
		Hosts: []collector.HostPlacement{
			{Host: "kvm-b", Usage: usage("kvm-b", 55, 70), VMs: 3,
				Drain: &collector.Drain{By: imgPayload, Reason: pwnedScript, Since: t0.Add(-time.Hour)},
				Hints: []protocol.Hint{
					{V: 1, Host: "kvm-b", Kind: protocol.HintContention, State: protocol.HintRaised, Since: t0.Add(-2 * time.Minute),
						Summary: "steal on 2 guests " + pwnedImg, Evidence: protocol.HintEvidence{VMs: []protocol.HintVM{
							{VM: scriptName, Code: "res.steal_high"}, {VM: longName, Code: pwnedScript}}}},
					{V: 1, Host: "kvm-b", Kind: protocol.HintEvacuate, State: protocol.HintRaised, Since: t0.Add(-time.Hour),
						Summary: "drained for maintenance", Evidence: protocol.HintEvidence{By: imgPayload, Reason: pwnedScript}},
				}},
			{Host: "kvm-a", Usage: usage("kvm-a", 97, 40), VMs: 2,
				Hints: []protocol.Hint{{V: 1, Host: "kvm-a", Kind: protocol.HintOverloaded, State: protocol.HintRaised, Resource: "cpu",
					Since: t0.Add(-30 * time.Second), Summary: "CPU above 80.0 % for 4 of the last 5 samples",
					Evidence: protocol.HintEvidence{Samples: samples, Hits: 4, Window: 5, ThresholdPct: 80}}}},
			{Host: "kvm-c", Hints: []protocol.Hint{{V: 1, Host: "kvm-c", Kind: protocol.HintUnderloaded, State: protocol.HintRaised, Resource: "memory",
				TS: t0.Add(-time.Minute), Summary: "memory below 10.0 % for 5 of the last 5 samples",
				Evidence: protocol.HintEvidence{Hits: 5, Window: 5, ThresholdPct: 10}}}},
			{Host: hostileHost},
		},
		Plans: []collector.PlanRecord{
			{Plan: protocol.Plan{V: 1, Kind: protocol.PlanKindPlan, ID: "p2", TS: t0.Add(-20 * time.Second), Scheduler: "sched-1", Mode: protocol.ModeExecute,
				Moves: []protocol.PlanMove{
					{ID: "p2/1", VMs: []string{"web-1", "db-1"}, Chunk: "net-backend", From: "kvm-a", To: "kvm-c", Reason: "kvm-a cpu 97.0 % > 80.0 %",
						FromCPUPct: 61.5, ToCPUPct: 35.5, FromMemPct: 30, ToMemPct: 12.5},
					{ID: "p2/2", VMs: []string{scriptName}, From: "kvm-b", To: "kvm-c", Reason: "evacuate kvm-b " + imgPayload},
					{ID: "p2/3", VMs: []string{longName}, From: "kvm-b", To: "kvm-a", Reason: "evacuate kvm-b"},
				},
				Unresolved: []protocol.PlanProblem{{Host: "kvm-b", Reason: "no target for " + pwnedScript}}},
				Outcomes: map[string]protocol.MoveOutcome{
					"p2/1": {V: 1, Kind: protocol.PlanKindMove, Plan: "p2", Move: "p2/1", State: protocol.MoveDone, TS: t0.Add(-5 * time.Second),
						Executor: "qmp", DurationMS: 4210, DowntimeMS: 38},
					"p2/2": {V: 1, Kind: protocol.PlanKindMove, Plan: "p2", Move: "p2/2", State: protocol.MoveFailed, TS: t0.Add(-4 * time.Second),
						Executor: "qmp", Error: "migrate: " + pwnedImg},
					"p2/3": {V: 1, Kind: protocol.PlanKindMove, Plan: "p2", Move: "p2/3", State: protocol.MoveStarted, TS: t0.Add(-3 * time.Second), Executor: "qmp"},
				}},
			{Plan: protocol.Plan{V: 1, Kind: protocol.PlanKindPlan, ID: "p1", TS: t0.Add(-10 * time.Minute), Scheduler: "sched-1", Mode: protocol.ModeAdvisory,
				Moves: []protocol.PlanMove{{ID: "p1/1", VMs: []string{"web-1"}, From: "kvm-a", To: "kvm-b", Reason: "advised only"}}}},
		},
	}
}
