package collector

import (
	"context"
	"sync"
	"time"
)

const (
	// flushEvery is how often coalesced heartbeats are written: last_seen
	// in the API lags the newest heartbeat by at most this plus the
	// watch's delay.
	flushEvery = time.Second
	// flushWorkers write one flush's records side by side; each write is
	// a round trip, and a flush holds one per VM that sent a heartbeat.
	flushWorkers = 8
)

type heartbeats struct {
	mu sync.Mutex
	m  map[string]*beat // by VM key: the newest heartbeat not yet written
}

// coalesce keeps the heartbeat of u unless a newer one of its VM is
// already waiting.
func (c *Collector) coalesce(u update) {
	key := Key(u.host, u.vm)
	o := beatOrigin(u.heartbeat)
	c.beats.mu.Lock()
	defer c.beats.mu.Unlock()
	if c.beats.m == nil {
		c.beats.m = make(map[string]*beat)
	}
	if cur, ok := c.beats.m[key]; ok {
		co := beatOrigin(cur)
		if !co.supersededBy(o) {
			return
		}
	}
	c.beats.m[key] = u.heartbeat
}

func beatOrigin(b *beat) Origin {
	return Origin{Run: b.envelope.Run, Seq: b.envelope.Seq, Received: b.report.Received}
}

// flushLoop writes the waiting heartbeats every flushEvery, and once more
// when ctx ends so that a collector stopping in order loses none.
func (c *Collector) flushLoop(ctx context.Context, b *backend) {
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
			c.flush(fctx, b)
			cancel()
			return
		case <-t.C:
			c.flush(ctx, b)
		}
	}
}

// flush writes every waiting heartbeat into its VM's record. One that
// cannot be written goes back to wait for the next flush, unless a newer
// one came meanwhile.
func (c *Collector) flush(ctx context.Context, b *backend) {
	c.beats.mu.Lock()
	pending := c.beats.m
	c.beats.m = nil
	c.beats.mu.Unlock()
	if len(pending) == 0 {
		return
	}
	work := make(chan *beat)
	var wg sync.WaitGroup
	for range min(flushWorkers, len(pending)) {
		wg.Go(func() {
			for hb := range work {
				u := update{host: hb.report.Host, vm: hb.report.VM, apply: func(v *VM) outcome { return applyReport(v, &hb.report, &hb.envelope) }}
				if _, err := c.store(ctx, b, u); err != nil {
					if ctx.Err() == nil {
						c.log.Warn("heartbeat_flush_failed", "host", u.host, "vm", u.vm, "err", err)
					}
					c.coalesce(update{host: u.host, vm: u.vm, heartbeat: hb})
				}
			}
		})
	}
	for _, hb := range pending {
		work <- hb
	}
	close(work)
	wg.Wait()
}
