package sim

import "math"

// Plan is a what-if copy of the placement that a policy changes while it
// plans a step; the data centre itself moves only the VMs the policy returns.
// Utilisation and power "at the start" are those of the step's update,
// as CloudSim's planning reads them.
type Plan struct {
	hosts   []*Host
	on      [][]*VM
	start   []float64 // utilisation at the start of the step
	initial bool      // VMs are being created: RAM and bandwidth count
	ram, bw []int
	step    float64

	cache []hostSums
	alloc []float64
}

type hostSums struct {
	valid     bool
	allocated float64
	requested float64
	free      float64
}

func newPlan(hosts []*Host, step float64, initial bool) *Plan {
	p := &Plan{
		hosts: hosts, on: make([][]*VM, len(hosts)), start: make([]float64, len(hosts)),
		initial: initial, step: step, cache: make([]hostSums, len(hosts)),
	}
	for i, h := range hosts {
		p.on[i] = append([]*VM(nil), h.vms...)
		if !initial {
			p.start[i] = h.Utilisation()
		}
	}
	if initial {
		p.ram = make([]int, len(hosts))
		p.bw = make([]int, len(hosts))
		for i, h := range hosts {
			p.ram[i], p.bw[i] = h.Spec.RAM, h.Spec.BW
		}
	}
	return p
}

// Hosts returns every host, in id order.
func (p *Plan) Hosts() []*Host { return p.hosts }

// VMs returns the VMs placed on h in the plan, in arrival order.
func (p *Plan) VMs(h *Host) []*VM { return p.on[h.ID] }

// StartUtilisation returns h's utilisation at the start of the step.
func (p *Plan) StartUtilisation(h *Host) float64 { return p.start[h.ID] }

func (p *Plan) create(h *Host, v *VM) {
	p.on[h.ID] = append(p.on[h.ID], v)
	p.cache[h.ID].valid = false
	if p.initial {
		p.ram[h.ID] -= v.Spec.RAM
		p.bw[h.ID] -= v.Spec.BW
	}
}

// Create places v on h in the plan.
func (p *Plan) Create(h *Host, v *VM) { p.create(h, v) }

// Destroy takes v off h in the plan.
func (p *Plan) Destroy(h *Host, v *VM) {
	p.on[h.ID] = remove(p.on[h.ID], v)
	p.cache[h.ID].valid = false
	if p.initial {
		p.ram[h.ID] += v.Spec.RAM
		p.bw[h.ID] += v.Spec.BW
	}
}

func (p *Plan) sums(h *Host) hostSums {
	c := &p.cache[h.ID]
	if c.valid {
		return *c
	}
	vms := p.on[h.ID]
	if p.initial {
		// VMs being created hold all of their MIPS but, having no work
		// yet, ask for none: only the VM being placed asks.
		c.allocated, c.requested = 0, 0
		for _, v := range vms {
			c.allocated += math.Min(v.Spec.MIPS, h.Spec.PEMIPS)
			c.requested += v.req
		}
		c.free = h.total - c.allocated
		c.valid = true
		return *c
	}
	if cap(p.alloc) < len(vms) {
		p.alloc = make([]float64, len(vms))
	}
	alloc := p.alloc[:len(vms)]
	c.free = h.share(vms, alloc, nil)
	c.allocated, c.requested = 0, 0
	for i, v := range vms {
		c.allocated += alloc[i]
		c.requested += v.req
	}
	c.valid = true
	return *c
}

// AllocatedMIPS returns the MIPS h would hand out with the plan's VMs.
func (p *Plan) AllocatedMIPS(h *Host) float64 { return p.sums(h).allocated }

// RequestedMIPS returns the MIPS the plan's VMs on h ask for.
func (p *Plan) RequestedMIPS(h *Host) float64 { return p.sums(h).requested }

// Suitable reports whether h can take v as CloudSim's isSuitableForVm
// decides: v's demand fits one core and the free MIPS. Memory counts only
// while VMs are created: CloudSim's PlanetLab VMs request no memory once
// they run, so its baselines never meet a memory limit afterwards.
func (p *Plan) Suitable(h *Host, v *VM) bool {
	if h.Spec.PEMIPS < v.req || p.sums(h).free < v.req {
		return false
	}
	return !p.initial || (p.ram[h.ID] >= v.Spec.RAM && p.bw[h.ID] >= v.Spec.BW)
}

// PowerIncrease returns how many watts h would draw above its draw at the
// start of the step if v were added to the plan's VMs there.
func (p *Plan) PowerIncrease(h *Host, v *VM) float64 {
	u := (p.sums(h).allocated + v.req) / h.total
	return h.Spec.Power.Watts(u) - h.Spec.Power.Watts(p.start[h.ID])
}

// UtilisationHistory returns h's utilisation at past steps, newest first,
// summed from the histories of the plan's VMs on it, without the trailing
// steps where it was zero.
func (p *Plan) UtilisationHistory(h *Host) []float64 {
	hist := make([]float64, historyLen)
	for _, v := range p.on[h.ID] {
		for i, u := range v.hist {
			hist[i] += u * v.Spec.MIPS / h.total
		}
	}
	n := len(hist)
	for n > 0 && hist[n-1] == 0 {
		n--
	}
	return hist[:n]
}

// MigrationSeconds returns how long moving the largest of the plan's VMs
// off h would take.
func (p *Plan) MigrationSeconds(h *Host) float64 {
	maxRAM := math.MinInt32
	for _, v := range p.on[h.ID] {
		maxRAM = max(maxRAM, v.Spec.RAM)
	}
	return float64(maxRAM) / (float64(h.Spec.BW) / (2 * 8000))
}
