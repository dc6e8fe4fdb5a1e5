package sim

import (
	"fmt"
	"slices"
)

// XenGuard is the threshold balancer of Mevåg (2007): a host over High is
// a hotspot and gives away its busiest VM, to the least loaded host under
// Low; when none fits, Low rises by Step up to High. It does not
// consolidate.
type XenGuard struct{ Low, High, Step float64 }

// Name reports the policy.
func (x XenGuard) Name() string { return fmt.Sprintf("XenGuard-%g-%g", x.High, x.Low) }

// Place is the data centre's initial placement, the same for every policy.
func (x XenGuard) Place(p *Plan, v *VM) *Host { return Beloglazov{Param: x.High}.Place(p, v) }

// Migrate relieves each hotspot, busiest VM first.
func (x XenGuard) Migrate(p *Plan) []Move {
	var moves []Move
	moved := map[*VM]bool{}
	for _, h := range p.Hosts() {
		for p.RequestedMIPS(h)/h.total > x.High {
			var v *VM
			for _, c := range p.VMs(h) {
				if !moved[c] && (v == nil || c.req > v.req) {
					v = c
				}
			}
			if v == nil {
				break
			}
			t := x.target(p, h, v)
			if t == nil {
				break
			}
			p.Destroy(h, v)
			p.Create(t, v)
			moved[v] = true
			moves = append(moves, Move{VM: v, To: t})
		}
	}
	return moves
}

func (x XenGuard) target(p *Plan, from *Host, v *VM) *Host {
	for low := x.Low; low <= x.High+1e-9; low += x.Step {
		var best *Host
		for _, t := range p.Hosts() {
			u := p.RequestedMIPS(t) / t.total
			if t == from || u >= low || !p.Suitable(t, v) || (p.RequestedMIPS(t)+v.req)/t.total > x.High {
				continue
			}
			if best == nil || u < p.RequestedMIPS(best)/best.total {
				best = t
			}
		}
		if best != nil {
			return best
		}
	}
	return nil
}

// Sandpiper is the black-box hotspot mitigation of Wood et al. (NSDI 2007):
// a host is a hotspot when its CPU was over Threshold in K of the last N
// samples; its VMs leave in order of volume to size, 1/(1-cpu) per MB,
// each to the least loaded host that takes it below the threshold. It does
// not consolidate.
type Sandpiper struct {
	Threshold float64
	K, N      int
}

// Name reports the policy.
func (s Sandpiper) Name() string { return fmt.Sprintf("Sandpiper-%g-%dof%d", s.Threshold, s.K, s.N) }

// Place is the data centre's initial placement, the same for every policy.
func (s Sandpiper) Place(p *Plan, v *VM) *Host { return Beloglazov{Param: s.Threshold}.Place(p, v) }

func (s Sandpiper) hot(p *Plan, h *Host) bool {
	hist := p.UtilisationHistory(h)
	over := 0
	for i := 0; i < min(s.N, len(hist)); i++ {
		if hist[i] > s.Threshold {
			over++
		}
	}
	return over >= s.K && p.RequestedMIPS(h)/h.total > s.Threshold
}

// Migrate mitigates each hotspot, highest volume-to-size first.
func (s Sandpiper) Migrate(p *Plan) []Move {
	var moves []Move
	for _, h := range p.Hosts() {
		if !s.hot(p, h) {
			continue
		}
		vms := slices.Clone(p.VMs(h))
		vsr := func(v *VM) float64 {
			u := min(v.req/v.Spec.MIPS, 0.99)
			return 1 / (1 - u) / float64(v.Spec.RAM)
		}
		slices.SortStableFunc(vms, func(a, b *VM) int { return cmpFloat(vsr(b), vsr(a)) })
		for _, v := range vms {
			if p.RequestedMIPS(h)/h.total <= s.Threshold {
				break
			}
			var best *Host
			for _, t := range p.Hosts() {
				if t == h || !p.Suitable(t, v) || (p.RequestedMIPS(t)+v.req)/t.total > s.Threshold {
					continue
				}
				if best == nil || p.RequestedMIPS(t)/t.total < p.RequestedMIPS(best)/best.total {
					best = t
				}
			}
			if best == nil {
				continue
			}
			p.Destroy(h, v)
			p.Create(best, v)
			moves = append(moves, Move{VM: v, To: best})
		}
	}
	return moves
}
