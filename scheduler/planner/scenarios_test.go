package planner

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

// placement applies a plan and returns host → sorted VM names.
func placement(inv Inventory, p Plan) map[string][]string {
	where := map[string]string{}
	for _, v := range inv.VMs {
		where[v.Name] = v.Host
	}
	for _, m := range p.Moves {
		for _, v := range m.VMs {
			where[v] = m.To
		}
	}
	out := map[string][]string{}
	for _, h := range inv.Hosts {
		out[h.Name] = nil
	}
	for v, h := range where {
		out[h] = append(out[h], v)
	}
	for h := range out {
		slices.Sort(out[h])
	}
	return out
}

func samePlacement(t *testing.T, got, want map[string][]string) {
	t.Helper()
	for _, h := range slices.Sorted(maps.Keys(want)) {
		if !slices.Equal(got[h], want[h]) {
			t.Errorf("host %s: got %v, want %v", h, got[h], want[h])
		}
	}
}

func options() Options {
	o := DefaultOptions(time.Unix(1e9, 0))
	o.MaxMoves, o.MaxPerHost, o.MinGain = 0, 0, 0
	return o
}

// The chunk-migration experiment of XenGuard (Mevåg 2007), as
// ../shared/SCENARIOS.md tells it: node0's control domain is busy, both
// chunks must leave it whole; chunk 1 fits node3 at the first pass, chunk 2
// only node1, once the low threshold has been raised to 0.4.
func TestXenGuardChunksSplitAcrossTargetsWithEscalation(t *testing.T) {
	xg := func(name string, cpu, free float64, down bool) Host {
		return Host{Name: name, CPU: 1, Mem: free, Other: cpu, Policy: SharePolicy(1, 0.1, 0.7), Down: down}
	}
	inv := Inventory{Hosts: []Host{
		xg("node0", 0.946, 267+192+224, false), // its VMs' memory counts against it
		xg("node1", 0.306, 265, false),
		xg("node2", 0, 0, true),
		xg("node3", 0.004, 316, false),
	}}
	for _, v := range []string{"h1", "h2", "h3"} {
		inv.VMs = append(inv.VMs, VM{Name: v, Host: "node0", Mem: 64, Chunk: "lan21"})
	}
	for _, v := range []string{"home", "fly", "away", "north", "east", "south", "west"} {
		inv.VMs = append(inv.VMs, VM{Name: v, Host: "node0", Mem: 32, Chunk: "lan11+lan12"})
	}
	p := Make(inv, options())
	samePlacement(t, placement(inv, p), map[string][]string{
		"node0": nil,
		"node1": {"away", "east", "fly", "home", "north", "south", "west"},
		"node3": {"h1", "h2", "h3"},
	})
	if len(p.Moves) != 2 {
		t.Fatalf("got %d moves, want one per chunk: %+v", len(p.Moves), p.Moves)
	}
	if !strings.Contains(p.Moves[1].Reason, "raised to 0.40") {
		t.Errorf("chunk 2's move says %q, want the escalation to 0.40 named", p.Moves[1].Reason)
	}
	if got := 316 - p.Moves[0].ToMem; got != 124 {
		t.Errorf("node3 left with %.0f MB free after chunk 1, want 124", got)
	}
}

func vichos(names ...string) []Host {
	var hs []Host
	for _, n := range names {
		hs = append(hs, Host{Name: n, CPU: 4, Mem: 4096})
	}
	return hs
}

// The four per-host-policy scenarios of Vichos (Edinburgh 2011).
func TestVichosPerHostPolicies(t *testing.T) {
	t.Run("CPU balancing spreads four busy VMs one per host", func(t *testing.T) {
		inv := Inventory{Hosts: vichos("hp1", "hp2", "hp3", "hp4")}
		for i := range inv.Hosts {
			inv.Hosts[i].Policy = Policy{CPU: Band{Low: 0.5, High: 1.5}}
		}
		for _, v := range []string{"okvm1", "okvm2", "okvm3", "okvm4"} {
			inv.VMs = append(inv.VMs, VM{Name: v, Host: "hp1", CPU: 1, Mem: 512})
		}
		got := placement(inv, Make(inv, options()))
		for h, vms := range got {
			if len(vms) != 1 {
				t.Errorf("host %s has %v, want one VM per host", h, vms)
			}
		}
	})
	t.Run("memory balancing leaves 512 MB on each host", func(t *testing.T) {
		inv := Inventory{Hosts: vichos("hp1", "hp2", "hp3", "hp4")}
		for i := range inv.Hosts {
			inv.Hosts[i].Policy = Policy{Mem: Band{Low: 512, High: 768}}
		}
		for i, v := range []string{"okvm1", "okvm2", "okvm3", "okvm4"} {
			inv.VMs = append(inv.VMs, VM{Name: v, Host: []string{"hp2", "hp2", "hp3", "hp3"}[i], Mem: 512})
		}
		got := placement(inv, Make(inv, options()))
		for h, vms := range got {
			if len(vms) != 1 {
				t.Errorf("host %s has %v, want one 512 MB VM per host", h, vms)
			}
		}
	})
	t.Run("evacuate for shutdown leaves hp1 empty and three VMs elsewhere", func(t *testing.T) {
		inv := Inventory{Hosts: vichos("hp1", "hp2", "hp3", "hp4")}
		inv.Hosts[0].Policy = Policy{Empty: true}
		for i := 1; i < 4; i++ {
			inv.Hosts[i].Policy = Policy{VMs: Band{Low: 3, High: 3}}
		}
		start := map[string]int{"hp1": 3, "hp2": 2, "hp3": 2, "hp4": 2}
		n := 0
		for _, h := range []string{"hp1", "hp2", "hp3", "hp4"} {
			for range start[h] {
				n++
				inv.VMs = append(inv.VMs, VM{Name: "vm" + string(rune('a'+n)), Host: h, Mem: 256})
			}
		}
		got := placement(inv, Make(inv, options()))
		want := map[string]int{"hp1": 0, "hp2": 3, "hp3": 3, "hp4": 3}
		for h, w := range want {
			if len(got[h]) != w {
				t.Errorf("host %s has %d VMs %v, want %d", h, len(got[h]), got[h], w)
			}
		}
	})
	t.Run("mixed goals put the busy VMs on hp2 and the large ones on hp3", func(t *testing.T) {
		inv := Inventory{Hosts: vichos("hp1", "hp2", "hp3", "hp4")}
		inv.Hosts[0].Policy = Policy{Empty: true}
		inv.Hosts[3].Policy = Policy{Empty: true}
		inv.Hosts[1].Policy = Policy{CPU: Band{Low: 1.5}, Mem: Band{High: 1024}}
		inv.Hosts[2].Policy = Policy{Mem: Band{Low: 2048}, CPU: Band{High: 0.5}}
		inv.VMs = []VM{
			{Name: "okvm1", Host: "hp1", CPU: 1, Mem: 512},
			{Name: "okvm3", Host: "hp1", Mem: 1536},
			{Name: "okvm2", Host: "hp4", CPU: 1, Mem: 512},
			{Name: "okvm4", Host: "hp4", Mem: 1536},
		}
		samePlacement(t, placement(inv, Make(inv, options())), map[string][]string{
			"hp1": nil, "hp2": {"okvm1", "okvm2"}, "hp3": {"okvm3", "okvm4"}, "hp4": nil,
		})
	})
	t.Run("a global view unsticks the three-host exchange that stalls peer to peer", func(t *testing.T) {
		// Two satisfied hosts and one overloaded: no satisfied host wants
		// a VM, yet a placement that satisfies all three exists.
		inv := Inventory{Hosts: vichos("hp1", "hp2", "hp3")}
		for i := range inv.Hosts {
			inv.Hosts[i].Policy = Policy{CPU: Band{Low: 0.5, High: 1.5}}
		}
		inv.VMs = []VM{
			{Name: "a", Host: "hp1", CPU: 1}, {Name: "b", Host: "hp1", CPU: 1},
			{Name: "c", Host: "hp2", CPU: 0.6}, {Name: "d", Host: "hp3", CPU: 0.6},
		}
		p := Make(inv, options())
		if len(p.Unresolved) > 0 || len(p.Moves) != 2 {
			t.Fatalf("got moves %+v and problems %+v, want two moves that resolve hp1", p.Moves, p.Unresolved)
		}
		for h, vms := range placement(inv, p) {
			load := 0.0
			for _, v := range inv.VMs {
				if slices.Contains(vms, v.Name) {
					load += v.CPU
				}
			}
			if load > 1.5 || load < 0.5 {
				t.Errorf("host %s ends with load %.1f (%v), want within 0.5–1.5", h, load, vms)
			}
		}
	})
}
