package collector

import (
	"context"
	"sync"
)

// subscriberBuffer is how many changes a subscriber may fall behind before
// it misses some.
const subscriberBuffer = 256

type subscribers struct {
	mu sync.Mutex
	m  map[chan Change]struct{}
}

func (s *subscribers) init() { s.m = make(map[chan Change]struct{}) }

// Subscribe returns a channel of changes to VMs and alerts, closed when
// ctx ends. A subscriber that does not keep up misses changes rather than
// stalling the collector; a Change says only what to re-read, so the next
// one it gets brings it up to date.
func (c *Collector) Subscribe(ctx context.Context) <-chan Change {
	ch := make(chan Change, subscriberBuffer)
	c.subs.mu.Lock()
	c.subs.m[ch] = struct{}{}
	c.subs.mu.Unlock()
	context.AfterFunc(ctx, func() {
		c.subs.mu.Lock()
		delete(c.subs.m, ch)
		close(ch)
		c.subs.mu.Unlock()
	})
	return ch
}

func (c *Collector) changed(ch Change) {
	c.subs.mu.Lock()
	defer c.subs.mu.Unlock()
	for s := range c.subs.m {
		select {
		case s <- ch:
		default:
		}
	}
}
