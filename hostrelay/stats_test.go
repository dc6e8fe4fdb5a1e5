package hostrelay

import (
	"fmt"
	"math"
	"testing"
)

// admitStep is one message read on a connection, what admit must say of
// it, and how far the test then acknowledges the run as the ack loop would
// (0: not at all, e.g. because the publish failed).
type admitStep struct {
	conn      uint64
	run       string
	seq       uint64
	want      verdict
	wantAckTo uint64
	ack       uint64
}

func TestAdmit(t *testing.T) {
	const max = math.MaxUint64
	tests := []struct {
		name  string
		steps []admitStep
	}{
		{
			name: "a run the relay has not seen, without a resume, starts only when the same first seq comes again",
			steps: []admitStep{
				{1, "r", 7, gapFound, 0, 0},
				{2, "r", 7, admitted, 7, 7},
				{2, "r", 8, admitted, 8, 8},
			},
		},
		{
			name: "a resend of acknowledged seqs does not move the ack",
			steps: []admitStep{
				{1, "r", 1, admitted, 1, 1},
				{1, "r", 2, admitted, 2, 2},
				{1, "r", 3, admitted, 3, 3},
				{2, "r", 2, admitted, 3, 0},
				{2, "r", 3, admitted, 3, 0},
				{2, "r", 4, admitted, 4, 4},
			},
		},
		{
			name: "a new connection that skips seqs is a gap, and the agent resending from its oldest closes it",
			steps: []admitStep{
				{1, "r", 1, admitted, 1, 1},
				{1, "r", 2, admitted, 2, 2},
				{2, "r", 5, gapFound, 2, 0},
				{3, "r", 3, admitted, 3, 3},
				{3, "r", 4, admitted, 4, 4},
				{3, "r", 5, admitted, 5, 5},
			},
		},
		{
			name: "the same gap at the start of the next connection is accepted",
			steps: []admitStep{
				{1, "r", 1, admitted, 1, 1},
				{1, "r", 2, admitted, 2, 2},
				{2, "r", 5, gapFound, 2, 0},
				{3, "r", 5, gapAccepted, 5, 5},
				{3, "r", 6, admitted, 6, 6},
			},
		},
		{
			name: "a gap in the middle of a connection is found, and accepted when the next starts past it",
			steps: []admitStep{
				{1, "r", 1, admitted, 1, 1},
				{1, "r", 2, admitted, 2, 2},
				{1, "r", 4, gapFound, 2, 0},
				{2, "r", 4, gapAccepted, 4, 4},
			},
		},
		{
			name: "a gap is accepted only at the start of a connection",
			steps: []admitStep{
				{1, "r", 1, admitted, 1, 1},
				{1, "r", 3, gapFound, 1, 0},
				{2, "r", 1, admitted, 1, 0},
				{2, "r", 3, gapFound, 1, 0},
				{3, "r", 3, gapAccepted, 3, 3},
			},
		},
		{
			name: "a gap after messages that were never acknowledged is found again from the last ack",
			steps: []admitStep{
				{1, "r", 1, admitted, 1, 1},
				{1, "r", 2, admitted, 2, 2},
				{2, "r", 3, admitted, 3, 0}, // its publish failed
				{2, "r", 6, gapFound, 3, 0},
				{3, "r", 6, gapFound, 2, 0},
				{4, "r", 6, gapAccepted, 6, 6},
			},
		},
		{
			name: "runs are apart: a gap in one leaves the other alone",
			steps: []admitStep{
				{1, "a", 1, admitted, 1, 1},
				{1, "b", 1, admitted, 1, 1},
				{2, "b", 2, admitted, 2, 2},
				{2, "a", 3, gapFound, 1, 0},
			},
		},
		{
			name: "the highest seq does not wrap around",
			steps: []admitStep{
				{1, "r", max, gapFound, 0, 0},
				{2, "r", max, admitted, max, max},
				{3, "r", 1, admitted, max, 0},
				{3, "r", max, admitted, max, 0},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newRunBook(0)
			for i, st := range tt.steps {
				adm := b.admit(st.conn, st.run, st.seq)
				if adm.verdict != st.want || adm.ackTo != st.wantAckTo {
					t.Fatalf("step %d: admit(conn %d, %s, %d) = verdict %d, ack to %d; want verdict %d, ack to %d",
						i, st.conn, st.run, st.seq, adm.verdict, adm.ackTo, st.want, st.wantAckTo)
				}
				if st.ack > 0 {
					b.acking(adm.rs, st.ack)
				}
			}
		})
	}
}

func TestAdmitReportsTheMissingSeqs(t *testing.T) {
	b := newRunBook(0)
	b.acking(b.admit(1, "r", 1).rs, 1)
	b.acking(b.admit(1, "r", 2).rs, 2)
	for _, st := range []struct {
		conn uint64
		want verdict
	}{{2, gapFound}, {3, gapAccepted}} {
		adm := b.admit(st.conn, "r", 9)
		if adm.verdict != st.want || adm.from != 3 || adm.to != 8 {
			t.Errorf("connection %d: verdict %d, missing %d..%d; want verdict %d, missing 3..8", st.conn, adm.verdict, adm.from, adm.to, st.want)
		}
	}
}

func TestAdmitForgetsTheLeastRecentlyUsedRun(t *testing.T) {
	b := newRunBook(0)
	for i := range maxRuns {
		run := fmt.Sprintf("r%d", i)
		b.acking(b.admit(1, run, 1).rs, 1)
	}
	b.admit(1, "r0", 2) // r0 is used again; r1 is now the oldest
	b.admit(1, "new", 1)
	if len(b.runs) != maxRuns {
		t.Fatalf("remembers %d runs, want %d", len(b.runs), maxRuns)
	}
	if _, ok := b.runs["r1"]; ok {
		t.Error("r1, the least recently used run, is still remembered")
	}
	if _, ok := b.runs["r0"]; !ok {
		t.Error("r0, used again, was forgotten")
	}
	// A forgotten run starts afresh, as after a relay restart: where, only
	// the agent can say.
	if adm := b.admit(2, "r1", 5); adm.verdict != gapFound || adm.ackTo != 0 {
		t.Errorf("forgotten run: verdict %d, ack to %d; want a gap, nothing acknowledged", adm.verdict, adm.ackTo)
	}
}

// mustDefaults is cfg.withDefaults for a config that must be valid.
func mustDefaults(tb testing.TB, cfg Config) Config {
	tb.Helper()
	cfg, err := cfg.withDefaults()
	if err != nil {
		tb.Fatal(err)
	}
	return cfg
}
