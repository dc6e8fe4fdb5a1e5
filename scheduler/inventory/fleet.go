package inventory

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
)

// DownAfter is how many publishing intervals a host may stay silent before
// it is Down: one lost sample is noise, three are a host or relay gone.
const DownAfter = 3

// defaultInterval stands in for a sample that does not say its interval.
const defaultInterval = 10 * time.Second

// Demand says how a VM's CPU demand is read from its history: the given
// percentile of the samples of the last Window. The defaults (80th
// percentile of 5 minutes, 30 samples at 10 s) ignore a single spike, which
// would otherwise make a VM worth moving for one sample, yet count load
// that holds for a minute of the five.
type Demand struct {
	Window     time.Duration
	Percentile float64
}

// DefaultDemand is the 80th percentile of the last 5 minutes.
var DefaultDemand = Demand{Window: 5 * time.Minute, Percentile: 80}

// Fleet folds host usage samples and hints into what Build needs. It is
// safe for concurrent use: a consumer feeds it while the daemon plans.
type Fleet struct {
	demand Demand

	mu     sync.Mutex
	hosts  map[string]*host
	vms    map[string]*vm
	drain  map[string]bool
	pruned time.Time
}

type host struct {
	last protocol.HostUsage
	at   time.Time // when the server stored the last sample
}

type vm struct {
	host    string
	at      time.Time // of the sample that last placed it
	usage   protocol.VMUsage
	history []point
}

// point is one CPU sample, 16 bytes: 200,000 VMs keep 30 each.
type point struct {
	at  int64   // Unix nanoseconds
	cpu float64 // cores
}

// NewFleet returns an empty fleet that reads demand as d says; a zero field
// takes DefaultDemand's.
func NewFleet(d Demand) *Fleet {
	if d.Window <= 0 {
		d.Window = DefaultDemand.Window
	}
	if d.Percentile <= 0 || d.Percentile > 100 {
		d.Percentile = DefaultDemand.Percentile
	}
	return &Fleet{demand: d, hosts: map[string]*host{}, vms: map[string]*vm{}, drain: map[string]bool{}}
}

// Observe records one host usage sample stored at at (the stream's time,
// so that hosts with skewed clocks compare). A sample older than the one
// held for its host is ignored except for the VMs' history.
func (f *Fleet) Observe(u protocol.HostUsage, at time.Time) {
	if u.Host == "" {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	h := f.hosts[u.Host]
	if h == nil {
		h = &host{}
		f.hosts[u.Host] = h
	}
	newest := !at.Before(h.at)
	if newest {
		h.last, h.at = u, at
	}
	for _, x := range u.VMs {
		if x.VM == "" {
			continue
		}
		v := f.vms[x.VM]
		if v == nil {
			v = &vm{}
			f.vms[x.VM] = v
		}
		// Two hosts list a VM while it migrates; the newer sample wins.
		if !at.Before(v.at) {
			v.host, v.at, v.usage = u.Host, at, x
		}
		v.history = append(v.history, point{at: at.UnixNano(), cpu: x.CPUPct / 100})
		// Samples come in order but for a replay racing the live feed.
		if n := len(v.history); n > 1 && v.history[n-1].at < v.history[n-2].at {
			slices.SortStableFunc(v.history, func(a, b point) int { return cmp.Compare(a.at, b.at) })
		}
		v.history = trim(v.history, v.history[len(v.history)-1].at-int64(f.demand.Window))
	}
}

func trim(ps []point, from int64) []point {
	i := 0
	for i < len(ps)-1 && ps[i].at < from {
		i++
	}
	return ps[i:]
}

// ObserveHint records an evacuate hint: raised makes its host Draining,
// cleared ends it. Other kinds are the planner's own business: it reads
// load from the samples, not from hints.
func (f *Fleet) ObserveHint(h protocol.Hint) {
	if h.Kind != protocol.HintEvacuate || h.Host == "" {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch h.State {
	case protocol.HintRaised:
		f.drain[h.Host] = true
	case protocol.HintCleared:
		delete(f.drain, h.Host)
	}
}

// HostInfo is what the fleet knows of one host, for status and the plan
// command.
type HostInfo struct {
	Name     string
	Seen     time.Time
	Down     bool
	Draining bool
	CPUs     int
	UsedPct  float64
	MemPct   float64
	VMs      int
}

// Hosts lists the hosts seen, by name.
func (f *Fleet) Hosts(now time.Time) []HostInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []HostInfo
	for name, h := range f.hosts {
		out = append(out, HostInfo{
			Name: name, Seen: h.at, Down: down(h, now), Draining: f.drain[name],
			CPUs: h.last.CPU.Count, UsedPct: h.last.CPU.UsedPct, MemPct: h.last.Memory.UsedPct, VMs: len(h.last.VMs),
		})
	}
	slices.SortFunc(out, func(a, b HostInfo) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

func down(h *host, now time.Time) bool {
	iv := time.Duration(h.last.IntervalS) * time.Second
	if iv <= 0 {
		iv = defaultInterval
	}
	// A host that cannot say its size can be neither source nor target.
	return now.Sub(h.at) > DownAfter*iv || h.last.CPU.Count <= 0 || h.last.Memory.TotalBytes == 0
}

// Seen returns the host of a VM's newest sample and when it was stored.
func (f *Fleet) Seen(name string) (host string, at time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if v := f.vms[name]; v != nil {
		return v.host, v.at
	}
	return "", time.Time{}
}

// demandOf is vm's CPU demand in cores at now: the configured percentile of
// its samples in the window, or its last sample if none is that recent.
// scratch is reused across VMs: a cycle reads 200,000 histories.
func (f *Fleet) demandOf(v *vm, now time.Time, scratch *[]float64) float64 {
	from := now.Add(-f.demand.Window).UnixNano()
	xs := (*scratch)[:0]
	defer func() { *scratch = xs }()
	for _, p := range v.history {
		if p.at >= from {
			xs = append(xs, p.cpu)
		}
	}
	if len(xs) == 0 {
		return v.usage.CPUPct / 100
	}
	return percentile(xs, f.demand.Percentile)
}

// percentile is the nearest-rank percentile: a value some sample had, so a
// VM is never said to need more than it ever used.
func percentile(xs []float64, p float64) float64 {
	slices.Sort(xs)
	rank := int(float64(len(xs))*p/100+0.999999) - 1
	return xs[max(0, min(rank, len(xs)-1))]
}
