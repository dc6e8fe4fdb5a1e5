package collector

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
)

func TestALossEventIsTakenAndChangesNothing(t *testing.T) {
	data, err := json.Marshal(protocol.LossEvent{
		V: 1, Host: "hv1", VM: "web01", Channel: "/run/x", State: protocol.ChannelMessagesLost,
		TS: time.Now().UTC(), Reason: "the agent's resume said its spool holds this run from seq 12", Run: "r1", From: 6, To: 11,
	})
	if err != nil {
		t.Fatal(err)
	}
	u, err := decodeMessage(protocol.ChannelSubject("hv1", "web01"), data)
	if err != nil {
		t.Fatalf("a messages_lost event is refused: %v", err)
	}
	v := &VM{Name: "web01", Host: "hv1"}
	before, _ := json.Marshal(v)
	if got := u.apply(v); got != stale {
		t.Errorf("applying it: outcome %d, want stale (nothing to write)", got)
	}
	if after, _ := json.Marshal(v); string(after) != string(before) {
		t.Errorf("the VM record changed from %s to %s", before, after)
	}
}
