package daemon

import (
	"fmt"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
	"github.com/guestdiag/guestdiag/scheduler/inventory"
)

// BenchmarkCycle measures one cycle's planning work (inventory from the
// newest samples, the planner, the plan message) for hosts with 20 VMs
// each, one host in ten over its CPU band. NATS is left out: it is what
// the samples cost to receive, not to plan over.
func BenchmarkCycle(b *testing.B) {
	for _, tc := range []struct {
		hosts int
		part  string
	}{{1000, "cycle"}, {10000, "cycle"}, {10000, "inventory only"}} {
		hosts := tc.hosts
		b.Run(fmt.Sprintf("%d hosts, %s", hosts, tc.part), func(b *testing.B) {
			now := time.Now()
			fleet := inventory.NewFleet(inventory.Demand{})
			for h := range hosts {
				u := protocol.HostUsage{V: 1, Host: fmt.Sprintf("h%05d", h), IntervalS: 10,
					CPU:    protocol.HostCPU{Count: 32, UsedPct: 40},
					Memory: protocol.HostMemory{TotalBytes: 256 * gib, AvailableBytes: 150 * gib}}
				if h%10 == 0 {
					u.CPU.UsedPct = 85
				}
				for v := range 20 {
					u.VMs = append(u.VMs, protocol.VMUsage{VM: fmt.Sprintf("h%05d-v%02d", h, v),
						CPUPct: u.CPU.UsedPct / 100 * 32 * 100 / 21, RSSBytes: 4 * gib, MemoryBytes: 4 * gib})
				}
				// Thirty samples: the whole demand window.
				for i := range 30 {
					fleet.Observe(u, now.Add(time.Duration(i-29)*10*time.Second))
				}
			}
			f := Defaults()
			b.ResetTimer()
			for b.Loop() {
				if tc.part != "cycle" {
					fleet.Build(now, f.Declared(nil), nil)
					continue
				}
				inv, p := planCycle(fleet, f, nil, nil, now)
				_ = toProtocol(inv, p, "bench", "bench", protocol.ModeAdvisory, now)
			}
		})
	}
}
