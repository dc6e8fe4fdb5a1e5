package hostrelay

import (
	"context"
	"log/slog"
	"math"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// DropReason says why a guest line was not published.
type DropReason string

// Why lines are dropped. Only RateLimited and PublishFailed lines come back:
// they are not acknowledged, so the agent resends them. The others are
// acknowledged with the lines around them, because resending them would not
// make them valid.
const (
	DropOversized     DropReason = "oversized"
	DropTruncated     DropReason = "truncated"
	DropMalformed     DropReason = "malformed"
	DropVersion       DropReason = "version"
	DropInvalid       DropReason = "invalid"
	DropRateLimited   DropReason = "rate_limited"
	DropPublishFailed DropReason = "publish_failed"
)

var dropReasons = [...]DropReason{DropOversized, DropTruncated, DropMalformed, DropVersion, DropInvalid, DropRateLimited, DropPublishFailed}

// VMStats counts what the relay has seen from one VM since it started.
type VMStats struct {
	// Connected is true while a channel of the VM is connected.
	Connected bool
	Connects  uint64
	// Lines counts non-blank lines read, valid or not.
	Lines uint64
	// Published counts messages JetStream confirmed, Duplicates included.
	Published uint64
	// Duplicates counts resends JetStream already held.
	Duplicates uint64
	// Acks counts ack lines written to the guest.
	Acks    uint64
	Dropped map[DropReason]uint64
}

// Log budget for dropped-line messages of one VM, so that a hostile guest
// cannot flood the host's log.
const (
	dropLogEvery = time.Second
	dropLogBurst = 10
)

// vmState is what the relay keeps per VM name across connections.
type vmState struct {
	limiter *rate.Limiter
	logs    *rate.Limiter
	// suppressed counts drop messages not logged since the last one that was.
	suppressed atomic.Uint64

	conns      atomic.Int64
	connects   atomic.Uint64
	lines      atomic.Uint64
	published  atomic.Uint64
	duplicates atomic.Uint64
	acks       atomic.Uint64
	dropped    [len(dropReasons)]atomic.Uint64
}

func newVMState(perSec float64, burst int) *vmState {
	lim := rate.Limit(perSec)
	if math.IsInf(perSec, 1) {
		lim = rate.Inf
	}
	return &vmState{
		limiter: rate.NewLimiter(lim, burst),
		logs:    rate.NewLimiter(rate.Every(dropLogEvery), dropLogBurst),
	}
}

func (v *vmState) drop(reason DropReason) {
	for i, r := range dropReasons {
		if r == reason {
			v.dropped[i].Add(1)
			return
		}
	}
}

// logDrop logs a dropped line unless the VM has used up its log budget; the
// next message that is logged says how many were suppressed.
func (v *vmState) logDrop(ctx context.Context, log *slog.Logger, msg string, attrs ...slog.Attr) {
	if !v.logs.Allow() {
		v.suppressed.Add(1)
		return
	}
	if n := v.suppressed.Swap(0); n > 0 {
		attrs = append(attrs, slog.Uint64("suppressed", n))
	}
	log.LogAttrs(ctx, slog.LevelWarn, msg, attrs...)
}

// refillDelay is how long the VM's bucket needs to fill up again.
func (v *vmState) refillDelay() time.Duration {
	lim := v.limiter.Limit()
	if lim == rate.Inf || lim <= 0 {
		return 0
	}
	missing := float64(v.limiter.Burst()) - v.limiter.Tokens()
	if missing <= 0 {
		return 0
	}
	return time.Duration(missing / float64(lim) * float64(time.Second))
}

func (v *vmState) snapshot() VMStats {
	s := VMStats{
		Connected:  v.conns.Load() > 0,
		Connects:   v.connects.Load(),
		Lines:      v.lines.Load(),
		Published:  v.published.Load(),
		Duplicates: v.duplicates.Load(),
		Acks:       v.acks.Load(),
		Dropped:    make(map[DropReason]uint64),
	}
	for i, r := range dropReasons {
		if n := v.dropped[i].Load(); n > 0 {
			s.Dropped[r] = n
		}
	}
	return s
}
