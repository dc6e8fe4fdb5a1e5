package dashboard

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/protocol"
)

// Placer is what the placement page needs of its Source: the placement
// view, and the drain marks that are the dashboard's only writes. It is
// kept apart from Source, and asked of the Source when the dashboard
// starts, so that a Source without it still serves every other page; the
// placement page then says it is not available.
type Placer interface {
	Placement() collector.Placement
	// Drain marks host for maintenance, by the user named, with a
	// reason; Undrain removes the mark.
	Drain(ctx context.Context, host, by, reason string) error
	Undrain(ctx context.Context, host, by string) error
}

// Bounds of the placement page; the JSON API has everything.
const (
	maxPlaceHosts   = 500
	maxHostHints    = 20
	maxHintSamples  = 20
	maxHintVMs      = 50
	maxPlans        = 20
	maxPlanMoves    = 200
	maxMoveVMs      = 50
	placementPeriod = 15 // seconds between refreshes when nothing changes
)

type placementView struct {
	Available bool
	Admin     bool
	// MaxReason is the collector's bound on a drain reason, for the form.
	MaxReason   int
	AsOf        string
	Hosts       []hostPlaceView
	HostsTotal  int
	Plans       []planView
	PlansTotal  int
	Drained     int
	HintsRaised int
}

type hostPlaceView struct {
	ID string
	// Host is the name as shown; Value is the name as the forms send it
	// back, path-escaped so that no control character a relay put in it
	// reaches the page raw (kvm-a stays kvm-a).
	Host, Value string
	Usage       bool
	CPU, Mem    string
	CPUs        int
	MemTotal    string
	UsageAge    string
	UsageAbs    string
	VMs         int
	Drain       *drainView
	Hints       []hintView
	HintsTotal  int
	UsageErrors []string
	FleetHref   string
}

type drainView struct {
	By, Reason, Since, SinceAbs string
}

type hintView struct {
	// ID keeps the hint's details open across live updates.
	ID              string
	Kind, Class     string
	Resource        string
	Summary         string
	Since, SinceAbs string
	Hits, Window    int
	Threshold       string
	Samples         []sampleView
	VMs             []linkView
	VMsTotal        int
	By, Reason      string
}

type sampleView struct {
	TS, CPU, Mem string
}

type linkView struct {
	Text, Href, Note string
}

type planView struct {
	ID, TS, TSAbs   string
	Scheduler, Mode string
	Moves           []moveView
	MovesTotal      int
	Unresolved      []linkView
}

type moveView struct {
	ID                 string
	VMs                []linkView
	VMsTotal           int
	Chunk              string
	From, To, Reason   string
	FromCPU, ToCPU     string
	FromMem, ToMem     string
	State, StateClass  string
	When, WhenAbs      string
	Duration, Downtime string
	Executor, Error    string
}

func (s *server) placement(w http.ResponseWriter, r *http.Request) {
	user, _ := r.Context().Value(ctxKey{}).(string)
	v := &placementView{Available: s.place != nil, Admin: s.auth.IsAdmin(user), MaxReason: collector.MaxDrainReason, AsOf: stamp(s.now())}
	if s.place != nil {
		s.fillPlacement(v, s.place.Placement())
	}
	s.render(w, r, http.StatusOK, "placement", page{Title: "Placement", Nav: "placement", Live: true, Every: placementPeriod, JSON: "/api/placement", Main: v})
}

func (s *server) fillPlacement(v *placementView, p collector.Placement) {
	now := s.now()
	hosts := slices.Clone(p.Hosts)
	// Hosts that need a look (drained, or with a hint) first, as the fleet
	// page puts problems first; then by name.
	slices.SortFunc(hosts, func(a, b collector.HostPlacement) int {
		return cmp.Or(cmp.Compare(quiet(&a), quiet(&b)), cmp.Compare(a.Host, b.Host))
	})
	v.HostsTotal = len(hosts)
	for i := range hosts {
		h := &hosts[i]
		if h.Drain != nil {
			v.Drained++
		}
		v.HintsRaised += len(h.Hints)
		if i < maxPlaceHosts {
			v.Hosts = append(v.Hosts, newHostPlaceView(i, h, now))
		}
	}
	v.PlansTotal = len(p.Plans)
	for i := range p.Plans[:min(len(p.Plans), maxPlans)] {
		v.Plans = append(v.Plans, newPlanView(&p.Plans[i], now))
	}
}

// quiet is 1 for a host without drain mark or hint, 0 for the others.
func quiet(h *collector.HostPlacement) int {
	if h.Drain != nil || len(h.Hints) > 0 {
		return 0
	}
	return 1
}

func newHostPlaceView(i int, h *collector.HostPlacement, now time.Time) hostPlaceView {
	hv := hostPlaceView{
		ID: "host-" + strconv.Itoa(i), Host: clip(h.Host, 256), Value: url.PathEscape(h.Host), VMs: h.VMs,
		FleetHref: "/?host=" + url.QueryEscape(h.Host), HintsTotal: len(h.Hints),
	}
	if u := h.Usage; u != nil {
		hv.Usage = true
		hv.CPU, hv.Mem = pct(u.CPU.UsedPct), pct(u.Memory.UsedPct)
		// A figure the relay could not gather is zero, not a reading.
		if u.Lacks("cpu") {
			hv.CPU = "?"
		}
		if u.Lacks("mem") {
			hv.Mem = "?"
		}
		hv.CPUs, hv.MemTotal = u.CPU.Count, bytesText(u.Memory.TotalBytes)
		hv.UsageAge, hv.UsageAbs = ago(now, u.TS), stamp(u.TS)
		for _, e := range u.Errors[:min(len(u.Errors), 5)] {
			hv.UsageErrors = append(hv.UsageErrors, clip(e, 300))
		}
	}
	if d := h.Drain; d != nil {
		hv.Drain = &drainView{By: clip(d.By, 128), Reason: clip(d.Reason, collector.MaxDrainReason), Since: ago(now, d.Since), SinceAbs: stamp(d.Since)}
	}
	for j := range h.Hints[:min(len(h.Hints), maxHostHints)] {
		v := newHintView(h.Host, &h.Hints[j], now)
		v.ID = hv.ID + "-hint-" + strconv.Itoa(j)
		hv.Hints = append(hv.Hints, v)
	}
	return hv
}

func newHintView(host string, h *protocol.Hint, now time.Time) hintView {
	e := &h.Evidence
	v := hintView{
		Kind: clip(string(h.Kind), 32), Class: hintClass(h.Kind), Resource: clip(h.Resource, 32),
		Summary: clip(h.Summary, 500), Since: ago(now, cmp.Or(h.Since, h.TS)), SinceAbs: stamp(cmp.Or(h.Since, h.TS)),
		Hits: e.Hits, Window: e.Window, By: clip(e.By, 128), Reason: clip(e.Reason, collector.MaxDrainReason),
		VMsTotal: len(e.VMs),
	}
	if e.ThresholdPct != 0 {
		v.Threshold = pct(e.ThresholdPct)
	}
	// The newest samples are the ones that decided.
	samples := e.Samples[max(0, len(e.Samples)-maxHintSamples):]
	for _, s := range samples {
		v.Samples = append(v.Samples, sampleView{TS: s.TS.UTC().Format("15:04:05"), CPU: pct(s.CPUPct), Mem: pct(s.MemPct)})
	}
	for _, g := range e.VMs[:min(len(e.VMs), maxHintVMs)] {
		v.VMs = append(v.VMs, linkView{Text: clip(g.VM, 256), Href: vmHref(host, g.VM), Note: clip(g.Code, 64)})
	}
	return v
}

func newPlanView(p *collector.PlanRecord, now time.Time) planView {
	v := planView{
		ID: clip(p.Plan.ID, 128), TS: ago(now, p.Plan.TS), TSAbs: stamp(p.Plan.TS),
		Scheduler: clip(p.Plan.Scheduler, 128), Mode: clip(p.Plan.Mode, 16), MovesTotal: len(p.Plan.Moves),
	}
	for _, u := range p.Plan.Unresolved[:min(len(p.Plan.Unresolved), maxPlanMoves)] {
		v.Unresolved = append(v.Unresolved, linkView{Text: clip(u.Host, 256), Note: clip(u.Reason, 500)})
	}
	for i := range p.Plan.Moves[:min(len(p.Plan.Moves), maxPlanMoves)] {
		m := &p.Plan.Moves[i]
		o, ok := p.Outcomes[m.ID]
		v.Moves = append(v.Moves, newMoveView(m, o, ok, p.Plan.Mode, now))
	}
	return v
}

func newMoveView(m *protocol.PlanMove, o protocol.MoveOutcome, ok bool, mode string, now time.Time) moveView {
	v := moveView{
		ID: clip(m.ID, 160), Chunk: clip(m.Chunk, 256), From: clip(m.From, 256), To: clip(m.To, 256),
		Reason: clip(m.Reason, 500), VMsTotal: len(m.VMs),
		FromCPU: pct(m.FromCPUPct), ToCPU: pct(m.ToCPUPct), FromMem: pct(m.FromMemPct), ToMem: pct(m.ToMemPct),
	}
	// A VM's page is on the host it is on: the target once the move is
	// done, the source before.
	at := m.From
	switch {
	case ok:
		v.State, v.StateClass = clip(o.State, 16), moveClass(o.State)
		v.When, v.WhenAbs = ago(now, o.TS), stamp(o.TS)
		v.Executor, v.Error = clip(o.Executor, 64), clip(o.Error, 1000)
		if o.DurationMS > 0 {
			v.Duration = (time.Duration(o.DurationMS) * time.Millisecond).String()
		}
		if o.DowntimeMS > 0 {
			v.Downtime = (time.Duration(o.DowntimeMS) * time.Millisecond).String()
		}
		if o.State == protocol.MoveDone {
			at = m.To
		}
	case mode == protocol.ModeAdvisory:
		v.State, v.StateClass = "advisory", "st-none"
	default:
		v.State, v.StateClass = "pending", "st-none"
	}
	for _, vm := range m.VMs[:min(len(m.VMs), maxMoveVMs)] {
		v.VMs = append(v.VMs, linkView{Text: clip(vm, 256), Href: vmHref(at, vm)})
	}
	return v
}

// hintClass colours a hint by how urgent it is; a kind a relay or a newer
// collector invented is unknown.
func hintClass(k protocol.HintKind) string {
	switch k {
	case protocol.HintOverloaded, protocol.HintEvacuate:
		return "st-crit"
	case protocol.HintContention:
		return "st-warn"
	case protocol.HintUnderloaded:
		return "st-info"
	}
	return "st-unknown"
}

func moveClass(state string) string {
	switch state {
	case protocol.MoveDone:
		return "st-ok"
	case protocol.MoveFailed:
		return "st-crit"
	case protocol.MoveStarted:
		return "st-warn"
	}
	return "st-unknown"
}

func pct(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) + " %" }

func bytesText(b uint64) string {
	const gib = 1 << 30
	if b >= gib {
		return fmt.Sprintf("%.1f GiB", float64(b)/gib)
	}
	return fmt.Sprintf("%d MiB", b>>20)
}
