package inventory

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
	"github.com/guestdiag/guestdiag/scheduler/planner"
)

func hostNamed(inv planner.Inventory, name string) planner.Host {
	for _, h := range inv.Hosts {
		if h.Name == name {
			return h
		}
	}
	return planner.Host{}
}

func vmHosts(inv planner.Inventory, name string) []string {
	var out []string
	for _, v := range inv.VMs {
		if v.Name == name {
			out = append(out, v.Host)
		}
	}
	return out
}

func TestANameOnTwoLiveHostsIsNotPlanned(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	// Two distinct VMs called web: two CPUs busy on a, one on b. Each host
	// is 4 CPUs busy: on a, web and db use them all; b's own load is 3.
	webA := protocol.VMUsage{VM: "web", CPUPct: 200, MemoryBytes: 4 * gib}
	webB := protocol.VMUsage{VM: "web", CPUPct: 100, MemoryBytes: 2 * gib}
	f := NewFleet(Demand{})
	var inv planner.Inventory
	var problems []planner.Problem
	// Samples alternate, so each host's in turn is the newest naming web.
	for i := range 4 {
		at := t0.Add(time.Duration(i) * 5 * time.Second)
		if i%2 == 0 {
			f.Observe(sample("a", 50, webA, protocol.VMUsage{VM: "db", CPUPct: 200, MemoryBytes: gib}), at)
		} else {
			f.Observe(sample("b", 50, webB), at)
		}
		inv, problems = f.Build(at, Declared{}, nil)
		if got := vmHosts(inv, "web"); i > 0 && len(got) != 0 {
			t.Fatalf("after sample %d: got web planned on %v, want it on neither host", i, got)
		}
	}
	t.Run("each host keeps the load of the VM it lists", func(t *testing.T) {
		a, b := hostNamed(inv, "a"), hostNamed(inv, "b")
		if math.Abs(a.Other-2) > 1e-9 || math.Abs(b.Other-4) > 1e-9 {
			t.Errorf("got other load a %v b %v, want 2 and 4 (the host's own and its web)", a.Other, b.Other)
		}
		// 12 GiB used of 32, none resident: 20 GiB for VMs, less web's.
		if a.Mem != 16*1024 || b.Mem != 18*1024 {
			t.Errorf("got memory for VMs a %v b %v MB, want %v and %v", a.Mem, b.Mem, 16*1024, 18*1024)
		}
		if got := vmHosts(inv, "db"); len(got) != 1 || got[0] != "a" {
			t.Errorf("got db on %v, want on a, planned as ever", got)
		}
	})
	t.Run("both hosts list the problem", func(t *testing.T) {
		if len(problems) != 2 || problems[0].Host != "a" || problems[1].Host != "b" {
			t.Fatalf("got problems %+v, want one for a and one for b", problems)
		}
		for _, p := range problems {
			if !strings.Contains(p.Reason, `"web"`) || !strings.Contains(p.Reason, "on hosts a and b") {
				t.Errorf("got reason %q, want it to name web and both hosts", p.Reason)
			}
		}
	})
}

func TestAMigratedVMIsPlannedOnceItsSourceStopsListingIt(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	web := protocol.VMUsage{VM: "web", CPUPct: 100, MemoryBytes: 2 * gib}
	f := NewFleet(Demand{})
	f.Observe(sample("a", 50, web), t0)
	f.Observe(sample("b", 10, web), t0.Add(time.Second)) // the migration's target runs it
	inv, problems := f.Build(t0.Add(time.Second), Declared{}, nil)
	if got := vmHosts(inv, "web"); len(got) != 0 || len(problems) != 2 {
		t.Fatalf("mid-migration: got web on %v and problems %+v, want it on neither, a problem on each host", got, problems)
	}
	f.Observe(sample("a", 10), t0.Add(10*time.Second))
	inv, problems = f.Build(t0.Add(10*time.Second), Declared{}, nil)
	if got := vmHosts(inv, "web"); len(got) != 1 || got[0] != "b" || len(problems) != 0 {
		t.Errorf("after: got web on %v and problems %+v, want it on b and no problem", got, problems)
	}
}

func TestADownHostsOldListingDoesNotHideAVM(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	web := protocol.VMUsage{VM: "web", CPUPct: 100, MemoryBytes: 2 * gib}
	f := NewFleet(Demand{})
	f.Observe(sample("a", 50, web), t0)
	f.Observe(sample("gone", 50, web), t0.Add(time.Second))
	now := t0.Add(2 * time.Minute)
	f.Observe(sample("a", 50, web), now)
	inv, problems := f.Build(now, Declared{}, nil)
	if got := vmHosts(inv, "web"); len(got) != 1 || got[0] != "a" || len(problems) != 0 {
		t.Errorf("got web on %v and problems %+v, want it on a, the live host, and no problem", got, problems)
	}
}
