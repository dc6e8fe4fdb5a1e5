package natstest_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/internal/natstest"
)

func TestClusterKeepsAnR3StreamThroughTheLossOfItsLeader(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	nc, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "t.a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	leader := c.StreamLeader("T")
	if leader < 0 {
		t.Fatal("no node leads stream T")
	}
	c.Kill(leader)
	// The stream elects a new leader among the two left and takes writes.
	deadline := time.Now().Add(30 * time.Second)
	for {
		// A publish that went to the dead leader gets no answer: each try
		// has its own timeout, and one id, so that a try stored but not
		// answered is not stored twice.
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		_, err = js.Publish(pctx, "t.a", []byte("2"), jetstream.WithMsgID("2"))
		pcancel()
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("publish after killing the leader: %v", err)
	}
	c.Restart(leader)
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.State.Msgs; got != 2 {
		t.Errorf("stream holds %d messages, want 2", got)
	}
}
