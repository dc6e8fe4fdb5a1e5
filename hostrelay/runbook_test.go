package hostrelay

import (
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
)

// resumeStep is a step of TestAdmitWithResume: a resume read on conn when
// resume is set, else a message as in admitStep.
type resumeStep struct {
	admitStep
	resume *protocol.Resume
}

func msg(conn uint64, run string, seq uint64, want verdict, ackTo, ack uint64) resumeStep {
	return resumeStep{admitStep: admitStep{conn, run, seq, want, ackTo, ack}}
}

func resumes(conn uint64, held ...protocol.HeldRun) resumeStep {
	return resumeStep{admitStep: admitStep{conn: conn}, resume: &protocol.Resume{Held: held}}
}

func TestAdmitWithResume(t *testing.T) {
	tests := []struct {
		name  string
		steps []resumeStep
	}{
		{
			name: "a gap after a resume on the same connection is accepted at once",
			steps: []resumeStep{
				resumes(1, protocol.HeldRun{Run: "r", Oldest: 1, Newest: 2}),
				msg(1, "r", 1, admitted, 1, 1),
				msg(1, "r", 2, admitted, 2, 2),
				resumes(2, protocol.HeldRun{Run: "r", Oldest: 6, Newest: 9}),
				msg(2, "r", 6, gapAccepted, 6, 6),
			},
		},
		{
			name: "an agent that resumes is never taken at its guess: the same gap on connection after connection is not accepted",
			steps: []resumeStep{
				resumes(1),
				msg(1, "r", 1, admitted, 1, 1),
				msg(2, "r", 5, gapFound, 1, 0),
				msg(3, "r", 8, gapFound, 1, 0),
				msg(4, "r", 9, gapFound, 1, 0),
				resumes(5, protocol.HeldRun{Run: "r", Oldest: 2, Newest: 9}),
				msg(5, "r", 2, admitted, 2, 2),
			},
		},
		{
			name: "a resume later on a connection makes the gaps after it real, not those before",
			steps: []resumeStep{
				resumes(1),
				msg(1, "r", 1, admitted, 1, 1),
				msg(2, "r", 4, gapFound, 1, 0),
				msg(3, "r", 1, admitted, 1, 0),
				resumes(3, protocol.HeldRun{Run: "r", Oldest: 3, Newest: 4}),
				msg(3, "r", 3, gapAccepted, 3, 3),
			},
		},
		{
			name: "a run first seen after a resume starts at the oldest seq the resume says is held",
			steps: []resumeStep{
				resumes(1, protocol.HeldRun{Run: "r", Oldest: 40, Newest: 50}),
				msg(1, "r", 40, admitted, 40, 40),
				resumes(2, protocol.HeldRun{Run: "q", Oldest: 7, Newest: 9}),
				msg(2, "q", 8, gapAccepted, 8, 8),
			},
		},
		{
			name: "a run first seen without a resume, from an agent that resumes, waits for the resume",
			steps: []resumeStep{
				resumes(1),
				msg(1, "r", 1, admitted, 1, 1),
				msg(2, "q", 5, gapFound, 0, 0),
				msg(3, "q", 1, admitted, 1, 1),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newRunBook(0)
			var conn uint64
			for i, st := range tt.steps {
				for conn < st.conn {
					conn = b.newConn()
				}
				if st.resume != nil {
					b.resumedOn(st.conn, *st.resume)
					continue
				}
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

func TestAdmitBoundsTheLossEvents(t *testing.T) {
	b := newRunBook(0)
	b.resumedOn(1, protocol.Resume{Held: []protocol.HeldRun{}})
	var published int
	for seq := uint64(1); seq <= 2*lossEventBurst*2; seq += 2 {
		adm := b.admit(1, "r", seq)
		if seq == 1 {
			continue
		}
		if adm.verdict != gapAccepted {
			t.Fatalf("seq %d: verdict %d, want an accepted gap", seq, adm.verdict)
		}
		if adm.lost {
			published++
		}
	}
	if published != lossEventBurst {
		t.Errorf("%d loss events published in a burst of gaps, want %d", published, lossEventBurst)
	}
}

func TestAdmitTakesTheOldGuessOnlyAfterTheLegacyWait(t *testing.T) {
	b := newRunBook(DefaultLegacyGapWait)
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	b.acking(b.admitAt(t0, 1, "r", 1).rs, 1)
	for i, st := range []struct {
		after time.Duration
		want  verdict
	}{
		{0, gapFound},
		{time.Second, gapFound},
		{DefaultLegacyGapWait - time.Second, gapFound},
		{DefaultLegacyGapWait, gapAccepted},
	} {
		conn := uint64(i + 2)
		if adm := b.admitAt(t0.Add(st.after), conn, "r", 5); adm.verdict != st.want {
			t.Errorf("the gap %v after it was first found: verdict %d, want %d", st.after, adm.verdict, st.want)
		}
	}
}
