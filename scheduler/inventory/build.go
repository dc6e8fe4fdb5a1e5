package inventory

import (
	"cmp"
	"slices"
	"time"

	"github.com/guestdiag/guestdiag/scheduler/planner"
)

const mb = 1 << 20

// Policy is a host's declared bands: CPU and Mem in percent of the host's
// capacity, VMs a count; a zero bound is unset.
type Policy struct {
	CPU, Mem, VMs planner.Band
	Empty         bool
}

// Declared is what the configuration adds to the samples.
type Declared struct {
	Default Policy
	// Hosts holds each host's policy where it differs from Default,
	// already merged with it.
	Hosts map[string]Policy
	// Chunks maps a VM to its chunk: declared ones, then derived ones.
	Chunks map[string]string
	Groups []planner.Group
}

// Build returns the planner's inventory at now. moved gives each VM's last
// migration time, which the planner's cool-down needs.
//
// A host's CPU capacity is its CPU count; Other is the host's busy CPU
// minus what its VMs used, never below zero. Its memory for VMs is its
// total less what the host itself holds (used memory not resident in a
// VM). A VM's memory is its configured size (-m), or its resident memory
// when the command line does not say.
func (f *Fleet) Build(now time.Time, d Declared, moved map[string]time.Time) planner.Inventory {
	f.mu.Lock()
	defer f.mu.Unlock()
	inv := planner.Inventory{Hosts: make([]planner.Host, 0, len(f.hosts)), VMs: make([]planner.VM, 0, len(f.vms))}
	var scratch []float64
	for name, h := range f.hosts {
		u := h.last
		cpus := float64(u.CPU.Count)
		busy := u.CPU.UsedPct / 100 * cpus
		var vmCPU float64
		var rss uint64
		for _, x := range u.VMs {
			vmCPU += x.CPUPct / 100
			rss += x.RSSBytes
		}
		used := u.Memory.TotalBytes - min(u.Memory.AvailableBytes, u.Memory.TotalBytes)
		own := used - min(rss, used)
		memMB := float64(u.Memory.TotalBytes-own) / mb
		p, ok := d.Hosts[name]
		if !ok {
			p = d.Default
		}
		inv.Hosts = append(inv.Hosts, planner.Host{
			Name: name, CPU: cpus, Mem: memMB, Other: max(0, busy-vmCPU),
			Policy: planner.Policy{
				CPU:   scale(p.CPU, cpus),
				Mem:   scale(p.Mem, memMB),
				VMs:   p.VMs,
				Empty: p.Empty,
			},
			Draining: f.drain[name],
			Down:     down(h, now),
		})
	}
	// The planner is deterministic for a given order; maps are not. Hosts
	// go by name and each host's VMs as its sample lists them, which
	// spares sorting 200,000 VMs.
	slices.SortFunc(inv.Hosts, func(a, b planner.Host) int { return cmp.Compare(a.Name, b.Name) })
	for _, ph := range inv.Hosts {
		h := f.hosts[ph.Name]
		for _, x := range h.last.VMs {
			v := f.vms[x.VM]
			// A VM listed by two hosts (it is migrating) is where the
			// newer sample says.
			if v == nil || v.host != ph.Name || !v.at.Equal(h.at) {
				continue
			}
			m := v.usage.MemoryBytes
			if m == 0 {
				m = v.usage.RSSBytes
			}
			inv.VMs = append(inv.VMs, planner.VM{
				Name: x.VM, Host: ph.Name, CPU: f.demandOf(v, now, &scratch), Mem: float64(m) / mb,
				Chunk: d.Chunks[x.VM], Moved: moved[x.VM],
			})
		}
	}
	f.prune(now)
	inv.Groups = d.Groups
	return inv
}

// prune forgets, once a window, VMs no host has listed for a window: they
// stopped, or went to a host not heard from.
func (f *Fleet) prune(now time.Time) {
	if now.Sub(f.pruned) < f.demand.Window {
		return
	}
	f.pruned = now
	for name, v := range f.vms {
		if h := f.hosts[v.host]; now.Sub(v.at) > f.demand.Window && (h == nil || !h.at.Equal(v.at)) {
			delete(f.vms, name)
		}
	}
}

func scale(b planner.Band, capacity float64) planner.Band {
	return planner.Band{Low: b.Low / 100 * capacity, High: b.High / 100 * capacity}
}
