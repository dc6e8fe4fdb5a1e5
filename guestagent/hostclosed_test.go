package guestagent

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/guestdiag/guestdiag/checks"
	"github.com/guestdiag/guestdiag/protocol"
)

// closedHost refuses connections, as a host side with nothing listening
// does, until opened; then it hands out net.Pipe connections.
type closedHost struct {
	open atomic.Bool
	pipe *pipeTransport
}

func (c *closedHost) Connect(ctx context.Context) (io.ReadWriteCloser, error) {
	if !c.open.Load() {
		return nil, errors.New("connection refused")
	}
	return c.pipe.Connect(ctx)
}

// TestHostClosedWhileTheAgentProduces keeps the host closed for five
// minutes of the bubble's clock while a check reports every second, then
// opens it: every message arrives, in spool order, none twice.
func TestHostClosedWhileTheAgentProduces(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &closedHost{pipe: newPipeTransport()}
		cfg := Config{StateDir: t.TempDir(), HeartbeatInterval: 10 * time.Second}.withDefaults()
		a := newAgent(cfg, tr, []checks.Runner{{Check: &fakeCheck{}, Interval: time.Second, Timeout: time.Minute}}, discardLogger())
		a.hello = func(context.Context) protocol.Hello { return protocol.Hello{OS: "linux", AgentVersion: "dev"} }
		a.systemUptime = func(context.Context) uint64 { return 1 }
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- a.run(ctx) }()

		time.Sleep(5 * time.Minute)
		synctest.Wait() // orders run's setup before the reads below
		spooledWhileClosed := a.spool.waiting()
		tr.open.Store(true)
		h := tr.pipe.connect(t, time.Minute)
		h.expectNewline(t)
		opened := time.Now()
		var got []uint64
		for time.Since(opened) < time.Minute {
			e := h.envelope(t)
			got = append(got, e.Seq)
			h.ack(t, e.Run, e.Seq)
		}
		cancel()
		h.conn.Close()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		total := a.nextSeq - 1
		checkDelivery(t, got, total, a.spool)
		if spooledWhileClosed < 300 {
			t.Errorf("%d messages spooled while the host was closed, want at least 300 (one result a second)", spooledWhileClosed)
		}
		if n := a.spool.droppedCount(); n != 0 {
			t.Errorf("%d messages dropped, want none", n)
		}
	})
}

// checkDelivery checks that the seqs the host got are 1, 2, 3, ... with
// none missing and none twice, and that with those still spooled (which
// may include the last ones received, whose ack came too late) they are
// every seq the agent used.
func checkDelivery(t *testing.T, got []uint64, total uint64, sp *spool) {
	t.Helper()
	for i, seq := range got {
		if seq != uint64(i+1) {
			t.Fatalf("message %d arrived as seq %d, want %d: out of order, doubled or missing (first 20: %v)", i, seq, i+1, got[:min(20, len(got))])
		}
	}
	covered := uint64(len(got))
	for rec, ok := sp.next(0); ok; rec, ok = sp.next(rec.id) {
		if rec.seq > covered+1 {
			t.Fatalf("seq %d neither arrived nor is spooled", covered+1)
		}
		covered = max(covered, rec.seq)
	}
	if covered != total {
		t.Errorf("host got %d and the spool holds up to seq %d, want all %d", len(got), covered, total)
	}
	t.Logf("%d messages arrived in order, none twice; %d still spooled at the end", len(got), sp.waiting())
}

// TestIntegrationHostClosedFiveMinutes is the same on the wall clock, over
// a Unix socket standing in for the vsock host side (this machine has no
// AF_VSOCK device): the agent's vsock transport dials it, through its
// injectable dial function, and is refused while nothing listens.
func TestIntegrationHostClosedFiveMinutes(t *testing.T) {
	closedFor := 5 * time.Minute
	if os.Getenv("GUESTDIAG_AGENT_LONG") == "" {
		t.Skip("takes 5.5 minutes; set GUESTDIAG_AGENT_LONG=1 to run it")
	}
	if d, err := time.ParseDuration(os.Getenv("GUESTDIAG_AGENT_LONG")); err == nil {
		closedFor = d
	}
	sock := filepath.Join(t.TempDir(), "host.sock")
	v := newVsockTransport(Config{}.withDefaults(), discardLogger())
	v.dial = func(ctx context.Context, _, _ uint32) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}
	sel := vsockOnly(v)
	cfg := Config{StateDir: t.TempDir(), HeartbeatInterval: 10 * time.Second}.withDefaults()
	a := newAgent(cfg, sel, []checks.Runner{{Check: &fakeCheck{}, Interval: 100 * time.Millisecond, Timeout: time.Minute}}, discardLogger())
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- a.run(ctx) }()

	time.Sleep(closedFor) // the host stays closed this long; nothing is waited for
	// Nothing was delivered, so every seq used so far is spooled.
	a.mu.Lock()
	spooledWhileClosed := int(a.nextSeq - 1)
	a.mu.Unlock()
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	conn, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	opened := time.Now()
	lr := protocol.NewReader(conn, protocol.MaxLineLen+1)
	var got []uint64
	for time.Since(opened) < 30*time.Second {
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		line, err := lr.ReadLine()
		if err != nil {
			t.Fatalf("reading: %v", err)
		}
		if len(line) == 0 {
			continue
		}
		e, err := protocol.Decode(line)
		if err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		got = append(got, e.Seq)
		b, _ := protocol.Marshal(protocol.NewAck(e.Run, e.Seq))
		if _, err := conn.Write(b); err != nil {
			t.Fatal(err)
		}
		if len(got) == spooledWhileClosed {
			t.Logf("the %d messages spooled while closed arrived %v after opening", len(got), time.Since(opened).Round(time.Millisecond))
		}
	}
	cancel()
	conn.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("host closed for %v, open for 30s; %d spooled while closed", closedFor, spooledWhileClosed)
	checkDelivery(t, got, a.nextSeq-1, a.spool)
	if n := a.spool.droppedCount(); n != 0 {
		t.Errorf("%d messages dropped, want none", n)
	}
	t.Logf("total run %v", time.Since(start).Round(time.Second))
}

// vsockOnly is the selector Run builds for transports: [vsock].
func vsockOnly(v *vsockTransport) *selector {
	cfg := Config{}.withDefaults()
	return &selector{
		list:          []namedTransport{{TransportVsock, v}},
		fallbackAfter: cfg.FallbackAfter, retryPreferred: cfg.RetryPreferred,
		logger: discardLogger(), lastErr: map[string]string{},
	}
}
