package sim

import (
	"fmt"
	"math"
	"slices"
)

// Beloglazov is the dynamic consolidation of Beloglazov and Buyya (CCPE
// 2012) as CloudSim 3.0.3 implements it: a host is overloaded by a static
// threshold (THR) or by local regression over its recent utilisation (LR);
// VMs leave an overloaded host smallest memory first (minimum migration
// time, MMT) until it is not; they and the VMs of underloaded hosts, least
// loaded first, go where the power draw grows least (power-aware best fit
// decreasing).
type Beloglazov struct {
	// LR selects local regression; otherwise the static threshold.
	LR bool
	// Param is the threshold (THR) or the safety factor (LR).
	Param float64
}

// Name reports the policy as the paper does, e.g. "LR-MMT-1.2".
func (b Beloglazov) Name() string {
	if b.LR {
		return fmt.Sprintf("LR-MMT-%g", b.Param)
	}
	return fmt.Sprintf("THR-MMT-%g", b.Param)
}

// lrFallback is the static threshold LR uses until a host has ten samples.
const lrFallback = 0.7

func (b Beloglazov) overloaded(p *Plan, h *Host) bool {
	if !b.LR {
		return p.RequestedMIPS(h)/h.total > b.Param
	}
	hist := p.UtilisationHistory(h)
	const n = 10
	if len(hist) < n {
		return p.RequestedMIPS(h)/h.total > lrFallback
	}
	// Oldest first over x = 1 … n, predicted for when a migration started
	// now would have finished.
	var sx, sy, sxx, sxy float64
	for i := 0; i < n; i++ {
		x, y := float64(i+1), hist[n-1-i]
		sx += x
		sy += y
		sxx += x * x
		sxy += x * y
	}
	slope := (n*sxy - sx*sy) / (n*sxx - sx*sx)
	intercept := (sy - slope*sx) / n
	ahead := math.Ceil(p.MigrationSeconds(h) / p.step)
	return (intercept+slope*(n+ahead))*b.Param >= 1
}

func (b Beloglazov) overloadedWith(p *Plan, h *Host, v *VM) bool {
	p.Create(h, v)
	over := b.overloaded(p, h)
	p.Destroy(h, v)
	return over
}

// findHost is power-aware best fit: the suitable host whose draw grows
// least and that the VM does not overload.
func (b Beloglazov) findHost(p *Plan, v *VM, excluded map[*Host]bool) *Host {
	var best *Host
	least := math.MaxFloat64
	for _, h := range p.Hosts() {
		if excluded[h] || !p.Suitable(h, v) {
			continue
		}
		if p.AllocatedMIPS(h) != 0 && b.overloadedWith(p, h, v) {
			continue
		}
		if d := p.PowerIncrease(h, v); d < least {
			least, best = d, h
		}
	}
	return best
}

// Place puts a VM being created on the best-fit host.
func (b Beloglazov) Place(p *Plan, v *VM) *Host { return b.findHost(p, v, nil) }

func byDemand(vms []*VM) {
	slices.SortStableFunc(vms, func(x, y *VM) int { return cmpFloat(y.req, x.req) })
}

// Migrate plans one step: relieve overloaded hosts, then empty the least
// loaded hosts whose VMs all fit elsewhere.
func (b Beloglazov) Migrate(p *Plan) []Move {
	over := map[*Host]bool{}
	var overList []*Host
	for _, h := range p.Hosts() {
		if b.overloaded(p, h) {
			over[h] = true
			overList = append(overList, h)
		}
	}
	var leaving []*VM
	for _, h := range overList {
		for {
			v := smallestMemory(p.VMs(h))
			if v == nil {
				break
			}
			leaving = append(leaving, v)
			p.Destroy(h, v)
			if !b.overloaded(p, h) {
				break
			}
		}
	}
	byDemand(leaving)
	var moves []Move
	for _, v := range leaving {
		if h := b.findHost(p, v, over); h != nil {
			p.Create(h, v)
			moves = append(moves, Move{VM: v, To: h})
		}
	}
	return append(moves, b.consolidate(p, over)...)
}

func smallestMemory(vms []*VM) *VM {
	var pick *VM
	for _, v := range vms {
		if pick == nil || v.Spec.RAM < pick.Spec.RAM {
			pick = v
		}
	}
	return pick
}

// consolidate tries the underloaded hosts, least utilised first: if all of
// a host's VMs find a place on hosts still in use, they all go.
func (b Beloglazov) consolidate(p *Plan, over map[*Host]bool) []Move {
	skipSource := map[*Host]bool{}

	skipTarget := map[*Host]bool{}
	for h := range over {
		skipSource[h], skipTarget[h] = true, true
	}
	for _, h := range p.Hosts() {
		if p.StartUtilisation(h) == 0 {
			skipSource[h], skipTarget[h] = true, true
		}
	}
	var moves []Move
	for len(skipSource) < len(p.Hosts()) {
		var src *Host
		least := 1.0
		for _, h := range p.Hosts() {
			u := p.StartUtilisation(h)
			if !skipSource[h] && u > 0 && u < least && len(p.VMs(h)) > 0 {
				least, src = u, h
			}
		}
		if src == nil {
			break
		}
		skipSource[src], skipTarget[src] = true, true
		vms := append([]*VM(nil), p.VMs(src)...)
		byDemand(vms)
		var placed []Move
		for _, v := range vms {
			h := b.findHost(p, v, skipTarget)
			if h == nil {
				for _, m := range placed {
					p.Destroy(m.To, m.VM)
				}
				placed = nil
				break
			}
			p.Create(h, v)
			placed = append(placed, Move{VM: v, To: h})
		}
		for _, m := range placed {
			skipSource[m.To] = true
		}
		moves = append(moves, placed...)
	}
	return moves
}
