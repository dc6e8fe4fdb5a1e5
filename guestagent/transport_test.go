package guestagent

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/guestdiag/guestdiag/checks"
	"github.com/guestdiag/guestdiag/protocol"
)

// testSelector prefers a over b, falls back after 30s and retries a every
// 5m, and records what it calls onActive with.
func testSelector(a, b Transport) (*selector, func() []string) {
	var (
		mu     sync.Mutex
		active []string
	)
	s := &selector{
		list:          []namedTransport{{"a", a}, {"b", b}},
		fallbackAfter: 30 * time.Second, retryPreferred: 5 * time.Minute,
		logger: discardLogger(), lastErr: map[string]string{},
		onActive: func(name string) {
			mu.Lock()
			defer mu.Unlock()
			active = append(active, name)
		},
	}
	return s, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(active)
	}
}

func TestSelectorUsesThePreferredTransportWhenItConnects(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := newPipeTransport(), newPipeTransport()
		s, active := testSelector(a, b)
		got := make(chan io.ReadWriteCloser, 1)
		go func() {
			c, err := s.Connect(t.Context())
			if err != nil {
				t.Errorf("Connect: %v", err)
			}
			got <- c
		}()
		a.connect(t, time.Second)
		c := <-got
		defer c.Close()
		if _, wrapped := c.(*activeConn); wrapped {
			t.Error("the preferred transport's connection is wrapped for probing, want it as is")
		}
		if want := []string{"a"}; !slices.Equal(active(), want) {
			t.Errorf("onActive calls %v, want %v", active(), want)
		}
	})
}

func TestSelectorFallsBackAndReturnsToThePreferredTransport(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := newPipeTransport(), newPipeTransport()
		s, active := testSelector(a, b)
		start := time.Now()
		conns := make(chan io.ReadWriteCloser)
		connect := func() {
			c, err := s.Connect(t.Context())
			if err != nil {
				t.Errorf("Connect: %v", err)
			}
			conns <- c
		}
		go connect()
		hostB := b.connect(t, time.Minute)
		c1 := <-conns
		if got := time.Since(start); got != 30*time.Second {
			t.Errorf("fell back after %v, want the fallback_after of 30s", got)
		}
		if s.Active() != "b" {
			t.Errorf("active = %q, want b", s.Active())
		}

		// The sender keeps reading its connection over b.
		readErr := make(chan error, 1)
		go func() {
			_, err := c1.Read(make([]byte, 1))
			readErr <- err
		}()
		a.connect(t, 6*time.Minute)
		if got := time.Since(start); got != 30*time.Second+5*time.Minute {
			t.Errorf("preferred transport retried at %v, want 5m after the fallback", got)
		}
		if err := <-readErr; err == nil {
			t.Error("the connection over b still reads after a came back, want it closed")
		}
		// As the sender does once its connection ended.
		go connect()
		c2 := <-conns
		if got := time.Since(start); got != 30*time.Second+5*time.Minute {
			t.Errorf("reconnected at %v, want at once, over the connection the probe made", got)
		}
		defer c2.Close()
		if s.Active() != "a" {
			t.Errorf("active = %q, want a again", s.Active())
		}
		if want := []string{"b", "a"}; !slices.Equal(active(), want) {
			t.Errorf("onActive calls %v, want %v", active(), want)
		}
		hostB.conn.Close()
	})
}

type unsupportedTransport struct{}

func (unsupportedTransport) Connect(context.Context) (io.ReadWriteCloser, error) {
	return nil, errors.ErrUnsupported
}

func TestSelectorSkipsAnUnsupportedTransport(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newPipeTransport()
		s, _ := testSelector(unsupportedTransport{}, b)
		start := time.Now()
		done := make(chan struct{})
		go func() {
			defer close(done)
			if _, err := s.Connect(t.Context()); err != nil {
				t.Errorf("Connect: %v", err)
			}
		}()
		b.connect(t, time.Second)
		<-done
		if got := time.Since(start); got != 0 {
			t.Errorf("reached b after %v, want at once: an unsupported transport is not waited for", got)
		}
	})
}

func TestSelectorIsFinalOnlyWhenNoTransportIsSupported(t *testing.T) {
	s, _ := testSelector(unsupportedTransport{}, unsupportedTransport{})
	if _, err := s.Connect(t.Context()); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Connect = %v, want an error wrapping errors.ErrUnsupported", err)
	}
}

func TestVsockTransportDialsTheHostAndTheSelectorRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var (
			calls []time.Duration
			addrs [][2]uint32
		)
		start := time.Now()
		hostEnd := make(chan net.Conn, 1)
		v := newVsockTransport(Config{}.withDefaults(), discardLogger())
		// A stand-in for AF_VSOCK, which this machine may lack: refused
		// twice, as when the host side listens late.
		v.dial = func(ctx context.Context, cid, port uint32) (net.Conn, error) {
			calls = append(calls, time.Since(start))
			addrs = append(addrs, [2]uint32{cid, port})
			if len(calls) < 3 {
				return nil, errors.New("connection reset by peer")
			}
			g, h := net.Pipe()
			hostEnd <- h
			return g, nil
		}
		s := &selector{list: []namedTransport{{TransportVsock, v}}, logger: discardLogger(), lastErr: map[string]string{}}
		c, err := s.Connect(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		h := <-hostEnd
		defer h.Close()
		if want := []time.Duration{0, 2 * time.Second, 4 * time.Second}; !slices.Equal(calls, want) {
			t.Errorf("dialled at %v, want %v", calls, want)
		}
		if addrs[0] != [2]uint32{2, DefaultVsockPort} {
			t.Errorf("dialled CID %d port %d, want the host, CID 2, at port %d", addrs[0][0], addrs[0][1], DefaultVsockPort)
		}
		go c.Write([]byte("x\n"))
		b := make([]byte, 2)
		if _, err := io.ReadFull(h, b); err != nil || string(b) != "x\n" {
			t.Errorf("host read %q, %v", b, err)
		}
	})
}

func TestAgentNamesTheActiveTransportInAHello(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := newPipeTransport(), newPipeTransport()
		s, _ := testSelector(a, b)
		cfg := Config{StateDir: t.TempDir(), HeartbeatInterval: time.Hour}.withDefaults()
		ag := newAgent(cfg, s, []checks.Runner{{Check: &fakeCheck{}, Interval: time.Hour, Timeout: time.Minute}}, discardLogger())
		s.onActive = ag.transportChanged
		ag.hello = func(context.Context) protocol.Hello { return protocol.Hello{OS: "linux", AgentVersion: "dev"} }
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- ag.run(ctx) }()
		h := b.connect(t, time.Minute)
		h.expectNewline(t)
		var transports []string
		for range 3 {
			e := h.envelope(t)
			if e.Kind != protocol.KindHello {
				continue
			}
			var hd protocol.Hello
			if err := json.Unmarshal(e.Data, &hd); err != nil {
				t.Fatal(err)
			}
			transports = append(transports, hd.Transport)
		}
		if want := []string{"", "b"}; !slices.Equal(transports, want) {
			t.Errorf("hellos name transports %q, want %q: none before the first connection, then the fallback", transports, want)
		}
		cancel()
		h.conn.Close()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

// flakyTransport fails at once its first fails calls, then hands out pipe
// connections.
type flakyTransport struct {
	fails int
	calls atomic.Int32
	pipe  *pipeTransport
}

func (f *flakyTransport) Connect(ctx context.Context) (io.ReadWriteCloser, error) {
	if int(f.calls.Add(1)) <= f.fails {
		return nil, errors.New("connection refused")
	}
	return f.pipe.Connect(ctx)
}

func TestSelectorKeepsTryingWithoutSpinningWhenEveryTransportFailsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &flakyTransport{fails: 3, pipe: newPipeTransport()}
		b := &flakyTransport{fails: 1 << 30}
		s, _ := testSelector(a, b)
		start := time.Now()
		got := make(chan error, 1)
		go func() {
			c, err := s.Connect(t.Context())
			if c != nil {
				defer c.Close()
			}
			got <- err
		}()
		a.pipe.connect(t, time.Minute)
		if err := <-got; err != nil {
			t.Fatalf("Connect = %v, want it to keep trying, not give up", err)
		}
		if elapsed := time.Since(start); elapsed != 3*connectRetry {
			t.Errorf("connected after %v, want 3 rounds %v apart", elapsed, connectRetry)
		}
		if n := b.calls.Load(); n != 3 {
			t.Errorf("b tried %d times, want once per failed round of a (3)", n)
		}
	})
}
