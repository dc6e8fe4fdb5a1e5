package hostrelay

import (
	"context"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
)

// guestFault lists the drop reasons that are the guest's doing; a publish
// failure is the relay's or the server's.
func guestFault(r DropReason) bool { return r != DropPublishFailed }

// reportViolations publishes, every ViolationInterval, one violations event
// for each VM that sent something refused since the last one, with the
// counts by reason. A guest that sends nothing but garbage costs the stream
// one small message per interval, and the relay nothing that grows.
func (r *Relay) reportViolations(ctx context.Context) {
	tick := time.NewTicker(r.cfg.ViolationInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			r.flushViolations() // what came since the last tick
			return
		case <-tick.C:
			r.flushViolations()
		}
	}
}

func (r *Relay) flushViolations() {
	type due struct {
		ch     Channel
		counts map[string]uint64
	}
	var out []due
	r.mu.Lock()
	for _, v := range r.vms {
		if counts := v.newViolations(); counts != nil && v.ch.Path != "" {
			out = append(out, due{v.ch, counts})
		}
	}
	r.mu.Unlock()
	for _, d := range out {
		r.publishViolations(d.ch, d.counts)
	}
}

// newViolations returns the guest's drops since the last call by reason, or
// nil if there were none. Called with Relay.mu held, by one goroutine.
func (v *vmState) newViolations() map[string]uint64 {
	var counts map[string]uint64
	for i, reason := range dropReasons {
		n := v.dropped[i].Load()
		if !guestFault(reason) || n == v.reported[i] {
			continue
		}
		if counts == nil {
			counts = make(map[string]uint64)
		}
		counts[string(reason)] = n - v.reported[i]
		v.reported[i] = n
	}
	return counts
}

func (r *Relay) publishViolations(ch Channel, counts map[string]uint64) {
	r.publishEvent(ch, protocol.ChannelEvent{State: protocol.ChannelViolations, Reason: "guest sent what the relay refused", Counts: counts})
}
