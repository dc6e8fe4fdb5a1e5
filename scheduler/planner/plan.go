package planner

import (
	"cmp"
	"fmt"
	"slices"
)

type host struct {
	Host
	cpu, mem float64 // load now, the host's own CPU load included
	n        int     // VMs
	units    []*unit
	moves    int  // migrations in or out this cycle
	received bool // took VMs this cycle: not emptied in the same cycle
}

type unit struct {
	chunk string
	vms   []*VM
	cpu   float64
	mem   float64
	host  *host
	cool  bool // a VM of it moved within the cool-down
}

type state struct {
	opt    Options
	hosts  []*host
	byName map[string]*host
	anti   map[string][]string // VM → hard anti-affinity groups
	soft   map[string][]Group  // VM → soft groups
	groups map[string]Group
	plan   Plan
	budget int
	npass  int              // escalation passes
	where  map[string]*host // VM → host, kept up to date by move
}

// Make plans one cycle over inv.
func Make(inv Inventory, opt Options) Plan {
	s := newState(inv, opt)
	// Hosts that must be emptied go first, then hotspots, worst first.
	var empty, hot []*host
	for _, h := range s.hosts {
		switch {
		case h.Down || h.n == 0:
		case h.Policy.Empty || h.Draining:
			empty = append(empty, h)
		case s.over(h):
			hot = append(hot, h)
		}
	}
	slices.SortStableFunc(hot, func(a, b *host) int { return cmp.Compare(b.cpu/max(b.CPU, 1e-9), a.cpu/max(a.CPU, 1e-9)) })
	for _, h := range empty {
		s.evacuate(h, "host wants to be empty")
	}
	for _, h := range hot {
		s.relieve(h)
	}
	if opt.Consolidate {
		s.consolidate()
	}
	return s.plan
}

func newState(inv Inventory, opt Options) *state {
	s := &state{
		opt: opt, byName: make(map[string]*host, len(inv.Hosts)), anti: map[string][]string{},
		soft: map[string][]Group{}, groups: map[string]Group{}, budget: opt.MaxMoves,
		where: make(map[string]*host, len(inv.VMs)),
	}
	for _, h := range inv.Hosts {
		x := &host{Host: h, cpu: h.Other}
		s.hosts = append(s.hosts, x)
		s.byName[h.Name] = x
	}
	hardTogether := map[string]string{} // VM → hard affinity group
	for _, g := range inv.Groups {
		s.groups[g.Name] = g
		for _, v := range g.VMs {
			switch {
			case g.Hard && g.Anti:
				s.anti[v] = append(s.anti[v], g.Name)
			case g.Hard:
				hardTogether[v] = g.Name
			default:
				s.soft[v] = append(s.soft[v], g)
			}
		}
	}
	units := map[[2]string]*unit{}
	for i := range inv.VMs {
		v := &inv.VMs[i]
		h := s.byName[v.Host]
		if h == nil {
			continue
		}
		key := v.Chunk
		if key == "" {
			key = hardTogether[v.Name]
		}
		var u *unit
		if key != "" {
			u = units[[2]string{key, h.Name}]
		}
		if u == nil {
			u = &unit{chunk: key, host: h}
			h.units = append(h.units, u)
			if key != "" {
				units[[2]string{key, h.Name}] = u
			}
		}
		u.vms = append(u.vms, v)
		u.cpu += v.CPU
		u.mem += v.Mem
		if !v.Moved.IsZero() && opt.Cooldown > 0 && opt.Now.Sub(v.Moved) < opt.Cooldown {
			u.cool = true
		}
		h.cpu += v.CPU
		h.mem += v.Mem
		h.n++
		s.where[v.Name] = h
	}
	s.npass = s.passes()
	return s
}

func exceeds(x float64, b Band) bool { return b.High > 0 && x > b.High }
func below(x float64, b Band) bool   { return b.Low > 0 && x < b.Low }
func share(h *host, cpu float64) float64 {
	if h.CPU <= 0 {
		return 0
	}
	return cpu / h.CPU
}

// overWith reports whether h would be overloaded with the given load.
func overWith(h *host, cpu, mem float64, n int) bool {
	p := h.Policy
	return (p.Empty && n > 0) || exceeds(cpu, p.CPU) || exceeds(mem, p.Mem) || exceeds(float64(n), p.VMs)
}

func (s *state) over(h *host) bool { return overWith(h, h.cpu, h.mem, h.n) }

func (s *state) under(h *host) bool {
	p := h.Policy
	return !s.over(h) && (below(h.cpu, p.CPU) || below(h.mem, p.Mem) || below(float64(h.n), p.VMs))
}

// relieve moves units off a hotspot until it is within policy.
func (s *state) relieve(h *host) {
	// If the host is overloaded with no VMs at all, its own load is the
	// cause: move everything it can (XenGuard does the same for dom0).
	if exceeds(h.Other, h.Policy.CPU) {
		s.evacuate(h, "host's own load is over its threshold")
		return
	}
	reason := s.overReason(h)
	for s.over(h) {
		u := s.pickUnit(h)
		if u == nil {
			s.problem(h, reason+": no VM can move (cool-down or budget)")
			return
		}
		if !s.place(u, reason, true) {
			s.problem(h, fmt.Sprintf("%s: no target fits %s", reason, u.name()))
			return
		}
	}
}

func (s *state) overReason(h *host) string {
	p := h.Policy
	switch {
	case exceeds(h.cpu, p.CPU):
		return fmt.Sprintf("CPU %.2f over %.2f", h.cpu, p.CPU.High)
	case exceeds(h.mem, p.Mem):
		return fmt.Sprintf("memory %.0f MB over %.0f MB", h.mem, p.Mem.High)
	default:
		return fmt.Sprintf("%d VMs over %.0f", h.n, p.VMs.High)
	}
}

// pickUnit chooses what leaves an overloaded host: a unit that clears the
// overload by itself if there is one, else the best candidate; CPU relief
// prefers the most load per MB (cheapest to move), memory or count relief
// the smallest.
func (s *state) pickUnit(h *host) *unit {
	var best *unit
	bestClears := false
	cpuHot := exceeds(h.cpu, h.Policy.CPU)
	better := func(a, b *unit) bool {
		if cpuHot {
			return a.cpu/max(a.mem, 1) > b.cpu/max(b.mem, 1)
		}
		return a.mem < b.mem
	}
	for _, u := range h.units {
		if u.cool || !s.affordable(u) {
			continue
		}
		if cpuHot && u.cpu <= 0 {
			continue
		}
		clears := !overWith(h, h.cpu-u.cpu, h.mem-u.mem, h.n-len(u.vms))
		switch {
		case best == nil, clears && !bestClears, clears == bestClears && better(u, best):
			best, bestClears = u, clears
		}
	}
	return best
}

func (u *unit) name() string {
	if u.chunk != "" {
		return "chunk " + u.chunk
	}
	return u.vms[0].Name
}

// affordable reports whether the cycle's budgets allow moving u: the
// fleet's, and its host's unless the host must be emptied.
func (s *state) affordable(u *unit) bool {
	if s.opt.MaxMoves > 0 && s.budget < len(u.vms) {
		return false
	}
	h := u.host
	return s.opt.MaxPerHost <= 0 || h.Draining || h.Policy.Empty || h.moves+len(u.vms) <= s.opt.MaxPerHost
}

// evacuate moves every unit it can off h, cheapest first.
func (s *state) evacuate(h *host, reason string) {
	units := slices.Clone(h.units)
	slices.SortStableFunc(units, func(a, b *unit) int { return cmp.Compare(a.mem, b.mem) })
	for _, u := range units {
		if !s.affordable(u) {
			s.problem(h, reason+": migration budget spent")
			return
		}
		if !s.place(u, reason, false) {
			s.problem(h, fmt.Sprintf("%s: no target fits %s", reason, u.name()))
		}
	}
}

func (s *state) problem(h *host, reason string) {
	s.plan.Unresolved = append(s.plan.Unresolved, Problem{Host: h.Name, Reason: reason})
}
