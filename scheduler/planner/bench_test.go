package planner

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// benchFleet has 20 VMs per host, a twentieth of the hosts hot, a tenth
// nearly idle, chunks of four and anti-affinity pairs.
func benchFleet(hosts int) Inventory {
	r := rand.New(rand.NewPCG(1, 2))
	inv := Inventory{Hosts: make([]Host, hosts), VMs: make([]VM, 0, 20*hosts)}
	for i := range inv.Hosts {
		inv.Hosts[i] = Host{Name: fmt.Sprintf("host%05d", i), CPU: 64, Mem: 262144, Policy: SharePolicy(64, 0.2, 0.8)}
		load := 1.8 // cores per VM: 36 of 64
		switch {
		case i%20 == 0:
			load = 2.9 // 58 of 64: hot
		case i%10 == 1:
			load = 0.3
		}
		for j := range 20 {
			v := VM{Name: fmt.Sprintf("vm%05d-%02d", i, j), Host: inv.Hosts[i].Name, CPU: load * (0.5 + r.Float64()), Mem: 8192}
			if j < 4 {
				v.Chunk = fmt.Sprintf("net%05d", i)
			}
			inv.VMs = append(inv.VMs, v)
		}
		inv.Groups = append(inv.Groups, Group{Name: fmt.Sprintf("pair%05d", i), Anti: true, Hard: true,
			VMs: []string{inv.VMs[len(inv.VMs)-1].Name, inv.VMs[len(inv.VMs)-2].Name}})
	}
	return inv
}

func BenchmarkPlan(b *testing.B) {
	for _, hosts := range []int{1000, 10000} {
		inv := benchFleet(hosts)
		b.Run(fmt.Sprintf("hosts=%d/vms=%d", hosts, len(inv.VMs)), func(b *testing.B) {
			// A fleet this size plans more than the default ten moves a
			// cycle; hosts keep the default of two.
			opt := DefaultOptions(time.Unix(1e9, 0))
			opt.MaxMoves = hosts / 10
			opt.Consolidate = true
			var moves int
			for b.Loop() {
				moves = len(Make(inv, opt).Moves)
			}
			b.ReportMetric(float64(moves), "moves")
		})
	}
}
