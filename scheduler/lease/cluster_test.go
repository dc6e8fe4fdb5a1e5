package lease

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/guestdiag/guestdiag/internal/natstest"
)

func TestTheLeaseSurvivesTheLossOfTheNodeLeadingIt(t *testing.T) {
	const ttl = time.Second
	c := natstest.StartCluster(t, 3)
	var ins []*instance
	for _, name := range []string{"sched-a", "sched-b"} {
		ins = append(ins, start(t, c.URLs(), Config{Name: name, TTL: ttl, Replicas: 3},
			nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond)))
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
