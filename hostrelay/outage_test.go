package hostrelay

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/internal/natstest"
	"github.com/guestdiag/guestdiag/internal/natsutil"
	"github.com/guestdiag/guestdiag/protocol"
)

// outageConfig is testConfig without rate limits, since the agent's
// stream is fast on purpose, and with the default wait before the guess
// for agents without resume: these tests run the real agent, and must not
// pass on a guess.
func outageConfig(dir string) Config {
	cfg := testConfig(dir)
	cfg.Rate, cfg.MaxBytesRate = math.Inf(1), math.Inf(1)
	cfg.LegacyGapWait = DefaultLegacyGapWait
	// The tests read back every seq of the run, all on a few subjects:
	// the stream must keep them all, not the newest 256 of each.
	cfg.MaxMsgsPerSubject = -1
	return cfg
}

func TestRelayLosesNothingWhenTheAgentMissesTwoReconnects(t *testing.T) {
	srv := natstest.Start(t)
	dir := socketDir(t)
	// The relay reconnects within 5 ms and backs off to 100 ms; an agent
	// that hears of a disconnect only after 250 ms misses the first ones,
	// even on a machine so loaded that the relay takes tens of ms.
	port := newSerialPort(t, filepath.Join(dir, "domain-1-web01", channelFile), 250*time.Millisecond)
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

// restartableNATS is a real embedded server that a test can stop and
// start again on the same port and store, as a NATS restart does.
type restartableNATS struct {
	tb   testing.TB
	dir  string
	port int
	srv  *server.Server
}

func startRestartableNATS(tb testing.TB) *restartableNATS {
	tb.Helper()
	n := &restartableNATS{tb: tb, dir: tb.TempDir(), port: -1}
	n.start()
	n.port = n.srv.Addr().(*net.TCPAddr).Port
	tb.Cleanup(n.stop)
	return n
}

func (n *restartableNATS) start() {
	n.tb.Helper()
	srv, err := natsutil.StartServer(natsutil.ServerConfig{Port: n.port, StoreDir: n.dir})
	if err != nil {
		n.tb.Fatal(err)
	}
	n.srv = srv
}

func (n *restartableNATS) stop() {
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
		n.srv = nil
	}
}

func (n *restartableNATS) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

// runRelay runs Run, as the relay's main does, until the test ends.
func runRelay(tb testing.TB, cfg Config) {
	tb.Helper()
	log, _ := newTestLogger(tb)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, log.With("side", "relay")) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("Run returned %v after cancel, want nil", err)
		}
	})
}

// newJetStream connects the test's own client to url, reconnecting
// across restarts.
func newJetStream(tb testing.TB, url string) jetstream.JetStream {
	tb.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	return js
}

func TestRelayDeliversEverythingAcrossANATSRestart(t *testing.T) {
	n := startRestartableNATS(t)
	dir := socketDir(t)
	port := newSerialPort(t, filepath.Join(dir, "domain-1-web01", channelFile), 60*time.Millisecond)
	cfg := outageConfig(dir)
	cfg.NATSURL = n.url()
	cfg.PublishTimeout = time.Second
	runRelay(t, cfg)
	startAgent(t, port, t.TempDir())
	js := newJetStream(t, n.url())

	top := waitStoredPast(t, js, 50)
	n.stop()
	// While NATS is away the relay must not read: what it read could be
	// neither stored nor acknowledged. The agent keeps spooling.
	eventually(t, "the relay to leave the channel while NATS is down", func() bool {
		port.mu.Lock()
		defer port.mu.Unlock()
		return port.host == nil
	})
	<-time.After(500 * time.Millisecond) // half a second of heartbeats spooled in the agent
	n.start()
	waitStoredPast(t, js, top+400)

	tops := checkContiguous(t, js)
	if len(tops) != 1 {
		t.Errorf("stream holds runs %v, want the agent's one run", tops)
	}
	t.Logf("stored %v across a NATS restart", tops)
}

// relayChildEnv names the variable that makes TestRelayChild run a relay:
// the JSON of its Config.
const relayChildEnv = "GUESTDIAG_TEST_RELAY_CHILD"

// TestRelayChild is not a test: it is the relay process that
// TestRelaySurvivesSIGKILL starts from this test binary and kills.
func TestRelayChild(t *testing.T) {
	raw := os.Getenv(relayChildEnv)
	if raw == "" {
		t.Skip("runs only as the child of TestRelaySurvivesSIGKILL")
	}
	var cfg Config
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	// As the daemon does: its default soft memory limit, or GOMEMLIMIT.
	ApplyMemoryLimit(cfg, log)
	writeHeapProfiles(context.Background())
	if err := Run(context.Background(), cfg, log); err != nil {
		t.Fatal(err)
	}
}

func TestRelaySurvivesSIGKILL(t *testing.T) {
	srv := natstest.Start(t)
	dir := socketDir(t)
	port := newSerialPort(t, filepath.Join(dir, "domain-1-web01", channelFile), 60*time.Millisecond)
	cfg := outageConfig(dir)
	cfg.NATSURL = srv.ClientURL()
	cfg.Rate, cfg.MaxBytesRate = 1e9, 1e12 // JSON has no infinity
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	startChild := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestRelayChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), relayChildEnv+"="+string(raw))
		if testing.Verbose() {
			cmd.Stderr = os.Stderr
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	child := startChild()
	t.Cleanup(func() {
		_ = child.Process.Kill()
		_ = child.Wait()
	})
	startAgent(t, port, t.TempDir())
	js := testJetStream(t, srv)

	top := waitStoredPast(t, js, 50)
	for range 2 {
		if err := child.Process.Kill(); err != nil { // SIGKILL: no draining, no last acks
			t.Fatal(err)
		}
		_ = child.Wait()
		child = startChild()
		top = waitStoredPast(t, js, top+200)
	}

	tops := checkContiguous(t, js)
	if len(tops) != 1 {
		t.Errorf("stream holds runs %v, want the agent's one run", tops)
	}
	t.Logf("stored %v across two SIGKILLs of the relay", tops)
}
