package daemon

import (
	"strings"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
	"github.com/guestdiag/guestdiag/scheduler/inventory"
)

func TestAHeldVMStaysOnADrainingHost(t *testing.T) {
	now := time.Now()
	fleet := inventory.NewFleet(inventory.Demand{})
	samples := []protocol.HostUsage{
		{V: 1, Host: "a", IntervalS: 10, CPU: protocol.HostCPU{Count: 8, UsedPct: 30},
			Memory: protocol.HostMemory{TotalBytes: 32 * gib, AvailableBytes: 28 * gib},
			VMs:    []protocol.VMUsage{{VM: "stuck", CPUPct: 100, MemoryBytes: gib}, {VM: "free", CPUPct: 100, MemoryBytes: gib}}},
		{V: 1, Host: "b", IntervalS: 10, CPU: protocol.HostCPU{Count: 8, UsedPct: 5},
			Memory: protocol.HostMemory{TotalBytes: 32 * gib, AvailableBytes: 31 * gib}},
	}
	for _, u := range samples {
		fleet.Observe(u, now)
	}
	fleet.ObserveHint(protocol.Hint{Host: "a", Kind: protocol.HintEvacuate, State: protocol.HintRaised})
	recs := map[string]VMRecord{"stuck": {VM: "stuck", Failed: now.Add(-time.Minute), Failures: 1,
		HoldUntil: now.Add(29 * time.Minute), LastError: "migration failed"}}

	_, p := planCycle(fleet, Defaults(), nil, recs, now)
	if len(p.Moves) != 1 || p.Moves[0].VMs[0] != "free" {
		t.Errorf("got moves %+v, want only free off a", p.Moves)
	}
	found := false
	for _, u := range p.Unresolved {
		if u.Host == "a" && strings.Contains(u.Reason, "stuck waits until") && strings.Contains(u.Reason, "migration failed") {
			found = true
		}
	}
	if !found {
		t.Errorf("got unresolved %+v, want a saying stuck waits after its failure", p.Unresolved)
	}

	t.Run("the hold ends and the VM moves", func(t *testing.T) {
		later := now.Add(30 * time.Minute)
		for _, u := range samples {
			fleet.Observe(u, later)
		}
		_, p := planCycle(fleet, Defaults(), nil, recs, later)
		if len(p.Moves) != 2 {
			t.Errorf("got moves %+v, want both off a", p.Moves)
		}
	})
}

func TestHoldDoublesUpToADay(t *testing.T) {
	for _, tc := range []struct {
		failures int
		want     time.Duration
	}{{1, 30 * time.Minute}, {2, time.Hour}, {3, 2 * time.Hour}, {7, 24 * time.Hour}, {40, 24 * time.Hour}} {
		if got := hold(30*time.Minute, tc.failures); got != tc.want {
			t.Errorf("after %d failures: got %v, want %v", tc.failures, got, tc.want)
		}
	}
}

func TestAHandBuiltFileGetsWorkingPeriods(t *testing.T) {
	cfg := Config{Name: "x", File: &File{}}
	if err := cfg.check(); err != nil {
		t.Fatal(err)
	}
	if cfg.Interval != time.Minute || cfg.File.MigrateTimeout != Duration(30*time.Minute) || cfg.File.Lease.Replicas != 1 {
		t.Errorf("got interval %v, migrate_timeout %v, replicas %d; want the defaults",
			cfg.Interval, time.Duration(cfg.File.MigrateTimeout), cfg.File.Lease.Replicas)
	}
}
