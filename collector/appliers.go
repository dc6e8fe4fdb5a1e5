package collector

import (
	"context"
	"hash/maphash"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// appliers is how many messages one collector applies at once. A result
// waits for a compare-and-set of its VM's record, which on an R3 bucket is
// a round trip through the stream leader and a quorum (0.7–1.4 ms on
// loopback, several ms on a loaded host: test/loadgen's BenchmarkKVUpdate);
// applied one at a time that bounded a collector to a few hundred messages
// a second with its CPU idle (docs/benchmarks.md, "Fleet scale").
const appliers = 32

// applierQueue is how many messages wait for one applier; the consumer's
// pull batch bounds what a collector holds in all.
const applierQueue = 4

// applierPool hands each message to the applier of its VM, so that one
// VM's messages are applied in stream order, as with one applier, while
// different VMs' round trips overlap. Ordering across VMs was never
// promised: several collectors already apply them in parallel.
type applierPool struct {
	queues []chan jetstream.Msg
	seed   maphash.Seed
	wg     sync.WaitGroup
}

func (c *Collector) startAppliers(ctx context.Context, b *backend) *applierPool {
	p := &applierPool{queues: make([]chan jetstream.Msg, appliers), seed: maphash.MakeSeed()}
	finishing := context.WithoutCancel(ctx)
	for i := range p.queues {
		q := make(chan jetstream.Msg, applierQueue)
		p.queues[i] = q
		p.wg.Go(func() {
			for msg := range q {
				if ctx.Err() != nil {
					// Stopping: hand back what has not started, so that
					// another collector takes it now.
					_ = msg.Nak()
					continue
				}
				// A message once started is finished, record and alert
				// together, even when the collector is stopping: with
				// many in flight, cutting them off would leave many
				// transitions for another collector's sweep.
				c.handle(finishing, b, msg)
			}
		})
	}
	return p
}

// apply queues msg for the applier of the VM its subject names.
func (p *applierPool) apply(msg jetstream.Msg) {
	p.queues[maphash.String(p.seed, vmOfSubject(msg.Subject()))%uint64(len(p.queues))] <- msg
}

// stop waits until every queued message has been handled.
func (p *applierPool) stop() {
	for _, q := range p.queues {
		close(q)
	}
	p.wg.Wait()
}

// vmOfSubject is the host and VM tokens of guestdiag.<kind>.<host>.<vm>…,
// or the subject itself when it names no VM.
func vmOfSubject(subject string) string {
	rest := subject
	for range 2 { // the prefix and the kind
		_, after, ok := strings.Cut(rest, ".")
		if !ok {
			return subject
		}
		rest = after
	}
	host, after, ok := strings.Cut(rest, ".")
	if !ok {
		return subject
	}
	vm, _, _ := strings.Cut(after, ".")
	return host + "." + vm
}
