package hostrelay

import (
	"encoding/json"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/internal/natstest"
	"github.com/guestdiag/guestdiag/protocol"
)

// outageConfig is testConfig without rate limits: the agent's stream is
// fast on purpose.
func outageConfig(dir string) Config {
	cfg := testConfig(dir)
	cfg.Rate, cfg.MaxBytesRate = math.Inf(1), math.Inf(1)
	return cfg
}

func TestRelayLosesNothingWhenTheAgentMissesTwoReconnects(t *testing.T) {
	srv := natstest.Start(t)
	dir := socketDir(t)
	// The relay reconnects within 5 ms and backs off to 100 ms; an agent
	// that hears of a disconnect only after 60 ms misses the first ones.
	port := newSerialPort(t, filepath.Join(dir, "domain-1-web01", channelFile), 60*time.Millisecond)
	log, logs := newTestLogger(t)
	_, js := startRelay(t, srv, outageConfig(dir), log)
	startAgent(t, port, t.TempDir())

	// Bytes are lost only if the agent was writing at the cut; try again
	// until the relay has seen a gap.
	top := waitStoredPast(t, js, 50)
	for range 10 {
		port.cut(t)
		port.cut(t)
		top = waitStoredPast(t, js, top+300)
		if len(logs.lines("guest_seq_gap ")) > 0 {
			break
		}
	}

	missed, noticed := port.counts()
	if missed < 2 {
		t.Fatalf("the agent missed %d relay reconnects (noticed %d), want at least 2 for this test to mean anything", missed, noticed)
	}
	if len(logs.lines("guest_seq_gap ")) == 0 {
		t.Fatalf("the relay saw no gap: nothing was lost in transit, so the test proves nothing")
	}
	tops := checkContiguous(t, js)
	if len(tops) != 1 {
		t.Errorf("stream holds runs %v, want the agent's one run", tops)
	}
	if n := len(logs.lines("guest_seq_gap_accepted")); n != 0 {
		t.Errorf("the relay gave up on %d gaps, want none: the agent still had every message", n)
	}
	t.Logf("agent missed %d reconnects and noticed %d; relay ended %d connections on a gap; stored %v",
		missed, noticed, len(logs.lines("guest_seq_gap ")), tops)
}

func TestRelayGivesUpOnlyOnSeqsTheAgentSaysAreGone(t *testing.T) {
	const run = "r1"
	r, js, q, logs := startOneVM(t, nil)
	g := q.accept(t)
	g.send(t, resumeLine(t, 1))
	g.send(t, results(t, run, 1, 2)...)
	g.mustAck(t, run, 2)
	g.conn.Close()

	// Without a resume, the next connections skipping 3 and 4 twice prove
	// nothing: the agent may not have heard of them.
	for range 2 {
		g = q.accept(t)
		g.send(t, resultLine(t, run, 5, "resources"))
		for _, a := range g.waitClosed(t) {
			if a.Seq > 2 {
				t.Fatalf("relay acked %s/%d across the gap 3..4 without the agent's word", a.Run, a.Seq)
			}
		}
	}

	// The agent resumes: its spool holds the run from 5 on.
	g = q.accept(t)
	g.send(t, resumeLine(t, 2, protocol.HeldRun{Run: run, Oldest: 5, Newest: 6}))
	g.send(t, results(t, run, 5, 6)...)
	g.mustAck(t, run, 6)
	checkStreamHoldsSeqs(t, js, "hv1:web01", run, 1, 2, 5, 6)
	if got := r.Stats()["web01"].Gaps; got != 1 {
		t.Errorf("counted %d gaps, want 1", got)
	}
	if got := logs.lines("guest_seq_gap_accepted"); len(got) != 1 || !strings.Contains(got[0], "missing_from=3 missing_to=4 resumed=true") {
		t.Errorf("accepted gap logged as %q, want one line with missing_from=3 missing_to=4 resumed=true", got)
	}

	var lost []protocol.LossEvent
	eventually(t, "the loss event is stored", func() bool {
		lost = lost[:0]
		for _, m := range streamMsgs(t, js, protocol.ChannelSubject("hv1", "web01")) {
			var ev protocol.LossEvent
			if err := json.Unmarshal(m.Data, &ev); err != nil {
				t.Fatal(err)
			}
			if ev.State == protocol.ChannelMessagesLost {
				lost = append(lost, ev)
			}
		}
		return len(lost) > 0
	})
	if ev := lost[0]; len(lost) != 1 || ev.Run != run || ev.From != 3 || ev.To != 4 || ev.VM != "web01" || ev.Host != "hv1" {
		t.Errorf("loss events %+v, want one for web01 on hv1, run r1, seqs 3 to 4", lost)
	}
}
