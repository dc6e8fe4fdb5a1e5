package hostrelay

import (
	"context"
	"sync/atomic"

	"golang.org/x/sync/semaphore"
)

// readBufSize is each connection's read buffer: an agent's lines are a
// few KiB, and 1,000 connections with 64 KiB buffers would hold 64 MiB.
const readBufSize = 8 << 10

// byteBudget is the relay-wide bound on bytes in flight, shared by every
// connection, so that 1,000 channels cannot hold 1,000 × MaxInFlightBytes.
// Waiters are served in order, so a channel with many small messages cannot
// starve one with a large message.
type byteBudget struct {
	sem   *semaphore.Weighted
	total int64
	used  atomic.Int64 // for the metrics
}

func newByteBudget(total int) *byteBudget {
	return &byteBudget{sem: semaphore.NewWeighted(int64(total)), total: int64(total)}
}

// msgOverhead is what a message in flight holds beside its bytes: its
// headers with the message id, the publish future with its timeout timer
// and channels, the NATS client's bookkeeping. A heap profile of 1,000
// busy channels (BenchmarkRelay1000Channels) showed about 1.4 KiB of these
// per message in flight. Counting it keeps the budget a bound on memory
// rather than on report bytes alone.
const msgOverhead = 1536

// cost is what a message of n bytes takes from the budget: one larger than
// the whole budget takes all of it, so that it can still go alone.
func (b *byteBudget) cost(n int64) int64 { return min(n+msgOverhead, b.total) }

// acquire waits for n bytes and reports false if ctx ends first.
func (b *byteBudget) acquire(ctx context.Context, n int64) bool {
	if b.sem.Acquire(ctx, b.cost(n)) != nil {
		return false
	}
	b.used.Add(b.cost(n))
	return true
}

func (b *byteBudget) release(n int64) {
	b.used.Add(-b.cost(n))
	b.sem.Release(b.cost(n))
}
