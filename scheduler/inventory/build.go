package inventory

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
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

// Build returns the planner's inventory at now, and the VMs it leaves out
// as problems of their hosts. moved gives each VM's last migration time,
// which the planner's cool-down needs.
//
// A host's CPU capacity is its CPU count; Other is the host's busy CPU
// minus what its VMs used, never below zero. Its memory for VMs is its
// total less what the host itself holds (used memory not resident in a
// VM). A VM's memory is its configured size (-m), or its resident memory
// when the command line does not say.
//
// VMs are known by name, and a name is one VM only while one live host
// lists it. Two live hosts listing a name in their newest samples may be
// one VM migrating or two distinct VMs: no sample tells which, and
// planning either as the other would move the wrong VM or let one flip
// between hosts. Such a VM is not planned this cycle: its CPU and memory
// stay counted on each host that lists it, and each of those hosts gets a
// problem naming the hosts.
func (f *Fleet) Build(now time.Time, d Declared, moved map[string]time.Time) (planner.Inventory, []planner.Problem) {
	f.mu.Lock()
	defer f.mu.Unlock()
	shared := f.shared(now)
	inv := planner.Inventory{Hosts: make([]planner.Host, 0, len(f.hosts)), VMs: make([]planner.VM, 0, len(f.vms))}
	var scratch []float64
	for name, h := range f.hosts {
		u := h.last
		cpus := float64(u.CPU.Count)
		busy := u.CPU.UsedPct / 100 * cpus
		var vmCPU, pinnedCPU float64
		var rss, pinned uint64
		for _, x := range u.VMs {
			vmCPU += x.CPUPct / 100
			rss += x.RSSBytes
			if shared[x.VM] != nil {
				pinnedCPU += x.CPUPct / 100
				pinned += memoryOf(x)
			}
		}
		used := u.Memory.TotalBytes - min(u.Memory.AvailableBytes, u.Memory.TotalBytes)
		own := used - min(rss, used)
		memMB := float64(u.Memory.TotalBytes-own-min(pinned, u.Memory.TotalBytes-own)) / mb
		p, ok := d.Hosts[name]
		if !ok {
			p = d.Default
		}
		inv.Hosts = append(inv.Hosts, planner.Host{
			Name: name, CPU: cpus, Mem: memMB, Other: max(0, busy-vmCPU) + pinnedCPU,
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
	var problems []planner.Problem
	for _, ph := range inv.Hosts {
		h := f.hosts[ph.Name]
		for _, x := range h.last.VMs {
			v := f.vms[x.VM]
			if v == nil {
				continue
			}
			if on := shared[x.VM]; on != nil {
				if !ph.Down {
					problems = append(problems, planner.Problem{Host: ph.Name,
						Reason: fmt.Sprintf("VM %q: name on hosts %s; not moved while it is", x.VM, strings.Join(on, " and "))})
				}
				continue
			}
			// A live host's newest sample places the VM; a down host's
			// only while no newer sample lists it elsewhere.
			if ph.Down && (v.host != ph.Name || !v.at.Equal(h.at)) {
				continue
			}
			inv.VMs = append(inv.VMs, planner.VM{
				Name: x.VM, Host: ph.Name, CPU: f.demandOf(v, now, &scratch), Mem: float64(memoryOf(x)) / mb,
				Chunk: d.Chunks[x.VM], Moved: moved[x.VM],
			})
		}
	}
	f.prune(now)
	inv.Groups = d.Groups
	return inv, problems
}

// shared returns the names listed by more than one live host's newest
// sample, each with those hosts by name.
func (f *Fleet) shared(now time.Time) map[string][]string {
	first := map[string]string{}
	out := map[string][]string{}
	for name, h := range f.hosts {
		if down(h, now) {
			continue
		}
		for _, x := range h.last.VMs {
			at, seen := first[x.VM]
			switch {
			case !seen:
				first[x.VM] = name
			case at == name:
			case out[x.VM] == nil:
				out[x.VM] = []string{at, name}
			case !slices.Contains(out[x.VM], name):
				out[x.VM] = append(out[x.VM], name)
			}
		}
	}
	for _, hosts := range out {
		slices.Sort(hosts)
	}
	return out
}

func memoryOf(x protocol.VMUsage) uint64 {
	if x.MemoryBytes != 0 {
		return x.MemoryBytes
	}
	return x.RSSBytes
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
