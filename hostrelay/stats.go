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

// Why lines are dropped. RateLimited, PublishFailed and Truncated lines come
// back: they are not acknowledged, so the agent resends them. The others
// leave a hole in their run's seqs, which the relay cannot tell from a lost
// message: like any gap it ends the connection once so that the agent
// resends, and when the line comes back no better the gap is accepted.
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
	Acks uint64
	// Bytes counts bytes read from the channel, blank lines and dropped
	// lines included.
	Bytes uint64
	// Gaps counts gaps in a run's seqs that the relay gave up waiting for:
	// messages the agent no longer had, such as those its full spool
	// dropped.
	Gaps    uint64
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
	limiter *rate.Limiter // lines
	bytes   *rate.Limiter // bytes read
	logs    *rate.Limiter
	// suppressed counts drop messages not logged since the last one that was.
	suppressed atomic.Uint64

	conns      atomic.Int64
	connects   atomic.Uint64
	lines      atomic.Uint64
	read       atomic.Uint64
	published  atomic.Uint64
	duplicates atomic.Uint64
	acks       atomic.Uint64
	gaps       atomic.Uint64
	dropped    [len(dropReasons)]atomic.Uint64
}

func newVMState(cfg Config) *vmState {
	return &vmState{
		limiter: rate.NewLimiter(limit(cfg.Rate), cfg.Burst),
		bytes:   rate.NewLimiter(limit(cfg.MaxBytesRate), cfg.MaxBytesBurst),
		logs:    rate.NewLimiter(rate.Every(dropLogEvery), dropLogBurst),
	}
}

func limit(perSec float64) rate.Limit {
	if math.IsInf(perSec, 1) {
		return rate.Inf
	}
	return rate.Limit(perSec)
}

func (v *vmState) drop(reason DropReason) {
	for i, r := range dropReasons {
		if r == reason {
			v.dropped[i].Add(1)
			return
		}
	}
}

// logGuest logs what a guest did unless the VM has used up its log budget;
// the next message that is logged says how many were suppressed.
func (v *vmState) logGuest(ctx context.Context, log *slog.Logger, level slog.Level, msg string, attrs ...slog.Attr) {
	if !log.Enabled(ctx, level) {
		return
	}
	if !v.logs.Allow() {
		v.suppressed.Add(1)
		return
	}
	if n := v.suppressed.Swap(0); n > 0 {
		attrs = append(attrs, slog.Uint64("suppressed", n))
	}
	log.LogAttrs(ctx, level, msg, attrs...)
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
		Bytes:      v.read.Load(),
		Gaps:       v.gaps.Load(),
		Dropped:    make(map[DropReason]uint64),
	}
	for i, r := range dropReasons {
		if n := v.dropped[i].Load(); n > 0 {
			s.Dropped[r] = n
		}
	}
	return s
}
