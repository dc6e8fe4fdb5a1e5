package sim

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// Move is one migration a policy asks for.
type Move struct {
	VM *VM
	To *Host
}

// Policy places VMs at start and plans migrations at every step.
type Policy interface {
	// Name is how the policy is reported, e.g. "THR-MMT-0.8".
	Name() string
	// Place picks a host for a VM being created, or nil.
	Place(p *Plan, v *VM) *Host
	// Migrate plans the step's migrations on p, a what-if copy of the
	// placement; the moves are carried out in the order returned.
	Migrate(p *Plan) []Move
}

// Result sums up one run.
type Result struct {
	Policy     string
	VMs        int
	Migrations int
	EnergyKWh  float64
	SLATAH     float64 // share of active host time at 100 % CPU
	PDM        float64 // share of requested CPU lost to migrations
	// ActiveHosts is the number of hosts running VMs after each step.
	ActiveHosts []int
}

// SLAV is SLATAH × PDM.
func (r Result) SLAV() float64 { return r.SLATAH * r.PDM }

// ESV is energy × SLAV.
func (r Result) ESV() float64 { return r.EnergyKWh * r.SLAV() }

// Options tune a run.
type Options struct {
	// Steps limits the run to that many steps; 0 runs the whole trace.
	Steps int
	// Packed starts from VMs packed by their first sample, best fit up to
	// 80 % of a host, instead of CloudSim's start, where each VM is placed
	// asking for all of its MIPS and the fleet begins spread out.
	Packed bool
	// Progress, when set, is called after each step.
	Progress func(step, steps int)
}

// ErrNoHost means initial placement found no host for a VM.
var ErrNoHost = errors.New("no host fits the VM")

type migration struct {
	vm       *VM
	from, to *Host
	done     float64
}

// Run replays traces on setup under policy, the way CloudSim's power
// data centre does: at every step all hosts are updated, the policy plans,
// and each migration takes the VM's RAM over half the target's bandwidth,
// during which the VM runs at 90 % and the target reserves a tenth of it.
func Run(setup Setup, traces []Trace, policy Policy, opt Options) (Result, error) {
	if len(traces) == 0 {
		return Result{}, errors.New("no traces")
	}
	hosts := make([]*Host, len(setup.Hosts))
	for i, s := range setup.Hosts {
		hosts[i] = &Host{ID: i, Spec: s, total: s.PEMIPS * float64(s.PEs)}
	}
	block := int(math.Ceil(float64(len(traces)) / float64(len(setup.VMTypes))))
	vms := make([]*VM, len(traces))
	steps := 0
	for i, t := range traces {
		vms[i] = &VM{ID: i, Name: t.Name, Spec: setup.VMTypes[i/block], trace: t.Samples}
		steps = max(steps, len(t.Samples))
	}
	if opt.Steps > 0 {
		steps = min(steps, opt.Steps)
	}

	if err := place(hosts, vms, setup, policy, opt.Packed); err != nil {
		return Result{}, err
	}

	res := Result{Policy: policy.Name(), VMs: len(vms)}
	var energy float64
	now := 0.0
	// advance brings every host to time t, as CloudSim's data centre does
	// at each event: requests follow the traces, the energy of the interval
	// is added, and a VM that asks for nothing has finished its work and
	// leaves the data centre for good.
	advance := func(t float64) {
		dt := t - now
		for _, v := range vms {
			if v.host == nil {
				continue
			}
			u := v.utilAt(t, setup.Step)
			v.req = u * v.Spec.MIPS
			// CloudSim records a VM's utilisation when a step has passed
			// since the last record (upstream commit 0c614418); its clock
			// sums steps in floating point, so now and then a record
			// falls on the first event after the step instead.
			if t-v.recorded >= setup.Step {
				v.record(u)
				v.recorded = t
			}
		}
		for _, h := range hosts {
			u0 := h.Utilisation()
			h.update(t)
			if dt > 0 {
				energy += h.Spec.Power.energy(u0, h.Utilisation(), dt)
			}
		}
		for _, v := range vms {
			if v.host != nil && !v.inMig && v.req == 0 {
				v.host.vms = remove(v.host.vms, v)
				v.host = nil
			}
		}
		now = t
	}
	var pending []migration
	// CloudSim's hosts first run 0.1 s after the start, when the
	// workloads arrive, and then every step; the first step only starts
	// the clock.
	const offset = 0.1
	t := offset
	for k := 1; k < steps; k++ {
		t += setup.Step
		advance(t)
		moves := policy.Migrate(newPlan(hosts, setup.Step, false))
		for _, m := range moves {
			pending = append(pending, startMigration(m, t))
		}
		res.Migrations += len(moves)
		// Migrations end before the next step: the longest is 1740 MB
		// over 62.5 MB/s, under 28 s.
		slices.SortStableFunc(pending, func(a, b migration) int { return cmpFloat(a.done, b.done) })
		for len(pending) > 0 {
			at := pending[0].done
			advance(at)
			for len(pending) > 0 && pending[0].done == at {
				finishMigration(pending[0])
				pending = pending[1:]
			}
			advance(at)
		}
		active := 0
		for _, h := range hosts {
			if len(h.vms) > 0 && h.util > 0 {
				active++
			}
		}
		res.ActiveHosts = append(res.ActiveHosts, active)
		if opt.Progress != nil {
			opt.Progress(k+1, steps)
		}
	}

	res.EnergyKWh = energy / 3.6e6
	var active, over float64
	for _, h := range hosts {
		active += h.acc.active
		over += h.acc.overloaded
	}
	if active > 0 {
		res.SLATAH = over / active
	}
	var requested, short float64
	for _, v := range vms {
		requested += v.acc.requested
		short += v.acc.migShort
	}
	if requested > 0 {
		res.PDM = short / requested
	}
	return res, nil
}

// place makes the fleet's starting placement.
func place(hosts []*Host, vms []*VM, setup Setup, policy Policy, packed bool) error {
	plan := newPlan(hosts, setup.Step, !packed)
	for _, v := range vms {
		var h *Host
		if packed {
			v.req = v.utilAt(0, setup.Step) * v.Spec.MIPS
			h = packedHost(plan, v)
		} else {
			v.req = v.Spec.MIPS // a VM being created asks for all of its MIPS
			h = policy.Place(plan, v)
		}
		if h == nil {
			return fmt.Errorf("VM %d (%s, %g MIPS): %w", v.ID, v.Name, v.Spec.MIPS, ErrNoHost)
		}
		plan.create(h, v)
		if !packed {
			v.req = 0 // created, it asks for nothing until its work arrives
		}
		h.vms = append(h.vms, v)
		v.host = h
	}
	return nil
}

// packedLimit is how full packing fills a host.
const packedLimit = 0.8

// packedHost is best fit: the fullest host in use that stays within the
// limit, else the first empty host that takes the VM.
func packedHost(p *Plan, v *VM) *Host {
	var best, empty *Host
	bestU := -1.0
	for _, h := range p.Hosts() {
		if !p.Suitable(h, v) {
			continue
		}
		if len(p.VMs(h)) == 0 {
			if empty == nil {
				empty = h
			}
			continue
		}
		if u := (p.RequestedMIPS(h) + v.req) / h.total; u <= packedLimit && u > bestU {
			best, bestU = h, u
		}
	}
	if best != nil {
		return best
	}
	return empty
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// record adds the utilisation of a step to the VM's history.
func (v *VM) record(u float64) {
	if len(v.hist) < historyLen {
		v.hist = append(v.hist, 0)
	}
	copy(v.hist[1:], v.hist)
	v.hist[0] = u
}

// startMigration reserves the VM on the target, as CloudSim's
// addMigratingInVm does, and returns when the copy ends.
func startMigration(m Move, now float64) migration {
	v, to := m.VM, m.To
	from := v.host
	v.inMig = true
	if !to.migratingIn(v) {
		to.migIn = append(to.migIn, v)
		to.vms = append(to.vms, v)
	}
	to.update(now)
	from.update(now)
	// RAM in MB over half the bandwidth in kbit/s: CloudSim keeps the
	// other half for the VMs' own traffic.
	d := float64(v.Spec.RAM) / (float64(to.Spec.BW) / (2 * 8000))
	return migration{vm: v, from: from, to: to, done: now + d}
}

func finishMigration(m migration) {
	v := m.vm
	v.host.vms = remove(v.host.vms, v)
	m.to.migIn = remove(m.to.migIn, v)
	m.to.vms = remove(m.to.vms, v)
	v.inMig = false
	m.to.vms = append(m.to.vms, v)
	v.host = m.to
}

func remove(list []*VM, v *VM) []*VM {
	for i, x := range list {
		if x == v {
			return append(list[:i], list[i+1:]...)
		}
	}
	return list
}
