package planner

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// randomFleet makes a fleet with hotspots, chunks, anti-affinity groups,
// draining and down hosts.
func randomFleet(r *rand.Rand, hosts, vms int) Inventory {
	var inv Inventory
	for i := range hosts {
		h := Host{Name: fmt.Sprintf("h%d", i), CPU: 8, Mem: 16384, Policy: SharePolicy(8, 0.2, 0.75)}
		switch r.IntN(20) {
		case 0:
			h.Draining = true
		case 1:
			h.Down = true
		}
		inv.Hosts = append(inv.Hosts, h)
	}
	for i := range vms {
		v := VM{Name: fmt.Sprintf("v%d", i), Host: inv.Hosts[r.IntN(hosts)].Name, CPU: r.Float64() * 2.5, Mem: float64(int(256) << r.IntN(4))}
		if r.IntN(5) == 0 {
			v.Chunk = fmt.Sprintf("net-%s", v.Host) // chunk members start together
		}
		inv.VMs = append(inv.VMs, v)
	}
	for g := range vms / 10 {
		grp := Group{Name: fmt.Sprintf("anti%d", g), Anti: true, Hard: true}
		for range 3 {
			grp.VMs = append(grp.VMs, inv.VMs[r.IntN(vms)].Name)
		}
		inv.Groups = append(inv.Groups, grp)
	}
	return inv
}

func apply(inv Inventory, p Plan, now time.Time) Inventory {
	out := inv
	out.VMs = append([]VM(nil), inv.VMs...)
	to := map[string]string{}
	for _, m := range p.Moves {
		for _, v := range m.VMs {
			to[v] = m.To
		}
	}
	for i, v := range out.VMs {
		if t, ok := to[v.Name]; ok {
			out.VMs[i].Host, out.VMs[i].Moved = t, now
		}
	}
	return out
}

func TestPlansKeepTheHardRules(t *testing.T) {
	for seed := range uint64(200) {
		r := rand.New(rand.NewPCG(seed, 7))
		inv := randomFleet(r, 5+r.IntN(20), 10+r.IntN(80))
		opt := DefaultOptions(time.Unix(1e9, 0))
		opt.Consolidate = seed%2 == 0
		p := Make(inv, opt)
		hosts := map[string]Host{}
		for _, h := range inv.Hosts {
			hosts[h.Name] = h
		}
		before := map[string]string{}
		for _, v := range inv.VMs {
			before[v.Name] = v.Host
		}
		after := apply(inv, p, opt.Now)
		cpu, mem := map[string]float64{}, map[string]float64{}
		chunkHost := map[string]map[string]bool{}
		for _, v := range after.VMs {
			cpu[v.Host] += v.CPU
			mem[v.Host] += v.Mem
			if v.Chunk != "" {
				if chunkHost[v.Chunk] == nil {
					chunkHost[v.Chunk] = map[string]bool{}
				}
				chunkHost[v.Chunk][v.Host] = true
			}
		}
		moved := 0
		for _, m := range p.Moves {
			moved += len(m.VMs)
			h := hosts[m.To]
			if h.Down || h.Draining {
				t.Errorf("seed %d: moved %v to %s, which is down or draining", seed, m.VMs, m.To)
			}
			if mem[m.To] > h.Mem {
				t.Errorf("seed %d: %s holds %.0f MB after the plan, more than its %.0f", seed, m.To, mem[m.To], h.Mem)
			}
			if cpu[m.To] > h.Policy.CPU.High {
				t.Errorf("seed %d: target %s ends at CPU %.2f, over its %.2f", seed, m.To, cpu[m.To], h.Policy.CPU.High)
			}
		}
		for c, hs := range chunkHost {
			if len(hs) > 1 {
				t.Errorf("seed %d: chunk %s split over %v", seed, c, hs)
			}
		}
		for _, g := range inv.Groups {
			seen := map[string]string{}
			for _, v := range after.VMs {
				for _, w := range g.VMs {
					if v.Name == w {
						if other, ok := seen[v.Host]; ok && other != v.Name && before[v.Name] != v.Host {
							t.Errorf("seed %d: %s moved beside %s, both in anti-affinity group %s", seed, v.Name, other, g.Name)
						}
						seen[v.Host] = v.Name
					}
				}
			}
		}
		if moved > opt.MaxMoves && !anyEmptied(inv) {
			t.Errorf("seed %d: %d migrations, over the budget of %d", seed, moved, opt.MaxMoves)
		}
	}
}

func anyEmptied(inv Inventory) bool {
	for _, h := range inv.Hosts {
		if h.Draining || h.Policy.Empty {
			return true
		}
	}
	return false
}

func TestStableLoadSettles(t *testing.T) {
	for seed := range uint64(100) {
		r := rand.New(rand.NewPCG(seed, 11))
		inv := randomFleet(r, 10, 60)
		now := time.Unix(1e9, 0)
		opt := DefaultOptions(now)
		opt.Consolidate = true
		// The load does not change; cycles come every cool-down, so no
		// VM is held back by it, and after a few the plan is empty.
		var last Plan
		for cycle := range 12 {
			opt.Now = now.Add(time.Duration(cycle) * opt.Cooldown)
			last = Make(inv, opt)
			inv = apply(inv, last, opt.Now)
		}
		if len(last.Moves) > 0 {
			t.Errorf("seed %d: still moving after 12 cycles on a stable load: %+v", seed, last.Moves)
		}
	}
}
