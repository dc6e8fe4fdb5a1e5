package hostrelay

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/time/rate"

	"github.com/guestdiag/guestdiag/protocol"
)

func TestThrottledReaderKeepsToItsRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const size, perSec = 3 << 20, 1 << 20
		var n atomic.Uint64
		r := &throttledReader{
			ctx: t.Context(),
			r:   bytes.NewReader(make([]byte, size)),
			lim: rate.NewLimiter(perSec, DefaultMaxBytesBurst),
			n:   &n,
		}
		start := time.Now()
		buf := make([]byte, 2*DefaultMaxBytesBurst) // more than one payment may cover
		var got int
		for {
			k, err := r.Read(buf)
			if k > DefaultMaxBytesBurst {
				t.Fatalf("one read returned %d bytes, more than the burst of %d", k, DefaultMaxBytesBurst)
			}
			got += k
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		// The burst is free; the rest is paid for at the rate.
		want := time.Duration(float64(size-DefaultMaxBytesBurst) / perSec * float64(time.Second))
		if elapsed := time.Since(start); elapsed < want-time.Millisecond || elapsed > want+time.Millisecond {
			t.Errorf("read %d bytes in %v, want %v", size, elapsed, want)
		}
		if got != size || n.Load() != size {
			t.Errorf("read %d bytes and counted %d, want %d", got, n.Load(), size)
		}
	})
}

func TestThrottledReaderStopsWaitingWhenCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		r := &throttledReader{
			ctx: ctx,
			r:   bytes.NewReader(make([]byte, 2*protocol.MaxLineLen)),
			lim: rate.NewLimiter(1, protocol.MaxLineLen), // days of waiting for the second read
			n:   new(atomic.Uint64),
		}
		buf := make([]byte, protocol.MaxLineLen)
		if _, err := r.Read(buf); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := r.Read(buf)
			done <- err
		}()
		synctest.Wait()
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("read while cancelled: %v, want %v", err, context.Canceled)
		}
	})
}

func TestReserveBoundsTheBytesInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &session{
			r:       &Relay{cfg: Config{MaxInFlightBytes: 1000}, budget: newByteBudget(1 << 20)},
			freed:   make(chan struct{}, 1),
			dead:    make(chan struct{}),
			deadCtx: context.Background(),
		}
		if !s.reserve(1500) {
			t.Fatal("a message over the bound did not go with nothing in flight")
		}
		reserved := make(chan bool, 1)
		go func() { reserved <- s.reserve(600) }()
		synctest.Wait()
		select {
		case <-reserved:
			t.Fatal("reserved 600 more bytes with 1500 in flight and a bound of 1000")
		default:
		}
		s.release(1500)
		synctest.Wait()
		if !<-reserved {
			t.Fatal("reserve failed after the bytes in flight were released")
		}
		if got := s.held.Load(); got != 600 {
			t.Errorf("%d bytes held, want 600", got)
		}

		go func() { reserved <- s.reserve(600) }()
		synctest.Wait()
		close(s.dead) // the ack loop failed: nothing more is published
		if <-reserved {
			t.Error("reserve succeeded after the ack loop failed")
		}
	})
}

func TestReserveSharesTheRelaysBudgetAcrossConnections(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &Relay{cfg: Config{MaxInFlightBytes: 1000}, budget: newByteBudget(1000)}
		newSession := func() *session {
			return &session{r: r, freed: make(chan struct{}, 1), dead: make(chan struct{}), deadCtx: t.Context()}
		}
		a, b := newSession(), newSession()
		if !a.reserve(800) {
			t.Fatal("the first connection could not reserve 800 of 1000 bytes")
		}
		reserved := make(chan bool, 1)
		go func() { reserved <- b.reserve(800) }()
		synctest.Wait()
		select {
		case <-reserved:
			t.Fatal("a second connection reserved 800 bytes while the first held 800 of the relay's 1000")
		default:
		}
		a.release(800)
		synctest.Wait()
		if !<-reserved {
			t.Fatal("reserve failed after the first connection released its bytes")
		}
	})
}
