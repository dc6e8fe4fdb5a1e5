package hostrelay

import (
	"context"
	"sync/atomic"

	"golang.org/x/sync/semaphore"
)

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

// cost is what n bytes take from the budget: a message larger than the
// whole budget takes all of it, so that it can still go alone.
func (b *byteBudget) cost(n int64) int64 { return min(n, b.total) }

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
