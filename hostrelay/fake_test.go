package hostrelay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/internal/natstest"
	"github.com/guestdiag/guestdiag/internal/natsutil"
	"github.com/guestdiag/guestdiag/protocol"
)

// waitFor bounds every wait in these tests.
const waitFor = 10 * time.Second

// channelFile is the socket name libvirt gives the guestdiag channel.
const channelFile = "org.guestdiag.agent.0"

// socketDir returns a short temporary folder: unix socket paths are limited
// to about 100 bytes, and t.TempDir() names can be longer.
func socketDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "gdr")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// fakeQEMU plays QEMU's side of a channel started with server=on: it listens
// on the socket and the relay connects to it. Whatever a test writes on an
// accepted connection is what the agent in the guest would write.
type fakeQEMU struct {
	ln   *net.UnixListener
	path string
}

func listenChannel(tb testing.TB, path string) *fakeQEMU {
	tb.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tb.Fatal(err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	return &fakeQEMU{ln: ln, path: path}
}

// accept waits for the relay to connect and, like the agent on every
// connect, writes a lone newline to end any half-written line.
func (q *fakeQEMU) accept(tb testing.TB) *fakeGuest {
	tb.Helper()
	if err := q.ln.SetDeadline(time.Now().Add(waitFor)); err != nil {
		tb.Fatal(err)
	}
	conn, err := q.ln.AcceptUnix()
	if err != nil {
		tb.Fatalf("relay did not connect to %s: %v", q.path, err)
	}
	tb.Cleanup(func() { conn.Close() })
	g := newFakeGuest(conn)
	g.send(tb, []byte("\n"))
	return g
}

// fakeGuest is the agent's end of one connection: it writes lines and keeps
// the acks it reads.
type fakeGuest struct {
	conn *net.UnixConn

	mu      sync.Mutex
	acks    []protocol.Ack
	maxSeq  map[string]uint64
	changed chan struct{} // closed and replaced on every ack and at EOF
	closed  bool
	// onAck, if set before the first ack, sees every ack as it arrives.
	onAck func(protocol.Ack, time.Time)
}

func newFakeGuest(conn *net.UnixConn) *fakeGuest {
	g := &fakeGuest{conn: conn, maxSeq: make(map[string]uint64), changed: make(chan struct{})}
	go g.readAcks()
	return g
}

func (g *fakeGuest) readAcks() {
	r := protocol.NewReader(g.conn, 0)
	for {
		line, err := r.ReadLine()
		if err != nil {
			var le *protocol.LineError
			if errors.As(err, &le) {
				continue
			}
			break
		}
		a, err := protocol.DecodeAck(line)
		now := time.Now()
		g.mu.Lock()
		if err == nil {
			g.acks = append(g.acks, a)
			g.maxSeq[a.Run] = max(g.maxSeq[a.Run], a.Seq)
		}
		if g.onAck != nil && err == nil {
			g.onAck(a, now)
		}
		close(g.changed)
		g.changed = make(chan struct{})
		g.mu.Unlock()
	}
	g.mu.Lock()
	g.closed = true
	close(g.changed)
	g.mu.Unlock()
}

func (g *fakeGuest) send(tb testing.TB, lines ...[]byte) {
	tb.Helper()
	if err := g.write(lines...); err != nil {
		tb.Fatal(err)
	}
}

// write is send for goroutines other than the test's, which must not call
// tb.Fatal.
func (g *fakeGuest) write(lines ...[]byte) error {
	if _, err := g.conn.Write(bytes.Join(lines, nil)); err != nil {
		return fmt.Errorf("guest write: %w", err)
	}
	return nil
}

// waitAck waits until run is acknowledged up to seq, or the connection ends,
// and reports whether the ack came.
func (g *fakeGuest) waitAck(tb testing.TB, run string, seq uint64) bool {
	tb.Helper()
	ok, err := g.awaitAck(run, seq)
	if err != nil {
		tb.Fatal(err)
	}
	return ok
}

// awaitAck is waitAck for goroutines other than the test's.
func (g *fakeGuest) awaitAck(run string, seq uint64) (bool, error) {
	deadline := time.NewTimer(waitFor)
	defer deadline.Stop()
	for {
		g.mu.Lock()
		got, closed, changed := g.maxSeq[run], g.closed, g.changed
		g.mu.Unlock()
		if got >= seq {
			return true, nil
		}
		if closed {
			return false, nil
		}
		select {
		case <-changed:
		case <-deadline.C:
			return false, fmt.Errorf("no ack for %s/%d within %v; newest ack %d", run, seq, waitFor, got)
		}
	}
}

// mustAck is waitAck that fails the test if the connection ends first.
func (g *fakeGuest) mustAck(tb testing.TB, run string, seq uint64) {
	tb.Helper()
	if err := g.requireAck(run, seq); err != nil {
		tb.Fatal(err)
	}
}

// requireAck is mustAck for goroutines other than the test's.
func (g *fakeGuest) requireAck(run string, seq uint64) error {
	ok, err := g.awaitAck(run, seq)
	if err == nil && !ok {
		err = fmt.Errorf("relay closed the connection before acking %s/%d; acks %v", run, seq, g.ackList())
	}
	return err
}

// waitClosed waits until the relay closes the connection and returns every
// ack it sent.
func (g *fakeGuest) waitClosed(tb testing.TB) []protocol.Ack {
	tb.Helper()
	deadline := time.NewTimer(waitFor)
	defer deadline.Stop()
	for {
		g.mu.Lock()
		closed, changed := g.closed, g.changed
		g.mu.Unlock()
		if closed {
			return g.ackList()
		}
		select {
		case <-changed:
		case <-deadline.C:
			tb.Fatalf("relay kept the connection open for %v", waitFor)
		}
	}
}

func (g *fakeGuest) ackList() []protocol.Ack {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]protocol.Ack(nil), g.acks...)
}

func (g *fakeGuest) acked(run string) uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.maxSeq[run]
}

var testTS = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

func line(tb testing.TB, e protocol.Envelope) []byte {
	tb.Helper()
	b, err := protocol.Marshal(e)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func helloLine(tb testing.TB, run string, seq uint64, claimedHostname string) []byte {
	tb.Helper()
	data, err := json.Marshal(protocol.Hello{Hostname: claimedHostname, OS: "linux", AgentVersion: "0.1.0", Checks: []string{"network", "logs"}})
	if err != nil {
		tb.Fatal(err)
	}
	return line(tb, protocol.Envelope{V: 1, Kind: protocol.KindHello, Run: run, Seq: seq, TS: testTS, Data: data})
}

func resultLine(tb testing.TB, run string, seq uint64, check string) []byte {
	tb.Helper()
	return line(tb, protocol.Envelope{V: 1, Kind: protocol.KindResult, Run: run, Seq: seq, TS: testTS,
		Check: check, Status: protocol.StatusWarn, Summary: "gateway slow",
		Findings: []protocol.Finding{{Code: "net.gateway_slow", Severity: protocol.SeverityWarn, Message: "gateway answers in 900 ms"}},
		Data:     json.RawMessage(`{"rtt_ms":900}`)})
}

func eventLine(tb testing.TB, run string, seq uint64, check string) []byte {
	tb.Helper()
	return line(tb, protocol.Envelope{V: 1, Kind: protocol.KindEvent, Run: run, Seq: seq, TS: testTS,
		Check: check, Status: protocol.StatusCrit, Summary: "disk errors in the kernel log"})
}

func results(tb testing.TB, run string, from, to uint64) [][]byte {
	tb.Helper()
	var out [][]byte
	for seq := from; seq <= to; seq++ {
		out = append(out, resultLine(tb, run, seq, "resources"))
	}
	return out
}

// testLog captures the relay's log for assertions and shows it in the test
// output. Lines written after the test has finished are discarded.
type testLog struct {
	mu   sync.Mutex
	tb   testing.TB
	buf  bytes.Buffer
	done bool
}

func newTestLogger(tb testing.TB) (*slog.Logger, *testLog) {
	l := &testLog{tb: tb}
	tb.Cleanup(func() {
		l.mu.Lock()
		l.done = true
		l.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug})), l
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return len(p), nil
	}
	l.buf.Write(p)
	if testing.Verbose() {
		l.tb.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (l *testLog) lines(substr string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, ln := range strings.Split(l.buf.String(), "\n") {
		if strings.Contains(ln, substr) {
			out = append(out, ln)
		}
	}
	return out
}

// testConfig watches libvirt-shaped folders under dir with short waits.
func testConfig(dir string) Config {
	return Config{
		Host:           "hv1",
		Globs:          []string{filepath.Join(dir, "domain-*", channelFile)},
		LibvirtRunDir:  filepath.Join(dir, "run"),
		RescanInterval: 20 * time.Millisecond,
		BackoffMin:     5 * time.Millisecond,
		BackoffMax:     100 * time.Millisecond,
		Rate:           10000,
		Burst:          10000,
		PublishTimeout: 5 * time.Second,
		// Fake guests that send no resume play agents from before it.
		LegacyGapWait: time.Nanosecond,
		// Tests of host usage turn it on.
		HostUsageInterval: -1,
	}
}

// startRelay runs a Relay on its own connection to srv until the test ends,
// and checks that Run then returns nil.
func startRelay(tb testing.TB, srv *server.Server, cfg Config, log *slog.Logger) (*Relay, jetstream.JetStream) {
	tb.Helper()
	return startRelayWith(tb, srv, cfg, log, nil)
}

// startRelayWith is startRelay with the relay's JetStream client replaced
// by wrap(client), if wrap is not nil.
func startRelayWith(tb testing.TB, srv *server.Server, cfg Config, log *slog.Logger, wrap func(jetstream.JetStream) jetstream.JetStream) (*Relay, jetstream.JetStream) {
	tb.Helper()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		tb.Fatal(err)
	}
	r, err := New(cfg, nc, log)
	if err != nil {
		tb.Fatal(err)
	}
	if wrap != nil {
		r.js = wrap(r.js)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("Run returned %v after cancel, want nil", err)
		}
		nc.Close()
	})
	return r, testJetStream(tb, srv)
}

// startOneVM runs a relay, changed by mod if not nil, that watches the
// channel of one VM, web01, on this host, hv1.
func startOneVM(tb testing.TB, mod func(*Config)) (*Relay, jetstream.JetStream, *fakeQEMU, *testLog) {
	tb.Helper()
	srv := natstest.Start(tb)
	dir := socketDir(tb)
	q := listenChannel(tb, filepath.Join(dir, "domain-1-web01", channelFile))
	cfg := testConfig(dir)
	if mod != nil {
		mod(&cfg)
	}
	log, logs := newTestLogger(tb)
	r, js := startRelay(tb, srv, cfg, log)
	return r, js, q, logs
}

// testJetStream is the test's own view of the stream, separate from the
// relay's connection.
func testJetStream(tb testing.TB, srv *server.Server) jetstream.JetStream {
	tb.Helper()
	nc, err := nats.Connect(srv.ClientURL())
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

// streamMsgs returns the messages in the stream whose subject starts with
// prefix, oldest first.
func streamMsgs(tb testing.TB, js jetstream.JetStream, prefix string) []*jetstream.RawStreamMsg {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	st, err := js.Stream(ctx, natsutil.StreamName)
	if err != nil {
		tb.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			tb.Fatal(err)
		}
		if strings.HasPrefix(m.Subject, prefix) {
			out = append(out, m)
		}
	}
	return out
}

// checkStreamHolds checks that the reports and heartbeats in the stream are
// seq 1 to n of run, each once, by message id.
func checkStreamHolds(tb testing.TB, js jetstream.JetStream, key, run string, n int) {
	tb.Helper()
	var seqs []uint64
	for seq := 1; seq <= n; seq++ {
		seqs = append(seqs, uint64(seq))
	}
	checkStreamHoldsSeqs(tb, js, key, run, seqs...)
}

// checkStreamHoldsSeqs checks that the reports and heartbeats in the stream
// are the given seqs of run, each once, by message id.
func checkStreamHoldsSeqs(tb testing.TB, js jetstream.JetStream, key, run string, seqs ...uint64) {
	tb.Helper()
	var got, want []string
	for _, m := range append(streamMsgs(tb, js, "guestdiag.report."), streamMsgs(tb, js, "guestdiag.heartbeat.")...) {
		got = append(got, m.Header.Get(jetstream.MsgIDHeader))
	}
	for _, seq := range seqs {
		want = append(want, protocol.MsgID(key, run, seq))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		tb.Errorf("stream holds %q, want %q", got, want)
	}
}

// eventually polls cond until it holds or the wait runs out.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(waitFor)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}
