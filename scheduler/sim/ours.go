package sim

import (
	"fmt"
	"time"

	"github.com/guestdiag/guestdiag/scheduler/planner"
)

// Ours runs guestdiag's planner on the simulated fleet: hosts with a CPU
// band as shares of capacity, hotspots relieved with the fewest and
// cheapest moves, underloaded hosts emptied, a cool-down per VM.
type Ours struct {
	Low, High float64
	// Cooldown is in steps.
	Cooldown int
	// Memory makes host RAM a hard limit for running VMs, which the
	// CloudSim set-up does not model (its VMs ask for no memory once they
	// run); off, ours meets the same rules as the baselines.
	Memory bool

	moved map[*VM]int // step of the last move
	step  int
}

// Name reports the policy.
func (o *Ours) Name() string {
	n := fmt.Sprintf("guestdiag-%g-%g", o.High, o.Low)
	if o.Memory {
		n += "-mem"
	}
	return n
}

// Place is the data centre's initial placement, the same for every policy.
func (o *Ours) Place(p *Plan, v *VM) *Host { return Beloglazov{Param: o.High}.Place(p, v) }

// Migrate turns the plan's fleet into an inventory, plans, and maps the
// moves back.
func (o *Ours) Migrate(p *Plan) []Move {
	if o.moved == nil {
		o.moved = map[*VM]int{}
	}
	o.step++
	now := time.Unix(int64(o.step)*300, 0)
	inv := planner.Inventory{Hosts: make([]planner.Host, 0, len(p.Hosts()))}
	byName := map[string]*VM{}
	hosts := map[string]*Host{}
	for _, h := range p.Hosts() {
		name := fmt.Sprint(h.ID)
		hosts[name] = h
		ph := planner.Host{Name: name, CPU: h.total, Policy: planner.SharePolicy(h.total, o.Low, o.High)}
		if o.Memory {
			ph.Mem = float64(h.Spec.RAM)
		}
		inv.Hosts = append(inv.Hosts, ph)
		for _, v := range p.VMs(h) {
			name := fmt.Sprint("v", v.ID)
			byName[name] = v
			pv := planner.VM{Name: name, Host: ph.Name, CPU: v.req, Mem: float64(v.Spec.RAM)}
			if s, ok := o.moved[v]; ok {
				pv.Moved = time.Unix(int64(s)*300, 0)
			}
			inv.VMs = append(inv.VMs, pv)
		}
	}
	opt := planner.DefaultOptions(now)
	opt.Cooldown = time.Duration(o.Cooldown) * 300 * time.Second
	opt.MaxMoves, opt.MaxPerHost = 0, 0
	opt.Consolidate = true
	plan := planner.Make(inv, opt)
	var moves []Move
	for _, m := range plan.Moves {
		for _, name := range m.VMs {
			v := byName[name]
			moves = append(moves, Move{VM: v, To: hosts[m.To]})
			o.moved[v] = o.step
		}
	}
	return moves
}
