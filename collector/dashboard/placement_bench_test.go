package dashboard

import (
	"fmt"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/protocol"
)

// bigPlacement is 1,000 hosts of 20 VMs, one in ten with an overloaded
// hint quoting five samples, and 20 plans of 50 moves each, all done.
func bigPlacement() *fakeSource {
	f := newFakeSource()
	for h := range 1000 {
		host := fmt.Sprintf("kvm-%04d.dc1.example.net", h)
		hp := collector.HostPlacement{Host: host, VMs: 20, Usage: &protocol.HostUsage{V: 1, Host: host, TS: t0,
			CPU: protocol.HostCPU{Count: 32, UsedPct: float64(h % 100)}, Memory: protocol.HostMemory{TotalBytes: 256 << 30, UsedPct: 50}}}
		if h%10 == 0 {
			samples := make([]protocol.HostSample, 5)
			for i := range samples {
				samples[i] = protocol.HostSample{TS: t0.Add(time.Duration(i-5) * 10 * time.Second), CPUPct: 90, MemPct: 50}
			}
			hp.Hints = []protocol.Hint{{V: 1, Host: host, Kind: protocol.HintOverloaded, State: protocol.HintRaised, Resource: "cpu", Since: t0,
				Summary: "CPU above 80.0 % for 5 of the last 5 samples", Evidence: protocol.HintEvidence{Samples: samples, Hits: 5, Window: 5, ThresholdPct: 80}}}
		}
		f.place.Hosts = append(f.place.Hosts, hp)
	}
	for p := range 20 {
		rec := collector.PlanRecord{Plan: protocol.Plan{V: 1, Kind: protocol.PlanKindPlan, ID: fmt.Sprintf("p%d", p), TS: t0, Scheduler: "s1", Mode: protocol.ModeExecute},
			Outcomes: map[string]protocol.MoveOutcome{}}
		for m := range 50 {
			id := fmt.Sprintf("p%d/%d", p, m+1)
			rec.Plan.Moves = append(rec.Plan.Moves, protocol.PlanMove{ID: id, VMs: []string{fmt.Sprintf("vm-%d-%d", p, m)},
				From: f.place.Hosts[m*10].Host, To: f.place.Hosts[m*10+1].Host, Reason: "cpu over 80 %", FromCPUPct: 70, ToCPUPct: 40})
			rec.Outcomes[id] = protocol.MoveOutcome{V: 1, Kind: protocol.PlanKindMove, Move: id, State: protocol.MoveDone, TS: t0, DurationMS: 3000, DowntimeMS: 40}
		}
		f.place.Plans = append(f.place.Plans, rec)
	}
	return f
}

// BenchmarkPlacementPage1k renders the placement page of 1,000 hosts and
// 20 plans of 50 moves: go test -run XXX -bench PlacementPage1k -benchmem
// ./collector/dashboard.
func BenchmarkPlacementPage1k(b *testing.B) {
	benchPage(b, openHandler(b, bigPlacement()), "/placement")
}
