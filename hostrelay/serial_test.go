package hostrelay

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/checks"
	"github.com/guestdiag/guestdiag/guestagent"
	"github.com/guestdiag/guestdiag/internal/natsutil"
	"github.com/guestdiag/guestdiag/protocol"
)

// serialPort is a stand-in for QEMU's virtio-serial port with a unix socket
// chardev (server=on) and the guest's end of the port, since a guest
// kernel's port cannot exist in a unit test (test/vmlab has the real one).
// It is a guestagent.Transport. The relay connects to its socket; the agent
// writes through it. Like the real port:
//   - the agent's Connect returns only while the relay is connected;
//   - what the agent writes while no relay is connected, or into a relay
//     connection that is going away, is lost;
//   - the agent hears that the relay went away (EOF) only if the relay
//     stays away for longer than notice: a relay that reconnects faster
//     goes unnoticed, and the agent keeps writing, from the middle of its
//     stream, into the new connection.
type serialPort struct {
	ln     *net.UnixListener
	notice time.Duration

	mu      sync.Mutex
	host    net.Conn      // the relay's current connection, or nil
	hostGen uint64        // counts relay connections
	hostUp  chan struct{} // closed and replaced when a relay connects
	guest   net.Conn      // the bridge's end of the agent's current stream
	missed  int           // relay connections that joined the agent's stream mid-way
	noticed int           // relay disconnects the agent heard of
}

func newSerialPort(tb testing.TB, path string, notice time.Duration) *serialPort {
	tb.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tb.Fatal(err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		tb.Fatal(err)
	}
	p := &serialPort{ln: ln, notice: notice, hostUp: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.accept()
	}()
	tb.Cleanup(func() {
		ln.Close()
		<-done
		p.mu.Lock()
		if p.host != nil {
			p.host.Close()
		}
		if p.guest != nil {
			p.guest.Close()
		}
		p.mu.Unlock()
	})
	return p
}

func (p *serialPort) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.host != nil {
			p.host.Close() // QEMU serves one connection at a time
		}
		p.host = c
		p.hostGen++
		gen := p.hostGen
		close(p.hostUp)
		p.hostUp = make(chan struct{})
		guest := p.guest
		if guest != nil {
			p.missed++
		}
		p.mu.Unlock()
		if guest != nil {
			go p.toGuest(c, guest, gen)
		}
	}
}

// Connect is the agent opening its port: it waits for the relay.
func (p *serialPort) Connect(ctx context.Context) (io.ReadWriteCloser, error) {
	for {
		p.mu.Lock()
		host, gen, up := p.host, p.hostGen, p.hostUp
		if host != nil {
			agentEnd, bridgeEnd := net.Pipe()
			p.guest = bridgeEnd
			p.mu.Unlock()
			go p.fromGuest(bridgeEnd)
			go p.toGuest(host, bridgeEnd, gen)
			return agentEnd, nil
		}
		p.mu.Unlock()
		select {
		case <-up:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// fromGuest carries the agent's bytes to whichever relay connection is
// current, and drops them when there is none.
func (p *serialPort) fromGuest(guest net.Conn) {
	buf := make([]byte, 4096)
	for {
		n, err := guest.Read(buf)
		if n > 0 {
			p.mu.Lock()
			host := p.host
			p.mu.Unlock()
			if host != nil {
				_, _ = host.Write(buf[:n]) // a dying connection loses them
			}
		}
		if err != nil {
			return
		}
	}
}

// toGuest carries acks from one relay connection to the agent; when the
// connection ends, the agent hears of it only if no other came in time.
func (p *serialPort) toGuest(host, guest net.Conn, gen uint64) {
	_, _ = io.Copy(guest, host)
	host.Close()
	p.mu.Lock()
	if p.host == host {
		p.host = nil
	}
	p.mu.Unlock()
	// The guest's reader runs only after notice, the delay being modelled.
	time.AfterFunc(p.notice, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.guest != guest || p.host != nil && p.hostGen > gen {
			return
		}
		p.noticed++
		p.guest = nil
		guest.Close()
	})
}

// cut closes the relay's current connection, as a relay restart or a
// dropped socket would, and returns once the relay has connected again.
func (p *serialPort) cut(tb testing.TB) {
	tb.Helper()
	p.mu.Lock()
	host, gen := p.host, p.hostGen
	p.mu.Unlock()
	if host != nil {
		host.Close()
	}
	eventually(tb, "the relay reconnects after a cut", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.host != nil && p.hostGen > gen
	})
}

func (p *serialPort) counts() (missed, noticed int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.missed, p.noticed
}

// startAgent runs the real agent, with no checks and fast heartbeats so
// that it writes a steady stream, over tr until the test ends.
func startAgent(tb testing.TB, tr guestagent.Transport, stateDir string) context.CancelFunc {
	tb.Helper()
	off := false
	cfg := guestagent.Config{
		StateDir:          stateDir,
		Transport:         tr,
		HeartbeatInterval: 2 * time.Millisecond,
		AckTimeout:        5 * time.Second,
		Checks:            map[string]guestagent.CheckSettings{},
	}
	for _, r := range checks.All() {
		cfg.Checks[r.Name] = guestagent.CheckSettings{Enabled: &off}
	}
	log, _ := newTestLogger(tb)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- guestagent.Run(ctx, cfg, log.With("side", "agent")) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("agent: %v", err)
		}
	})
	return cancel
}

// storedSeqs returns, per run, how many times each seq of the channel's
// reports and heartbeats is in the stream. It reads the stream once, with
// an ordered consumer.
func storedSeqs(tb testing.TB, js jetstream.JetStream) map[string]map[uint64]int {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*waitFor)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, natsutil.StreamName, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"guestdiag.report.>", "guestdiag.heartbeat.>"},
	})
	if err != nil {
		tb.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string]map[uint64]int{}
	for left := info.NumPending; left > 0; {
		batch, err := cons.Fetch(int(min(left, 1000)), jetstream.FetchMaxWait(waitFor))
		if err != nil {
			tb.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			var r struct {
				Guest struct {
					Run string `json:"run"`
					Seq uint64 `json:"seq"`
				} `json:"guest"`
			}
			if err := json.Unmarshal(m.Data(), &r); err != nil {
				tb.Fatalf("stream message on %s: %v", m.Subject(), err)
			}
			if out[r.Guest.Run] == nil {
				out[r.Guest.Run] = map[uint64]int{}
			}
			out[r.Guest.Run][r.Guest.Seq]++
		}
		if err := batch.Error(); err != nil {
			tb.Fatal(err)
		}
		if got == 0 {
			tb.Fatalf("stream reading stopped with %d messages left", left)
		}
		left -= uint64(got)
	}
	return out
}

// streamCount returns how many messages the stream holds.
func streamCount(tb testing.TB, js jetstream.JetStream) uint64 {
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
	return info.State.Msgs
}

// checkContiguous checks that every run in the stream holds seqs 1 to its
// highest, each once, and returns the highest per run.
func checkContiguous(tb testing.TB, js jetstream.JetStream) map[string]uint64 {
	tb.Helper()
	tops := map[string]uint64{}
	for run, seqs := range storedSeqs(tb, js) {
		var top uint64
		for s := range seqs {
			top = max(top, s)
		}
		tops[run] = top
		var missing []uint64
		for s := uint64(1); s <= top; s++ {
			switch n := seqs[s]; {
			case n == 0:
				missing = append(missing, s)
			case n > 1:
				tb.Errorf("run %s: seq %d stored %d times", run, s, n)
			}
		}
		if len(missing) > 0 {
			tb.Errorf("run %s: %d of seqs 1..%d missing from the stream: %v", run, len(missing), top, clipSeqs(missing))
		}
	}
	return tops
}

func clipSeqs(s []uint64) []uint64 {
	if len(s) > 20 {
		return s[:20]
	}
	return s
}

// waitStoredPast waits until the stream holds more than n messages, and
// returns how many it holds.
func waitStoredPast(tb testing.TB, js jetstream.JetStream, n uint64) uint64 {
	tb.Helper()
	waitStream(tb, js)
	var count uint64
	eventually(tb, "the stream to move on", func() bool {
		count = streamCount(tb, js)
		return count > n
	})
	return count
}

// resumeLine is the resume an agent writes on its conn-th connection.
func resumeLine(tb testing.TB, conn uint64, held ...protocol.HeldRun) []byte {
	tb.Helper()
	if held == nil {
		held = []protocol.HeldRun{}
	}
	data, err := json.Marshal(protocol.Resume{Held: held})
	if err != nil {
		tb.Fatal(err)
	}
	return line(tb, protocol.Envelope{V: 1, Kind: protocol.KindResume, Run: "agent", Seq: conn, TS: time.Now().UTC(), Data: data})
}

// waitStream waits until a relay has created the stream.
func waitStream(tb testing.TB, js jetstream.JetStream) {
	tb.Helper()
	eventually(tb, "the relay to create the stream", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := js.Stream(ctx, natsutil.StreamName)
		return err == nil
	})
}
