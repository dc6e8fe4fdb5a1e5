package daemon

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/internal/natstest"
	"github.com/guestdiag/guestdiag/protocol"
	"github.com/guestdiag/guestdiag/scheduler/inventory"
)

// Whether a move came after a host's newest sample is decided by the
// server's times of the VM's record and of the sample: the scheduler's
// clock, in which the record's Moved is written, may be off by an hour.
func TestAMoveIsDatedByTheServerNotTheSchedulersClock(t *testing.T) {
	_, _, js := natstest.JetStream(t)
	kv, err := openState(t.Context(), js, 1)
	if err != nil {
		t.Fatal(err)
	}
	observe := func(fleet *inventory.Fleet, at time.Time) {
		for _, u := range []protocol.HostUsage{
			{V: 1, Host: "a", IntervalS: 10, CPU: protocol.HostCPU{Count: 8, UsedPct: 30},
				Memory: protocol.HostMemory{TotalBytes: 32 * gib, AvailableBytes: 28 * gib},
				VMs:    []protocol.VMUsage{{VM: "web", CPUPct: 100, MemoryBytes: gib}}},
			{V: 1, Host: "b", IntervalS: 10, CPU: protocol.HostCPU{Count: 8, UsedPct: 5},
				Memory: protocol.HostMemory{TotalBytes: 32 * gib, AvailableBytes: 31 * gib}},
		} {
			fleet.Observe(u, at)
		}
	}
	write := func(r VMRecord) {
		b, _ := json.Marshal(r)
		if _, err := kv.Put(t.Context(), vmKey(r.VM), b); err != nil {
			t.Fatal(err)
		}
	}
	hostOf := func(fleet *inventory.Fleet, r VMRecord) string {
		inv, _ := planCycle(fleet, Defaults(), nil, map[string]VMRecord{r.VM: r}, storedTimes(t.Context(), kv), time.Now())
		for _, v := range inv.VMs {
			if v.Name == r.VM {
				return v.Host
			}
		}
		return ""
	}
	for _, tc := range []struct {
		name       string
		skew       time.Duration
		sampleLast bool
		want       string
	}{
		{"a move stored after the sample puts the VM on its target though the scheduler's clock is an hour behind", -time.Hour, false, "b"},
		{"a sample stored after the move puts the VM where it says though the scheduler's clock is an hour ahead", time.Hour, true, "a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fleet := inventory.NewFleet(inventory.Demand{})
			r := VMRecord{VM: "web", Moved: time.Now().Add(tc.skew), To: "b"}
			// The samples' stream times are a second either side of the
			// record's write.
			if tc.sampleLast {
				write(r)
				observe(fleet, time.Now().Add(time.Second))
			} else {
				observe(fleet, time.Now().Add(-time.Second))
				write(r)
			}
			if got := hostOf(fleet, r); got != tc.want {
				t.Errorf("got web planned on %q, want %q", got, tc.want)
			}
		})
	}
}
