package daemon

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/internal/natstest"
	"github.com/guestdiag/guestdiag/internal/natsutil"
	"github.com/guestdiag/guestdiag/protocol"
	"github.com/guestdiag/guestdiag/scheduler/inventory"
)

func TestTheDefaultHostBucketIsTheCollectors(t *testing.T) {
	if got, want := Defaults().HostBucket, collector.DefaultHostBucket; got != want {
		t.Errorf("got host_bucket %q, want the collector's %q", got, want)
	}
}

// startCollector runs a real collector on s and returns it once it can
// drain hosts.
func startCollector(t *testing.T, s *server.Server) *collector.Collector {
	t.Helper()
	c := collector.New(collector.Config{Listen: "127.0.0.1:0"}, natstest.Connect(t, s), slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return c
}

func drain(t *testing.T, c *collector.Collector, host string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; {
		err := c.Drain(t.Context(), host, "ops", "maintenance")
		if err == nil {
			return
		}
		if !errors.Is(err, collector.ErrNotConnected) || time.Now().After(deadline) {
			t.Fatalf("drain %s: %v", host, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func movedVMs(t *testing.T, p protocol.Plan, from string) []string {
	t.Helper()
	var vms []string
	for _, m := range p.Moves {
		if m.From != from {
			t.Errorf("a move off %s while %s drains: %+v", m.From, from, m)
		}
		vms = append(vms, m.VMs...)
	}
	slices.Sort(vms)
	return vms
}

// The stream keeps hints a while and a count per subject, all kinds on
// one subject: a drain made long ago may be gone from it. A scheduler
// started then must still know the host drains, from the collector's
// host bucket.
func TestARestartedSchedulerKeepsADrainTheStreamForgot(t *testing.T) {
	s, js := setup(t)
	publishFleet(t, js)
	drain(t, startCollector(t, s), "a")
	st, err := js.Stream(t.Context(), natsutil.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(t.Context(), jetstream.WithPurgeSubject(protocol.SubjectPrefix+".hint.*")); err != nil {
		t.Fatal(err)
	}
	plans := watchPlans(t, s)
	startDaemon(t, s, Config{Name: "sched-a"})
	p := plans.nextPlan(t, 5*time.Second)
	if got, want := movedVMs(t, p, "a"), []string{"hog", "small"}; !slices.Equal(got, want) {
		t.Errorf("got the first plan moving %v, want %v off the drained host a", got, want)
	}
}

// syncBuffer is a log sink the daemon writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestWithoutACollectorNoHostDrains(t *testing.T) {
	s, js := setup(t)
	publishFleet(t, js)
	plans := watchPlans(t, s)
	var logs syncBuffer
	startDaemon(t, s, Config{Name: "sched-a", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	p := plans.nextPlan(t, 5*time.Second)
	if len(p.Moves) != 1 || p.Moves[0].VMs[0] != "hog" {
		t.Errorf("got moves %+v, want hog's alone (no host drains)", p.Moves)
	}
	if got := strings.Count(logs.String(), "host_bucket_missing"); got != 1 {
		t.Errorf("got host_bucket_missing logged %d times, want once: %s", got, logs.String())
	}
}

// An undrain is a rewrite of the host record without its mark, like
// every sample's: the host must then no longer be emptied.
func TestAnUndrainedHostIsNoLongerDrained(t *testing.T) {
	s, js := setup(t)
	publishFleet(t, js)
	c := startCollector(t, s)
	drain(t, c, "a")
	fleet := inventory.NewFleet(inventory.Demand{})
	fleet.Observe(protocol.HostUsage{V: 1, Host: "a", IntervalS: 10}, time.Now())
	ready, err := watchDrains(t.Context(), js, collector.DefaultHostBucket, fleet, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-ready:
	case <-time.After(5 * time.Second):
		t.Fatal("the host bucket's records were not in within 5 s")
	}
	draining := func() bool { return fleet.Hosts(time.Now())[0].Draining }
	if !draining() {
		t.Fatal("got host a not draining after the collector drained it")
	}
	if err := c.Undrain(t.Context(), "a", "ops"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); draining(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("got host a still draining 5 s after the collector undrained it")
		}
	}
	drain(t, c, "a")
	for deadline := time.Now().Add(5 * time.Second); !draining(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("got host a not draining 5 s after the collector drained it again")
		}
	}
}
