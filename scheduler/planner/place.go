package planner

import (
	"fmt"
	"math"
	"slices"
)

// fits applies the hard rules: the target is up, not being emptied, has
// the memory, breaks no anti-affinity rule, has budget left, and is not
// overloaded after the move.
func (s *state) fits(u *unit, t *host) bool {
	if t == u.host || t.Down || t.Draining || t.Policy.Empty {
		return false
	}
	if t.Mem > 0 && t.mem+u.mem > t.Mem {
		return false
	}
	if s.opt.MaxPerHost > 0 && t.moves+len(u.vms) > s.opt.MaxPerHost && !u.host.Draining && !u.host.Policy.Empty {
		return false
	}
	if overWith(t, t.cpu+u.cpu, t.mem+u.mem, t.n+len(u.vms)) {
		return false
	}
	for _, v := range u.vms {
		for _, g := range s.anti[v.Name] {
			for _, w := range s.groups[g].VMs {
				if w != v.Name && s.where[w] == t {
					return false
				}
			}
		}
	}
	return true
}

// pass returns the first escalation pass in which t is a target, or -1:
// at first only underloaded hosts; then hosts whose CPU is under their low
// threshold raised by p steps, up to their high threshold; hosts with no
// CPU band from the second pass on.
func (s *state) pass(t *host) int {
	if s.under(t) {
		return 0
	}
	b := t.Policy.CPU
	if b.High <= 0 || t.CPU <= 0 {
		return 1
	}
	if t.cpu >= b.High {
		return -1
	}
	if s.opt.Step <= 0 {
		if t.cpu < b.Low {
			return 1
		}
		return -1
	}
	// The first p with cpu < Low + p·Step·CPU, worked out rather than
	// tried pass by pass: this runs for every host for every move.
	p := max(1, int(math.Floor((t.cpu-b.Low)/(s.opt.Step*t.CPU)))+1)
	if p >= s.npass {
		return -1
	}
	return p
}

// passes is how many escalation passes reach every host's high threshold.
func (s *state) passes() int {
	if s.opt.Step <= 0 {
		return 2
	}
	n := 1
	for _, h := range s.hosts {
		b := h.Policy.CPU
		if b.High > 0 && h.CPU > 0 {
			n = max(n, int(math.Ceil((b.High-b.Low)/(s.opt.Step*h.CPU)-1e-9)))
		}
	}
	return n + 1
}

// score ranks admitted targets: soft affinity and anti-affinity first,
// then best fit, the fullest CPU after the move, which keeps other hosts
// free to be emptied.
func (s *state) score(u *unit, t *host) float64 {
	sc := share(t, t.cpu+u.cpu)
	for _, v := range u.vms {
		for _, g := range s.soft[v.Name] {
			for _, w := range g.VMs {
				if w != v.Name && s.where[w] == t {
					if g.Anti {
						sc -= 10
					} else {
						sc += 10
					}
				}
			}
		}
	}
	return sc
}

// place finds a target for u and moves it there in the plan. gain asks for
// the minimum gain: the target must end at least MinGain below the source.
func (s *state) place(u *unit, reason string, gain bool) bool {
	src := u.host
	var best *host
	bestPass, bestScore := math.MaxInt, math.Inf(-1)
	for _, t := range s.hosts {
		// The pass first: it is cheap, and most hosts are not targets
		// at all.
		p := s.pass(t)
		if p < 0 || p > bestPass || !s.fits(u, t) {
			continue
		}
		if gain && share(t, t.cpu+u.cpu)+s.opt.MinGain > share(src, src.cpu) {
			continue
		}
		if sc := s.score(u, t); p < bestPass || sc > bestScore {
			best, bestPass, bestScore = t, p, sc
		}
	}
	if best != nil {
		r := reason
		if b := best.Policy.CPU; bestPass > 0 && b.High > 0 && best.CPU > 0 {
			r = fmt.Sprintf("%s; target admitted with its low threshold raised to %.2f", reason, math.Min(b.Low+float64(bestPass)*s.opt.Step*best.CPU, b.High)/best.CPU)
		}
		s.move(u, best, r)
		return true
	}
	return s.makeRoom(u, reason)
}

// roomCandidates bounds how many targets makeRoom tries, least loaded
// first, so a hopeless hotspot costs little in a large fleet.
const roomCandidates = 16

// makeRoom is the exchange that stalls between peers: when no host can
// take u, move one unit off a target to a third host so that it can. It
// looks one step deep.
func (s *state) makeRoom(u *unit, reason string) bool {
	src := u.host
	// The least loaded hosts in use, kept in order by insertion: a full
	// sort of the fleet per call would cost more than the search.
	ts := make([]*host, 0, roomCandidates+1)
	for _, t := range s.hosts {
		if t == src || t.Down || t.Draining || t.Policy.Empty || t.n == 0 {
			continue
		}
		st := share(t, t.cpu)
		if len(ts) == roomCandidates && st >= share(ts[len(ts)-1], ts[len(ts)-1].cpu) {
			continue
		}
		i := len(ts)
		for i > 0 && share(ts[i-1], ts[i-1].cpu) > st {
			i--
		}
		ts = slices.Insert(ts, i, t)
		if len(ts) > roomCandidates {
			ts = ts[:roomCandidates]
		}
	}
	for _, t := range ts {
		for _, w := range slices.Clone(t.units) {
			if w.cool || !s.affordable(w) || s.opt.MaxMoves > 0 && s.budget < len(w.vms)+len(u.vms) {
				continue
			}
			// Only worth a third host if u fits once w has gone.
			if t.Mem > 0 && t.mem-w.mem+u.mem > t.Mem ||
				overWith(t, t.cpu-w.cpu+u.cpu, t.mem-w.mem+u.mem, t.n-len(w.vms)+len(u.vms)) {
				continue
			}
			for _, x := range s.hosts {
				if x == src || x == t || !s.fits(w, x) {
					continue
				}
				mark := len(s.plan.Moves)
				s.move(w, x, fmt.Sprintf("making room on %s for %s", t.Name, u.name()))
				if s.fits(u, t) {
					s.move(u, t, reason+"; after making room")
					return true
				}
				s.undo(mark)
				break // the rule u broke on t is not about w's target
			}
		}
	}
	return false
}

func (s *state) move(u *unit, t *host, reason string) {
	src := u.host
	src.units = slices.DeleteFunc(src.units, func(x *unit) bool { return x == u })
	src.cpu -= u.cpu
	src.mem -= u.mem
	src.n -= len(u.vms)
	src.moves += len(u.vms)
	t.units = append(t.units, u)
	t.cpu += u.cpu
	t.mem += u.mem
	t.n += len(u.vms)
	t.moves += len(u.vms)
	t.received = true
	u.host = t
	for _, v := range u.vms {
		s.where[v.Name] = t
	}
	s.budget -= len(u.vms)
	m := Move{
		Chunk: u.chunk, From: src.Name, To: t.Name, Reason: reason,
		FromCPU: share(src, src.cpu), ToCPU: share(t, t.cpu), FromMem: src.mem, ToMem: t.mem,
	}
	for _, v := range u.vms {
		m.VMs = append(m.VMs, v.Name)
	}
	s.plan.Moves = append(s.plan.Moves, m)
}

// consolidate empties underloaded hosts, least loaded first, when every
// VM on one fits on hosts that stay in use; either all go or none.
func (s *state) consolidate() {
	var cands []*host
	for _, h := range s.hosts {
		if h.n > 0 && !h.Down && !h.received && below(h.cpu, h.Policy.CPU) && !s.over(h) {
			cands = append(cands, h)
		}
	}
	slices.SortStableFunc(cands, func(a, b *host) int { return cmpf(share(a, a.cpu), share(b, b.cpu)) })
	emptied := map[*host]bool{}
	for _, h := range cands {
		if h.received || h.n == 0 {
			continue
		}
		units := slices.Clone(h.units)
		n := 0
		for _, u := range units {
			if u.cool {
				n = -1
				break
			}
			n += len(u.vms)
		}
		if n <= 0 || (s.opt.MaxMoves > 0 && n > s.budget) || (s.opt.MaxPerHost > 0 && n > s.opt.MaxPerHost) {
			continue
		}
		slices.SortStableFunc(units, func(a, b *unit) int { return cmpf(b.cpu, a.cpu) })
		mark := len(s.plan.Moves)
		ok := true
		emptied[h] = true
		for _, u := range units {
			t := s.consolidationTarget(u, emptied)
			if t == nil {
				ok = false
				break
			}
			s.move(u, t, fmt.Sprintf("CPU %.2f under %.2f: emptying the host", share(h, h.cpu+u.cpu), h.Policy.CPU.Low/max(h.CPU, 1e-9)))
		}
		if !ok {
			s.undo(mark)
			delete(emptied, h)
		}
	}
}

// consolidationTarget is best fit among hosts in use that are not being
// emptied.
func (s *state) consolidationTarget(u *unit, emptied map[*host]bool) *host {
	var best *host
	bestScore := math.Inf(-1)
	for _, t := range s.hosts {
		if t.n == 0 || emptied[t] || !s.fits(u, t) {
			continue
		}
		if sc := s.score(u, t); sc > bestScore {
			best, bestScore = t, sc
		}
	}
	return best
}

// undo takes back the moves after mark.
func (s *state) undo(mark int) {
	for i := len(s.plan.Moves) - 1; i >= mark; i-- {
		m := s.plan.Moves[i]
		t, src := s.byName[m.To], s.byName[m.From]
		var u *unit
		for _, x := range t.units {
			if x.vms[0].Name == m.VMs[0] {
				u = x
			}
		}
		t.units = slices.DeleteFunc(t.units, func(x *unit) bool { return x == u })
		t.cpu -= u.cpu
		t.mem -= u.mem
		t.n -= len(u.vms)
		t.moves -= len(u.vms)
		src.units = append(src.units, u)
		src.cpu += u.cpu
		src.mem += u.mem
		src.n += len(u.vms)
		src.moves -= len(u.vms)
		u.host = src
		for _, v := range u.vms {
			s.where[v.Name] = src
		}
		s.budget += len(u.vms)
	}
	s.plan.Moves = s.plan.Moves[:mark]
}

func cmpf(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
