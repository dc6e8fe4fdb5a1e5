package sim

import "math"

// HostSpec describes a physical host. BW is in kbit/s, as CloudSim counts.
type HostSpec struct {
	PEMIPS float64 // MIPS of one core
	PEs    int
	RAM    int // MB
	BW     int
	Power  *PowerModel
}

// VMSpec describes a VM type: one virtual core of MIPS, RAM in MB.
type VMSpec struct {
	MIPS float64
	RAM  int
	BW   int
}

// Setup is the data centre a run replays traces on.
type Setup struct {
	Hosts []HostSpec
	// VMTypes are handed out in equal blocks in trace order: VM i gets
	// type i / ceil(n / len(VMTypes)), as CloudSim's examples do.
	VMTypes []VMSpec
	Step    float64 // seconds between samples
}

// PlanetLabSetup is the set-up of Beloglazov and Buyya's PlanetLab experiments
// (CCPE 2012) and of the reference figures: 800 hosts, half HP ProLiant
// ML110 G4 (2 × 1860 MIPS) and half G5 (2 × 2660 MIPS), 4 GB and 1 Gbit/s
// each; four EC2-like VM types; 300 s steps.
func PlanetLabSetup() Setup {
	hosts := make([]HostSpec, 800)
	for i := range hosts {
		if i%2 == 0 {
			hosts[i] = HostSpec{PEMIPS: 1860, PEs: 2, RAM: 4096, BW: 1000000, Power: &HPProLiantG4}
		} else {
			hosts[i] = HostSpec{PEMIPS: 2660, PEs: 2, RAM: 4096, BW: 1000000, Power: &HPProLiantG5}
		}
	}
	return Setup{
		Hosts: hosts,
		VMTypes: []VMSpec{
			{MIPS: 2500, RAM: 870, BW: 100000},
			{MIPS: 2000, RAM: 1740, BW: 100000},
			{MIPS: 1000, RAM: 1740, BW: 100000},
			{MIPS: 500, RAM: 613, BW: 100000},
		},
		Step: 300,
	}
}

// VM is one traced VM in a run.
type VM struct {
	ID    int
	Name  string
	Spec  VMSpec
	Chunk int // VMs with the same non-zero chunk must share a host

	trace []float64
	host  *Host // where the VM runs (CloudSim's VM table)
	inMig bool
	req   float64 // requested MIPS at the current time

	// hist holds the utilisation recorded at each step, newest first, at
	// most historyLen values (CloudSim's PowerVm history).
	hist     []float64
	recorded float64 // when hist was last added to

	acc vmAcc
}

const historyLen = 30

// Requested returns the MIPS the VM asks for now.
func (v *VM) Requested() float64 { return v.req }

// Host returns the host the VM runs on.
func (v *VM) Host() *Host { return v.host }

// History returns the utilisation of the VM at past steps, newest first.
func (v *VM) History() []float64 { return v.hist }

// utilAt interpolates the trace linearly between samples; past the last
// sample it stays at the last one, as CloudSim's trace reader does.
func (v *VM) utilAt(t, step float64) float64 {
	i := t / step
	lo := math.Floor(i)
	k := int(lo)
	// CloudSim repeats the last sample past the end of the trace.
	at := func(k int) float64 {
		return v.trace[min(k, len(v.trace)-1)]
	}
	if lo == i {
		return at(k)
	}
	u0, u1 := at(k), at(k+1)
	return u0 + (u1-u0)/step*(t-lo*step)
}

// Host is one physical host in a run.
type Host struct {
	ID    int
	Spec  HostSpec
	total float64

	vms   []*VM // CloudSim's VM list, in arrival order
	migIn []*VM // VMs on their way here
	alloc []float64

	util float64 // allocated MIPS at the last update
	req  float64 // requested MIPS at the last update

	acc hostAcc
}

// TotalMIPS returns the host's capacity.
func (h *Host) TotalMIPS() float64 { return h.total }

// Utilisation returns the share of the host's capacity allocated at the
// last update (CloudSim's getUtilizationOfCpu).
func (h *Host) Utilisation() float64 {
	u := h.util / h.total
	if u > 1 && u < 1.01 {
		u = 1
	}
	return u
}

func (h *Host) migratingIn(v *VM) bool {
	for _, m := range h.migIn {
		if m == v {
			return true
		}
	}
	return false
}

// share mirrors CloudSim's VmSchedulerTimeSharedOverSubscription after a
// host has reallocated every VM: each VM gets what it asks for, capped at
// one core; a VM migrating in costs the target a tenth of its demand, one
// migrating out runs at 90 %; if the demands exceed the host, everything is
// scaled down to fit and rounded down to whole MIPS. It returns the MIPS
// still free.
func (h *Host) share(vms []*VM, alloc []float64, migIn func(*VM) bool) float64 {
	avail := h.total
	over := false
	sum := 0.0
	for i, v := range vms {
		c := math.Min(v.req, h.Spec.PEMIPS)
		d := c
		in := migIn != nil && migIn(v)
		if in {
			d *= 0.1
		}
		sum += d
		if !over && avail >= d {
			switch {
			case in:
				alloc[i] = c * 0.1
			case v.inMig:
				alloc[i] = c * 0.9
			default:
				alloc[i] = c
			}
			avail -= d
			continue
		}
		over = true
	}
	if !over {
		return avail
	}
	s := h.total / sum
	for i, v := range vms {
		c := math.Min(v.req, h.Spec.PEMIPS)
		switch {
		case migIn != nil && migIn(v):
			alloc[i] = math.Floor(c * 0.1 * s)
		case v.inMig:
			alloc[i] = math.Floor(c * s * 0.9)
		default:
			alloc[i] = math.Floor(c * s)
		}
	}
	return 0
}

// update recomputes the host's allocation at time now and records the
// state of the host and of its VMs for the SLA metrics.
func (h *Host) update(now float64) {
	if cap(h.alloc) < len(h.vms) {
		h.alloc = make([]float64, len(h.vms), 2*len(h.vms))
	}
	h.alloc = h.alloc[:len(h.vms)]
	h.share(h.vms, h.alloc, h.migratingIn)
	util, req := 0.0, 0.0
	for i, v := range h.vms {
		a := h.alloc[i]
		if !h.migratingIn(v) {
			v.acc.record(now, a, v.req, v.inMig)
			if v.inMig {
				a /= 0.9 // the host still carries all of a VM migrating out
			}
		}
		util += a
		req += v.req
	}
	h.util, h.req = util, req
	h.acc.record(now, util, req)
}

// vmAcc accumulates a VM's requested MIPS and what migrations withheld from
// it, from state entries taken at each update; an entry replaces one taken
// at the same time.
type vmAcc struct {
	started             bool
	t, alloc, req       float64
	mig                 bool
	requested, migShort float64 // MIPS-seconds
}

func (a *vmAcc) record(t, alloc, req float64, mig bool) {
	if a.started && t > a.t {
		dt := t - a.t
		a.requested += a.req * dt
		if a.alloc < a.req && a.mig {
			a.migShort += (a.req - a.alloc) * dt
		}
	}
	a.started = true
	a.t, a.alloc, a.req, a.mig = t, alloc, req, mig
}

// hostAcc accumulates a host's active time and the part of it during which
// it could not give its VMs what they asked for (SLATAH's numerator).
type hostAcc struct {
	started            bool
	t, alloc, req      float64
	active, overloaded float64 // seconds
}

func (a *hostAcc) record(t, alloc, req float64) {
	if a.started && t > a.t && a.alloc > 0 {
		dt := t - a.t
		a.active += dt
		if a.alloc < a.req {
			a.overloaded += dt
		}
	}
	a.started = true
	a.t, a.alloc, a.req = t, alloc, req
}
