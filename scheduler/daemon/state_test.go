package daemon

import (
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/internal/natstest"
)

func TestAHoldTheBucketDidNotTakeStillHolds(t *testing.T) {
	_, nc, js := natstest.JetStream(t)
	kv, err := openState(t.Context(), js, 1)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := watchRecords(t.Context(), kv)
	if err != nil {
		t.Fatal(err)
	}
	<-recs.ready
	// The connection is gone when the failure is recorded, as when NATS
	// fails along with the move.
	nc.Close()
	until := time.Now().Add(time.Hour).UTC()
	err = recs.put(t.Context(), VMRecord{VM: "hog", Failures: 1, HoldUntil: until})
	if err == nil {
		t.Fatal("put on a closed connection succeeded, want its error")
	}
	if got := recs.get("hog"); !got.HoldUntil.Equal(until) {
		t.Errorf("after the failed write hog's record is %+v, want it held until %v: the next cycle would retry the move", got, until)
	}
}

func TestAVMInFlightIsHeldUntilTheTimeout(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	timeout := 30 * time.Minute
	for _, c := range []struct {
		name     string
		rec      VMRecord
		wantHeld bool
	}{
		{"a migration started a minute ago holds its VM", VMRecord{VM: "v", InFlight: now.Add(-time.Minute), InFlightTo: "b", InFlightBy: "sched-a"}, true},
		{"a migration older than the timeout no longer holds", VMRecord{VM: "v", InFlight: now.Add(-timeout - time.Second), InFlightTo: "b"}, false},
		{"a settled record holds nothing", VMRecord{VM: "v", Moved: now.Add(-time.Minute), To: "b"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := planning(map[string]VMRecord{"v": c.rec}, now, timeout)["v"]
			if held := got.HoldUntil.After(now); held != c.wantHeld {
				t.Errorf("got hold until %v (%q), want held %v", got.HoldUntil, got.LastError, c.wantHeld)
			}
		})
	}
}
