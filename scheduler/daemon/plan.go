package daemon

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/protocol"
	"github.com/guestdiag/guestdiag/scheduler/inventory"
	"github.com/guestdiag/guestdiag/scheduler/planner"
)

// planCycle plans one cycle: the inventory with each VM's record (a VM
// held after a failed move counts as cooling until its hold ends), then
// the planner, then without the moves of held VMs, which the planner
// still makes off a host that must be emptied. stored gives when the
// server stored a VM's record, by the server's clock (zero when unknown);
// nil knows none.
func planCycle(fleet *inventory.Fleet, f *File, derived map[string]string, recs map[string]VMRecord, stored func(vm string) time.Time, now time.Time) (planner.Inventory, planner.Plan) {
	cool := time.Duration(f.Planner.Cooldown)
	moved := make(map[string]time.Time, len(recs))
	for vm, r := range recs {
		t := r.Moved
		// The planner knows only "moved at"; a hold is a move that far
		// ahead, less the cool-down it adds itself.
		if h := r.HoldUntil.Add(-cool); r.HoldUntil.After(now) && h.After(t) {
			t = h
		}
		if !t.IsZero() {
			moved[vm] = t
		}
	}
	inv, left := fleet.Build(now, f.Declared(derived), moved)
	// A VM this scheduler moved after its host last reported is where the
	// move put it: planning from the older sample would relieve a hotspot
	// already relieved, with a second VM. "After" compares the server's
	// times of the record and the sample: r.Moved is the scheduler's
	// clock, which may be skewed from the stream's by any amount.
	for i := range inv.VMs {
		v := &inv.VMs[i]
		r, ok := recs[v.Name]
		if !ok || r.To == "" || r.To == v.Host || stored == nil || !hasHost(inv, r.To) {
			continue
		}
		if _, at := fleet.Seen(v.Name); stored(v.Name).After(at) {
			v.Host = r.To
		}
	}
	p := planner.Make(inv, f.Options(now))
	var keep []planner.Move
	for _, m := range p.Moves {
		held := ""
		for _, vm := range m.VMs {
			if r, ok := recs[vm]; ok && r.HoldUntil.After(now) {
				held = vm
				break
			}
		}
		if held == "" {
			keep = append(keep, m)
			continue
		}
		r := recs[held]
		why := fmt.Sprintf("after a failed move (%s)", r.LastError)
		if r.inFlightHold {
			why = "while " + r.LastError
		}
		p.Unresolved = append(p.Unresolved, planner.Problem{
			Host:   m.From,
			Reason: fmt.Sprintf("%s waits until %s %s", held, r.HoldUntil.UTC().Format(time.RFC3339), why),
		})
	}
	p.Moves = keep
	p.Unresolved = append(p.Unresolved, left...)
	return inv, p
}

// storedTimes returns when kv's server stored each VM's record, asked
// only for the few VMs whose record names a host their sample does not.
func storedTimes(ctx context.Context, kv jetstream.KeyValue) func(vm string) time.Time {
	return func(vm string) time.Time {
		e, err := kv.Get(ctx, vmKey(vm))
		if err != nil {
			return time.Time{}
		}
		return e.Created()
	}
}

// withoutSources drops the moves off the hosts in unknown, listing each
// such host as unresolved with its reason, once.
func withoutSources(p planner.Plan, unknown map[string]string) planner.Plan {
	if len(unknown) == 0 {
		return p
	}
	var keep []planner.Move
	dropped := map[string]bool{}
	for _, m := range p.Moves {
		reason, ok := unknown[m.From]
		if !ok {
			keep = append(keep, m)
			continue
		}
		if !dropped[m.From] {
			dropped[m.From] = true
			p.Unresolved = append(p.Unresolved, planner.Problem{Host: m.From, Reason: reason})
		}
	}
	p.Moves = keep
	return p
}

func hasHost(inv planner.Inventory, name string) bool {
	return slices.ContainsFunc(inv.Hosts, func(h planner.Host) bool { return h.Name == name })
}

// toProtocol turns a plan into its message: predicted use in percent of
// each host's capacity (the planner gives CPU as a share, memory in MB).
func toProtocol(inv planner.Inventory, p planner.Plan, id, name, mode string, now time.Time) protocol.Plan {
	hosts := map[string]planner.Host{}
	for _, h := range inv.Hosts {
		hosts[h.Name] = h
	}
	pct := func(x, capacity float64) float64 {
		if capacity <= 0 {
			return 0
		}
		return round1(100 * x / capacity)
	}
	out := protocol.Plan{V: 1, Kind: protocol.PlanKindPlan, ID: id, TS: now.UTC(), Scheduler: name, Mode: mode, Moves: []protocol.PlanMove{}}
	for i, m := range p.Moves {
		from, to := hosts[m.From], hosts[m.To]
		out.Moves = append(out.Moves, protocol.PlanMove{
			ID: id + "/" + strconv.Itoa(i+1), VMs: m.VMs, Chunk: m.Chunk, From: m.From, To: m.To, Reason: m.Reason,
			FromCPUPct: round1(100 * m.FromCPU), ToCPUPct: round1(100 * m.ToCPU),
			FromMemPct: pct(m.FromMem, from.Mem), ToMemPct: pct(m.ToMem, to.Mem),
		})
	}
	for _, u := range p.Unresolved {
		out.Unresolved = append(out.Unresolved, protocol.PlanProblem{Host: u.Host, Reason: u.Reason})
	}
	return out
}

func round1(x float64) float64 { return float64(int64(x*10+0.5)) / 10 }

// sameContent says whether two plans would tell an admin the same thing:
// equal moves and unresolved hosts, whatever their ids and times.
func sameContent(a, b protocol.Plan) bool {
	if len(a.Moves) != len(b.Moves) || !slices.Equal(a.Unresolved, b.Unresolved) {
		return false
	}
	for i := range a.Moves {
		x, y := a.Moves[i], b.Moves[i]
		x.ID, y.ID = "", ""
		if !slices.Equal(x.VMs, y.VMs) || x.Chunk != y.Chunk || x.From != y.From || x.To != y.To || x.Reason != y.Reason {
			return false
		}
	}
	return true
}

// Print writes a plan for a terminal. Names come from QEMU command lines
// and the config and are quoted when they hold anything unprintable.
func Print(w io.Writer, p protocol.Plan) {
	fmt.Fprintf(w, "plan %s at %s (%s, %d moves)\n", Safe(p.ID), p.TS.Format(time.RFC3339), p.Mode, len(p.Moves))
	for _, m := range p.Moves {
		vms := make([]string, len(m.VMs))
		for i, v := range m.VMs {
			vms[i] = Safe(v)
		}
		what := strings.Join(vms, ",")
		if m.Chunk != "" {
			what = "chunk " + Safe(m.Chunk) + " (" + what + ")"
		}
		fmt.Fprintf(w, "  move %s: %s -> %s  cpu after %.1f%% / %.1f%%  mem after %.1f%% / %.1f%%  (%s)\n",
			what, Safe(m.From), Safe(m.To), m.FromCPUPct, m.ToCPUPct, m.FromMemPct, m.ToMemPct, Safe(m.Reason))
	}
	for _, u := range p.Unresolved {
		fmt.Fprintf(w, "  unresolved %s: %s\n", Safe(u.Host), Safe(u.Reason))
	}
}

// Safe returns a name as Print writes it: as it is when printable, else
// quoted with Go escapes.
func Safe(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) || r == '"' {
			return strconv.QuoteToASCII(s)
		}
	}
	return s
}
