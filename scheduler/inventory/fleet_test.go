package inventory

import (
	"math"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
	"github.com/guestdiag/guestdiag/scheduler/planner"
)

const gib = 1 << 30

func sample(host string, usedPct float64, vms ...protocol.VMUsage) protocol.HostUsage {
	return protocol.HostUsage{
		V: 1, Host: host, IntervalS: 10,
		CPU:    protocol.HostCPU{Count: 8, UsedPct: usedPct},
		Memory: protocol.HostMemory{TotalBytes: 32 * gib, AvailableBytes: 20 * gib},
		VMs:    vms,
	}
}

func TestBuild(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	f := NewFleet(Demand{})
	// web: 29 samples at 1 CPU and one spike at 6; the spike is not its
	// demand. A host at 50 % of 8 CPUs with VMs using 3 has 1 CPU of its own.
	for i := range 30 {
		web := 100.0
		if i == 7 {
			web = 600
		}
		f.Observe(sample("a", 50,
			protocol.VMUsage{VM: "web", CPUPct: web, RSSBytes: 4 * gib, MemoryBytes: 8 * gib},
			protocol.VMUsage{VM: "db", CPUPct: 200, RSSBytes: 6 * gib},
		), t0.Add(time.Duration(i)*10*time.Second))
	}
	last := t0.Add(290 * time.Second)
	f.Observe(sample("b", 10), last.Add(-time.Minute))
	f.ObserveHint(protocol.Hint{Host: "a", Kind: protocol.HintEvacuate, State: protocol.HintRaised})
	moved := map[string]time.Time{"db": t0}
	inv := f.Build(last, Declared{
		Default: Policy{CPU: planner.Band{Low: 10, High: 70}},
		Hosts:   map[string]Policy{"b": {VMs: planner.Band{High: 4}}},
		Chunks:  map[string]string{"db": "backend"},
	}, moved)

	if len(inv.Hosts) != 2 {
		t.Fatalf("got %d hosts, want 2", len(inv.Hosts))
	}
	a, b := inv.Hosts[0], inv.Hosts[1]
	if math.Abs(a.Other-1) > 1e-9 || a.CPU != 8 {
		t.Errorf("host a: got CPU %v other %v, want 8 and 1", a.CPU, a.Other)
	}
	// 12 GiB used, 10 of it resident in VMs: the host holds 2 of its 32.
	if a.Mem != 30*1024 {
		t.Errorf("host a: got %v MB for VMs, want %v", a.Mem, 30*1024)
	}
	if a.Policy.CPU != (planner.Band{Low: 0.8, High: 5.6}) {
		t.Errorf("host a: got CPU band %+v, want 10 %% and 70 %% of 8 CPUs", a.Policy.CPU)
	}
	if !a.Draining || a.Down {
		t.Errorf("host a: got draining %v down %v, want draining and up", a.Draining, a.Down)
	}
	if !b.Down {
		t.Error("host b, silent for 60 s at a 10 s interval, is not down")
	}
	if b.Policy.VMs.High != 4 || b.Policy.CPU.High != 0 {
		t.Errorf("host b: got policy %+v, want its own (VM count only)", b.Policy)
	}
	// In the order host a's sample lists them.
	want := []planner.VM{
		{Name: "web", Host: "a", CPU: 1, Mem: 8 * 1024},
		{Name: "db", Host: "a", CPU: 2, Mem: 6 * 1024, Chunk: "backend", Moved: t0},
	}
	if len(inv.VMs) != len(want) {
		t.Fatalf("got VMs %+v, want %+v", inv.VMs, want)
	}
	for i := range want {
		if inv.VMs[i] != want[i] {
			t.Errorf("got VM %+v, want %+v", inv.VMs[i], want[i])
		}
	}

	t.Run("a cleared evacuate hint ends draining", func(t *testing.T) {
		f.ObserveHint(protocol.Hint{Host: "a", Kind: protocol.HintEvacuate, State: protocol.HintCleared})
		if inv := f.Build(last, Declared{}, nil); inv.Hosts[0].Draining {
			t.Error("host a still draining")
		}
	})
	t.Run("a VM its host stops listing leaves the inventory", func(t *testing.T) {
		f.Observe(sample("a", 20, protocol.VMUsage{VM: "web", CPUPct: 100}), last.Add(10*time.Second))
		inv := f.Build(last.Add(10*time.Second), Declared{}, nil)
		if len(inv.VMs) != 1 || inv.VMs[0].Name != "web" {
			t.Errorf("got %+v, want only web", inv.VMs)
		}
		if host, _ := f.Seen("db"); host != "a" {
			t.Errorf("db's history went at once: got host %q", host)
		}
		later := last.Add(10 * time.Minute)
		f.Observe(sample("a", 20, protocol.VMUsage{VM: "web", CPUPct: 100}), later)
		f.Build(later, Declared{}, nil)
		if host, _ := f.Seen("db"); host != "" {
			t.Errorf("db, unlisted for 10 minutes, is still kept on %q", host)
		}
	})
}
