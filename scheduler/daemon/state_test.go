package daemon

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/internal/natstest"
)

// followedRecords opens the state bucket and follows its records, once
// the present ones are in.
func followedRecords(t *testing.T, js jetstream.JetStream) (jetstream.KeyValue, *records) {
	t.Helper()
	kv, err := openState(t.Context(), js, 1)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := watchRecords(t.Context(), kv)
	if err != nil {
		t.Fatal(err)
	}
	<-recs.ready
	return kv, recs
}

func TestAHoldTheBucketDidNotTakeStillHolds(t *testing.T) {
	_, nc, js := natstest.JetStream(t)
	_, recs := followedRecords(t, js)
	// The connection is gone when the failure is recorded, as when NATS
	// fails along with the move.
	nc.Close()
	until := time.Now().Add(time.Hour).UTC()
	if err := recs.put(t.Context(), VMRecord{VM: "hog", Failures: 1, HoldUntil: until}); err == nil {
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

// staleEntry is a watch entry as the watch delivers it late: one of this
// scheduler's own earlier writes.
type staleEntry struct {
	jetstream.KeyValueEntry
	key   string
	value []byte
	rev   uint64
}

func (e staleEntry) Key() string                     { return e.key }
func (e staleEntry) Value() []byte                   { return e.value }
func (e staleEntry) Revision() uint64                { return e.rev }
func (e staleEntry) Operation() jetstream.KeyValueOp { return jetstream.KeyValuePut }

func TestALateWatchEntryDoesNotUndoANewerWrite(t *testing.T) {
	_, _, js := natstest.JetStream(t)
	kv, recs := followedRecords(t, js)
	// A migration marks the VM in flight, then clears the mark.
	started := VMRecord{VM: "hog", InFlight: time.Now().UTC(), InFlightTo: "b", InFlightBy: "sched-a"}
	if err := recs.put(t.Context(), started); err != nil {
		t.Fatal(err)
	}
	first, err := kv.Get(t.Context(), vmKey("hog"))
	if err != nil {
		t.Fatal(err)
	}
	if err := recs.put(t.Context(), VMRecord{VM: "hog", Moved: time.Now().UTC(), To: "b"}); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(started)
	recs.apply(staleEntry{key: vmKey("hog"), value: b, rev: first.Revision()})
	if got := recs.get("hog"); !got.InFlight.IsZero() || got.To != "b" {
		t.Errorf("after the watch delivered the in-flight mark late, hog's record is %+v, want it moved to b and not in flight", got)
	}

	// A newer write by another scheduler is taken.
	other, _ := json.Marshal(VMRecord{VM: "hog", To: "c", Failures: 3})
	if _, err := kv.Put(t.Context(), vmKey("hog"), other); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); recs.get("hog").To != "c"; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("hog's record is %+v 5 s after another scheduler wrote it on c", recs.get("hog"))
		}
	}
}
