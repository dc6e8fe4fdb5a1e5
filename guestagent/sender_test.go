package guestagent

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"
)

const hostTimeout = 5 * time.Second

// startSender runs a sender on a fresh spool until the test ends.
func startSender(t *testing.T) (*spool, *pipeTransport) {
	t.Helper()
	sp := openTestSpool(t, t.TempDir(), 1<<20)
	tr := newPipeTransport()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- newSender(sp, tr, discardLogger()).run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("sender.run returned %v after cancel, want nil", err)
			}
		case <-time.After(hostTimeout):
			t.Error("sender.run did not return after cancel")
		}
	})
	return sp, tr
}

func TestSenderSendsSpoolInOrderAndAcksShrinkIt(t *testing.T) {
	sp, tr := startSender(t)
	for i := uint64(1); i <= 3; i++ {
		mustAppend(t, sp, "A", i, 80)
	}
	h := tr.connect(t, hostTimeout)
	h.expectNewline(t)
	if got, want := h.ids(t, 3), seqs("A", 1, 3); !slices.Equal(got, want) {
		t.Fatalf("host got %v, want %v", got, want)
	}
	h.ack(t, "A", 2)
	eventually(t, "the ack of A/2 leaves one message", func() bool { return sp.waiting() == 1 })
	h.ack(t, "A", 3)
	eventually(t, "the ack of A/3 empties the spool", func() bool { return sp.waiting() == 0 })

	mustAppend(t, sp, "A", 4, 80)
	if got, want := h.ids(t, 1), seqs("A", 4, 4); !slices.Equal(got, want) {
		t.Errorf("a new message: host got %v, want %v", got, want)
	}
}

func TestSenderResendsUnackedAfterReconnect(t *testing.T) {
	sp, tr := startSender(t)
	for i := uint64(1); i <= 3; i++ {
		mustAppend(t, sp, "A", i, 80)
	}
	h := tr.connect(t, hostTimeout)
	h.expectNewline(t)
	h.ids(t, 3)
	h.ack(t, "A", 1)
	eventually(t, "the ack of A/1 is applied", func() bool { return sp.waiting() == 2 })
	h.conn.Close()

	// Spooled while disconnected.
	mustAppend(t, sp, "A", 4, 80)

	h = tr.connect(t, hostTimeout)
	h.expectNewline(t)
	if got, want := h.ids(t, 3), seqs("A", 2, 4); !slices.Equal(got, want) {
		t.Fatalf("after reconnect host got %v, want %v", got, want)
	}
	mustAppend(t, sp, "A", 5, 80)
	if got, want := h.ids(t, 1), seqs("A", 5, 5); !slices.Equal(got, want) {
		t.Errorf("then host got %v, want %v", got, want)
	}
}

func TestSenderDeliversWhatWasSpooledBeforeTheHostCame(t *testing.T) {
	sp, tr := startSender(t)
	mustAppend(t, sp, "old", 7, 80)
	for i := uint64(1); i <= 3; i++ {
		mustAppend(t, sp, "new", i, 80)
	}
	h := tr.connect(t, hostTimeout)
	h.expectNewline(t)
	want := append(seqs("old", 7, 7), seqs("new", 1, 3)...)
	if got := h.ids(t, 4); !slices.Equal(got, want) {
		t.Errorf("host got %v, want %v", got, want)
	}
}

func TestSenderIgnoresAnythingButAcks(t *testing.T) {
	sp, tr := startSender(t)
	for i := uint64(1); i <= 3; i++ {
		mustAppend(t, sp, "A", i, 80)
	}
	h := tr.connect(t, hostTimeout)
	h.expectNewline(t)
	h.ids(t, 3)
	for _, junk := range []string{
		"hello agent\n",
		`{"v":1,"kind":"result","run":"A","seq":3}` + "\n",
		`{"v":2,"kind":"ack","run":"A","seq":3}` + "\n",
		`{"v":1,"kind":"ack","run":"A","seq":3,"exec":"rm -rf /"}` + "\n",
		`{"v":1,"kind":"ack","run":"A/../x","seq":3}` + "\n",
		strings.Repeat("x", 10<<10) + "\n",
		"\n",
	} {
		h.send(t, junk)
	}
	h.ack(t, "A", 2)
	eventually(t, "the valid ack after the junk is applied", func() bool { return sp.waiting() == 1 })
	if got, want := contents(t, sp), seqs("A", 3, 3); !slices.Equal(got, want) {
		t.Errorf("spool holds %v, want %v", got, want)
	}
	mustAppend(t, sp, "A", 4, 80)
	if got, want := h.ids(t, 1), seqs("A", 4, 4); !slices.Equal(got, want) {
		t.Errorf("the connection survives the junk: host got %v, want %v", got, want)
	}
}

func TestSenderBoundsAcksByWhatWasSent(t *testing.T) {
	sp, tr := startSender(t)
	for i := uint64(1); i <= 3; i++ {
		mustAppend(t, sp, "A", i, 80)
	}
	h := tr.connect(t, hostTimeout)
	h.expectNewline(t)
	h.ids(t, 1) // A/3 cannot have been written: the pipe has no buffer
	h.ack(t, "A", 3)
	eventually(t, "the ack is applied", func() bool { return sp.waiting() < 3 })
	if got := contents(t, sp); !slices.Contains(got, "A/3") {
		t.Errorf("spool holds %v after an ack beyond what was sent; want A/3 kept", got)
	}
	h.ack(t, "B", 1)
	if got := sp.waiting(); got == 0 {
		t.Errorf("an ack of a run never sent emptied the spool")
	}
}
