package guestagent

import (
	"slices"
	"testing"

	"github.com/guestdiag/guestdiag/protocol"
)

func TestEveryConnectionStartsWithAResumeListingWhatIsHeld(t *testing.T) {
	sp, tr := startSender(t)
	mustAppend(t, sp, "old", 7, 80)
	for i := uint64(1); i <= 3; i++ {
		mustAppend(t, sp, "new", i, 80)
	}
	h := tr.connect(t, hostTimeout)
	got := h.expectNewline(t)
	want := []protocol.HeldRun{{Run: "old", Oldest: 7, Newest: 7}, {Run: "new", Oldest: 1, Newest: 3}}
	if !slices.Equal(got.Held, want) {
		t.Fatalf("first resume holds %+v, want %+v", got.Held, want)
	}
	h.ids(t, 4)
	h.ack(t, "new", 2)
	h.ack(t, "old", 7)
	eventually(t, "the acks are applied", func() bool { return sp.waiting() == 1 })
	h.conn.Close()

	h = tr.connect(t, hostTimeout)
	got = h.expectNewline(t)
	want = []protocol.HeldRun{{Run: "new", Oldest: 3, Newest: 3}}
	if !slices.Equal(got.Held, want) {
		t.Errorf("resume after the acks holds %+v, want %+v", got.Held, want)
	}
	if ids := h.ids(t, 1); !slices.Equal(ids, seqs("new", 3, 3)) {
		t.Errorf("after the resume the host got %v, want new/3", ids)
	}
}
