package lease

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/internal/natstest"
)

type instance struct {
	nc     *nats.Conn
	lease  *Lease
	cancel context.CancelFunc
	done   chan error
}

// start runs an instance with cfg's lease on a connection to urls.
func start(t *testing.T, urls string, cfg Config, opts ...nats.Option) *instance {
	t.Helper()
	nc, err := nats.Connect(urls, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	l, err := Open(t.Context(), js, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{nc: nc, lease: l, cancel: cancel, done: make(chan error, 1)}
	go func() { in.done <- l.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-in.done })
	return in
}

// waitHolder polls until exactly one of ins holds the lease and returns it.
func waitHolder(t *testing.T, deadline time.Duration, ins ...*instance) (*instance, time.Duration) {
	t.Helper()
	begin := time.Now()
	for time.Since(begin) < deadline {
		var held []*instance
		for _, in := range ins {
			if in.lease.Held() {
				held = append(held, in)
			}
		}
		if len(held) > 1 {
			t.Fatalf("%d instances hold the lease at once", len(held))
		}
		if len(held) == 1 {
			return held[0], time.Since(begin)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("nobody held the lease within %v", deadline)
	return nil, 0
}

func TestOneSchedulerActsAndTheOtherTakesOver(t *testing.T) {
	const ttl = time.Second
	s := natstest.Start(t)
	a := start(t, s.ClientURL(), Config{Name: "sched-a", TTL: ttl})
	b := start(t, s.ClientURL(), Config{Name: "sched-b", TTL: ttl})

	holder, _ := waitHolder(t, ttl, a, b)
	other := b
	if holder == b {
		other = a
	}
	if err := holder.lease.Check(t.Context()); err != nil {
		t.Fatalf("the holder's check: %v", err)
	}
	if err := other.lease.Check(t.Context()); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("the other's check: got %v, want ErrNotHeld", err)
	}
	// Both keep renewing and trying for a while; the lease stays put.
	for end := time.Now().Add(ttl); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if !holder.lease.Held() || other.lease.Held() {
			t.Fatal("the lease changed hands while its holder ran")
		}
	}

	t.Run("a holder that dies is replaced within the TTL and a renew period", func(t *testing.T) {
		// Its connection goes first, so it cannot give the lease up: the
		// other must wait for the key to expire.
		holder.nc.Close()
		got, took := waitHolder(t, 3*ttl, other)
		if got != other {
			t.Fatal("the wrong instance holds the lease")
		}
		if limit := ttl + ttl/3 + 500*time.Millisecond; took > limit {
			t.Errorf("took over after %v, want at most %v", took, limit)
		}
		if holder.lease.Held() {
			t.Error("the dead holder still says it holds the lease")
		}
		if err := holder.lease.Check(context.Background()); err == nil {
			t.Error("the dead holder's check passed")
		}
	})
	t.Run("a holder that stops gives the lease up at once", func(t *testing.T) {
		c := start(t, s.ClientURL(), Config{Name: "sched-c", TTL: ttl})
		other.cancel()
		<-other.done
		other.done <- nil
		if got, took := waitHolder(t, ttl, c); got != c || took > ttl/3+500*time.Millisecond {
			t.Errorf("took %v to take over a released lease, want about one renew period", took)
		}
	})
}
