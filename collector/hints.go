package collector

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
)

// Hint defaults (docs/scheduler.md).
const (
	DefaultCPUHighPct = 85
	DefaultCPULowPct  = 20
	DefaultMemHighPct = 90
	// DefaultHintHits of the last DefaultHintWindow samples must cross a
	// threshold: with the relays' 10 s interval a hint needs 30 s of load
	// within 50 s, so one busy sample neither raises nor clears one.
	DefaultHintHits   = 3
	DefaultHintWindow = 5
	// DefaultContentionVMs guests reporting res.steal_high make a host
	// contended: one could be that guest's own noisy vCPU; two are the
	// host.
	DefaultContentionVMs = 2
)

// maxHintWindow bounds the window so a host record stays small.
const maxHintWindow = 60

// maxHintVMs bounds the guests a hint's evidence names.
const maxHintVMs = 32

// Finding codes of the resources check the hints read (docs/checks.md).
const (
	resourcesCheck = "resources"
	codeCPUHigh    = "res.cpu_high"
	codeStealHigh  = "res.steal_high"
	codeMemoryHigh = "res.memory_high"
	codeSwapHigh   = "res.swap_high"
)

// Thresholds are one host's hint thresholds in percent; a zero field
// takes the fleet's.
type Thresholds struct {
	CPUHighPct float64
	CPULowPct  float64
	MemHighPct float64
}

// HintConfig says when the collector raises placement hints.
type HintConfig struct {
	// Thresholds are the fleet's; Hosts overrides them per host name.
	Thresholds
	Hosts map[string]Thresholds
	// Hits of the last Window samples of a figure must cross its
	// threshold for overloaded and underloaded.
	Hits, Window int
	// ContentionVMs is how many guests on one host must report
	// res.steal_high for contention.
	ContentionVMs int
}

func (h HintConfig) withDefaults() HintConfig {
	h.Thresholds = h.Thresholds.or(Thresholds{CPUHighPct: DefaultCPUHighPct, CPULowPct: DefaultCPULowPct, MemHighPct: DefaultMemHighPct})
	if h.Window <= 0 {
		h.Window = DefaultHintWindow
	}
	h.Window = min(h.Window, maxHintWindow)
	if h.Hits <= 0 {
		h.Hits = min(DefaultHintHits, h.Window)
	}
	h.Hits = min(h.Hits, h.Window)
	if h.ContentionVMs <= 0 {
		h.ContentionVMs = DefaultContentionVMs
	}
	return h
}

// For returns host's thresholds: its override's fields, else the fleet's.
func (h HintConfig) For(host string) Thresholds {
	return h.Hosts[host].or(h.Thresholds)
}

func (t Thresholds) or(d Thresholds) Thresholds {
	if t.CPUHighPct <= 0 {
		t.CPUHighPct = d.CPUHighPct
	}
	if t.CPULowPct <= 0 {
		t.CPULowPct = d.CPULowPct
	}
	if t.MemHighPct <= 0 {
		t.MemHighPct = d.MemHighPct
	}
	return t
}

// Validate reports a configuration whose hints could never make sense.
func (h HintConfig) Validate() error {
	check := func(where string, t Thresholds) error {
		for _, p := range []float64{t.CPUHighPct, t.CPULowPct, t.MemHighPct} {
			if p < 0 || p > 100 {
				return fmt.Errorf("%s: threshold %g%% is not within 0 to 100", where, p)
			}
		}
		if t.CPULowPct > 0 && t.CPUHighPct > 0 && t.CPULowPct >= t.CPUHighPct {
			return fmt.Errorf("%s: cpu low %g%% is not below cpu high %g%%", where, t.CPULowPct, t.CPUHighPct)
		}
		return nil
	}
	if err := check("hint thresholds", h.Thresholds); err != nil {
		return err
	}
	for host, t := range h.Hosts {
		if err := validHostName(host); err != nil {
			return fmt.Errorf("hint thresholds of host %q: %w", host, err)
		}
		if err := check(fmt.Sprintf("hint thresholds of host %q", host), t.or(h.Thresholds)); err != nil {
			return err
		}
	}
	if h.Hits < 0 || h.Window < 0 || h.Hits > h.Window || h.Window > maxHintWindow {
		return fmt.Errorf("hint window: %d of %d samples; want 1 ≤ k ≤ n ≤ %d", h.Hits, h.Window, maxHintWindow)
	}
	return nil
}

// hintKey names a hint within its host: the kind, and the resource for
// the kinds that have one, so that CPU and memory overload come and go
// separately.
func hintKey(kind protocol.HintKind, resource string) string {
	if resource == "" {
		return string(kind)
	}
	return string(kind) + "/" + resource
}

// guestSignals are the findings of one host's guests that hints quote.
type guestSignals struct {
	vms      int
	steal    []protocol.HintVM // res.steal_high
	pressure []protocol.HintVM // res.cpu_high, res.memory_high, res.swap_high
}

// signalsOf adds v's newest resources result to s.
func (s *guestSignals) add(v *VM) {
	s.vms++
	ch := v.Checks[resourcesCheck]
	if ch == nil || ch.Kind != protocol.KindResult {
		return
	}
	for _, f := range ch.Findings {
		switch f.Code {
		case codeStealHigh:
			s.steal = append(s.steal, protocol.HintVM{VM: v.Name, Code: f.Code})
		case codeCPUHigh, codeMemoryHigh, codeSwapHigh:
			s.pressure = append(s.pressure, protocol.HintVM{VM: v.Name, Code: f.Code})
		}
	}
}

func (s *guestSignals) sort() {
	order := func(a, b protocol.HintVM) int { return strings.Compare(a.VM+"\x00"+a.Code, b.VM+"\x00"+b.Code) }
	slices.SortFunc(s.steal, order)
	slices.SortFunc(s.pressure, order)
}

// hintInput is what one evaluation of a host's hints looks at.
type hintInput struct {
	cfg     HintConfig
	now     time.Time
	cpu     []protocol.HostSample // the CPU window, oldest first
	mem     []protocol.HostSample
	cpuNew  bool // the newest sample carried the CPU figure
	memNew  bool
	signals guestSignals
}

// evaluate changes the hints of rec that in says started or stopped to
// hold, and returns the transitions, raised and cleared. A figure the
// newest sample lacks changes no hint on it: a relay that cannot read
// /proc/stat is no evidence that the host is idle or busy.
func evaluate(rec *hostRecord, in hintInput) []protocol.Hint {
	th := in.cfg.For(rec.Host)
	var out []protocol.Hint
	// raise makes the hint as the evidence stands now.
	set := func(kind protocol.HintKind, resource string, holds bool, raise func() protocol.Hint) {
		key := hintKey(kind, resource)
		cur, raised := rec.Hints[key]
		switch {
		case holds && !raised:
			h := raise()
			h.V, h.Host, h.Kind, h.Resource, h.State, h.TS = protocol.Version, rec.Host, kind, resource, protocol.HintRaised, in.now
			if h.Since.IsZero() {
				h.Since = in.now
			}
			if rec.Hints == nil {
				rec.Hints = make(map[string]protocol.Hint)
			}
			rec.Hints[key] = h
			out = append(out, h)
		case !holds && raised:
			// The evidence of a clear is what ended the condition.
			h := raise()
			h.V, h.Host, h.Kind, h.Resource, h.State, h.TS, h.Since = protocol.Version, rec.Host, kind, resource, protocol.HintCleared, in.now, cur.Since
			h.Summary = "cleared: " + h.Summary
			delete(rec.Hints, key)
			out = append(out, h)
		}
	}
	window := func(samples []protocol.HostSample, resource string, pct float64, over bool) int {
		hits := 0
		for _, s := range samples {
			v := s.CPUPct
			if resource == "memory" {
				v = s.MemPct
			}
			if over && v > pct || !over && v < pct {
				hits++
			}
		}
		return hits
	}
	// evidence is built only for a transition: most samples make none.
	evidence := func(samples []protocol.HostSample, hits int, pct float64) protocol.HintEvidence {
		return protocol.HintEvidence{Samples: slices.Clone(samples), Hits: hits, Window: in.cfg.Window, ThresholdPct: pct}
	}
	overloaded := func(samples []protocol.HostSample, resource string, pct float64) {
		hits := window(samples, resource, pct, true)
		set(protocol.HintOverloaded, resource, hits >= in.cfg.Hits, func() protocol.Hint {
			ev := evidence(samples, hits, pct)
			ev.VMs = clipVMs(in.signals.pressure)
			return protocol.Hint{Summary: fmt.Sprintf("%s above %g%% in %d of the last %d samples", resource, pct, hits, in.cfg.Window), Evidence: ev}
		})
	}
	if in.cpuNew {
		overloaded(in.cpu, "cpu", th.CPUHighPct)
		hits := window(in.cpu, "cpu", th.CPULowPct, false)
		set(protocol.HintUnderloaded, "cpu", hits >= in.cfg.Hits, func() protocol.Hint {
			return protocol.Hint{Summary: fmt.Sprintf("cpu below %g%% in %d of the last %d samples: a consolidation candidate", th.CPULowPct, hits, in.cfg.Window), Evidence: evidence(in.cpu, hits, th.CPULowPct)}
		})
	}
	if in.memNew {
		overloaded(in.mem, "memory", th.MemHighPct)
	}
	steal := in.signals.steal
	set(protocol.HintContention, "", distinctVMs(steal) >= in.cfg.ContentionVMs, func() protocol.Hint {
		return protocol.Hint{Summary: fmt.Sprintf("%d guests report CPU steal (res.steal_high)", distinctVMs(steal)), Evidence: protocol.HintEvidence{VMs: clipVMs(steal)}}
	})
	return out
}

func distinctVMs(vms []protocol.HintVM) int {
	n := 0
	for i, v := range vms {
		if i == 0 || vms[i-1].VM != v.VM {
			n++
		}
	}
	return n
}

func clipVMs(vms []protocol.HintVM) []protocol.HintVM {
	return slices.Clone(vms[:min(len(vms), maxHintVMs)])
}
