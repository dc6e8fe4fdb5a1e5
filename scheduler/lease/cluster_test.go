package lease

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/internal/natstest"
)

func TestTheLeaseSurvivesTheLossOfTheNodeLeadingIt(t *testing.T) {
	const ttl = time.Second
	c := natstest.StartCluster(t, 3)
	var ins []*instance
	for _, name := range []string{"sched-a", "sched-b"} {
		nc, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		l, err := Open(t.Context(), js, Config{Name: name, TTL: ttl, Replicas: 3}, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		in := &instance{nc: nc, lease: l, cancel: cancel, done: make(chan error, 1)}
		go func() { in.done <- l.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-in.done })
		ins = append(ins, in)
	}
	waitHolder(t, ttl, ins...)
	leader := c.StreamLeader("KV_" + DefaultBucket)
	if leader < 0 {
		t.Fatal("no node leads the lease bucket")
	}
	c.Kill(leader)
	// waitHolder fails if both hold at once; the bucket's new leader is
	// elected within a few seconds, and the lease then has a holder again.
	lost := time.Now()
	_, took := waitHolder(t, 10*time.Second, ins...)
	for time.Since(lost) < 2*ttl {
		waitHolder(t, 10*time.Second, ins...)
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("a holder %v after the loss", took)
}
