package hostrelay

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/internal/natsutil"
	"github.com/guestdiag/guestdiag/internal/pause"
	"github.com/guestdiag/guestdiag/protocol"
)

// maxAsyncPending is a safety cap over all connections; MaxInFlight is what
// bounds each one.
const maxAsyncPending = 1 << 16

// Why a channel's watcher was stopped.
var (
	errVanished = errors.New("channel socket vanished")
	errShutdown = errors.New("relay shutting down")
)

// RelayInboxPrefix is where the relay of host receives replies (publish
// acks, stream info): a subject of its own, so that its permissions can let
// it subscribe there and nowhere else.
func RelayInboxPrefix(host string) string {
	return "_GDINBOX.relay." + protocol.EscapeToken(host)
}

// Relay moves guest messages from VM channels to JetStream.
type Relay struct {
	cfg Config
	nc  *nats.Conn
	js  jetstream.JetStream
	log *slog.Logger

	// events tracks channel events not yet confirmed.
	events sync.WaitGroup

	mu  sync.Mutex
	vms map[string]*vmState
	// watching lists the channels being watched, by path.
	watching []Channel
}

// New returns a Relay that publishes through nc, which the caller owns and
// closes after Run has returned.
func New(cfg Config, nc *nats.Conn, logger *slog.Logger) (*Relay, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("relay config: %w", err)
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(maxAsyncPending),
		jetstream.WithPublishAsyncTimeout(cfg.PublishTimeout),
	)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return &Relay{
		cfg: cfg,
		nc:  nc,
		js:  js,
		log: logger,
		vms: make(map[string]*vmState),
	}, nil
}

// Run connects to NATS at cfg.NATSURL, retrying forever, and relays until ctx
// is cancelled. It returns nil after every connection has been drained.
func Run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return fmt.Errorf("relay config: %w", err)
	}
	auth := cfg.NATSAuth
	auth.InboxPrefix = RelayInboxPrefix(cfg.Host)
	opts, err := auth.Options()
	if err != nil {
		return err
	}
	logger.Info("nats_connecting", "url", cfg.NATSURL)
	nc, err := natsutil.Connect(cfg.NATSURL, "guestdiag-relay "+cfg.Host, logger, opts...)
	if err != nil {
		return err
	}
	defer nc.Close()
	r, err := New(cfg, nc, logger)
	if err != nil {
		return err
	}
	return r.Run(ctx)
}

// Run ensures the stream, then watches channels until ctx is cancelled. It
// returns nil after every connection has been drained: messages already
// published are acknowledged to their guests before the connection closes.
func (r *Relay) Run(ctx context.Context) error {
	if err := r.ensureStream(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	r.log.Info("relay_started", "host", r.cfg.Host, "globs", r.cfg.Globs, "static", len(r.cfg.Static))

	var wg sync.WaitGroup
	stops := make(map[string]context.CancelCauseFunc)
	defer func() {
		for _, stop := range stops {
			stop(errShutdown)
		}
		wg.Wait()
		r.events.Wait()
		r.mu.Lock()
		r.watching = nil
		r.mu.Unlock()
	}()

	if r.cfg.HostUsageInterval > 0 {
		uctx, stopUsage := context.WithCancel(ctx)
		defer stopUsage()
		wg.Go(func() { r.publishUsage(uctx) })
	}

	wg.Go(func() { r.watchLifecycle(ctx) })
	chans := newChannelSet(r.cfg, r.log)
	tick := time.NewTicker(r.cfg.RescanInterval)
	defer tick.Stop()
	for {
		start, gone := chans.update(discover(r.cfg))
		if len(start) > 0 || len(gone) > 0 {
			watching := slices.SortedFunc(maps.Values(chans.watched), func(a, b Channel) int {
				return cmp.Compare(a.Path, b.Path)
			})
			r.mu.Lock()
			r.watching = watching
			r.mu.Unlock()
		}
		for _, path := range gone {
			stops[path](errVanished)
			delete(stops, path)
		}
		for _, ch := range start {
			wctx, stop := context.WithCancelCause(ctx)
			stops[ch.Path] = stop
			wg.Go(func() { r.watch(wctx, ch) })
		}

		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// ensureStream creates or updates the stream, retrying while NATS is
// unreachable.
func (r *Relay) ensureStream(ctx context.Context) error {
	wait := r.cfg.BackoffMin
	for {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := natsutil.EnsureStream(actx, r.js, natsutil.StreamConfig{Duplicates: r.cfg.Duplicates})
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.log.Warn("stream_not_ready", "err", err, "retry_in", wait)
		if pause.For(ctx, wait) != nil {
			return ctx.Err()
		}
		wait = min(wait*2, r.cfg.BackoffMax)
	}
}

// Channels returns the channels being watched, sorted by path.
func (r *Relay) Channels() []Channel {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.watching)
}

// Stats returns the counters of every VM seen so far, by host-side name.
func (r *Relay) Stats() map[string]VMStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]VMStats, len(r.vms))
	for name, v := range r.vms {
		out[name] = v.snapshot()
	}
	return out
}

func (r *Relay) vm(name string) *vmState {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.vms[name]
	if !ok {
		v = newVMState(r.cfg)
		r.vms[name] = v
	}
	return v
}

// watch keeps one channel connected until ctx is cancelled, with backoff
// between attempts. The channel's identity does not change meanwhile, and
// what its runs were acknowledged up to carries over from one connection
// to the next.
func (r *Relay) watch(ctx context.Context, ch Channel) {
	var d net.Dialer
	book := newRunBook(r.cfg.LegacyGapWait)
	backoff := r.cfg.BackoffMin
	for {
		wait := backoff
		// While NATS is away, reading would only produce lines that cannot
		// be stored, so the guest keeps them until it is back.
		if r.nc.IsConnected() {
			conn, err := d.DialContext(ctx, "unix", ch.Path)
			if err == nil {
				start := time.Now()
				end := r.serve(ctx, conn, ch, book)
				// A connection that ends at once, again and again, must not
				// become a busy loop; one that lived a while starts afresh.
				if time.Since(start) >= r.cfg.BackoffMax {
					backoff = r.cfg.BackoffMin
				}
				wait = backoff
				if end.throttled {
					wait = max(wait, r.vm(ch.Name).refillDelay())
				}
			} else if ctx.Err() == nil {
				r.log.Debug("channel_connect_failed", "vm", ch.Name, "channel", ch.Path, "err", err)
			}
		}
		if pause.For(ctx, wait) != nil {
			return
		}
		backoff = min(backoff*2, r.cfg.BackoffMax)
	}
}

// publishChannelEvent reports a channel state change. It is best effort and
// does not wait: a guest's messages must not queue behind it. Run waits for
// the outcome before it returns, so that the last disconnect is stored.
func (r *Relay) publishChannelEvent(ch Channel, state protocol.ChannelState, reason string) {
	ev := protocol.ChannelEvent{
		V: protocol.Version, Host: r.cfg.Host, VM: ch.Name, UUID: ch.UUID, Channel: ch.Path,
		State: state, TS: time.Now().UTC(), Reason: reason,
	}
	data, err := protocol.Marshal(ev)
	if err == nil {
		r.publishEvent(&nats.Msg{Subject: protocol.ChannelSubject(r.cfg.Host, ch.Name), Data: data[:len(data)-1]}, ch.Name, state)
		return
	}
	r.log.Warn("channel_event_publish_failed", "vm", ch.Name, "state", state, "err", err)
}

// publishEvent publishes a channel event without waiting for it.
func (r *Relay) publishEvent(msg *nats.Msg, vm string, state protocol.ChannelState) {
	paf, err := r.js.PublishMsgAsync(msg)
	if err != nil {
		r.log.Warn("channel_event_publish_failed", "vm", vm, "state", state, "err", err)
		return
	}
	r.events.Go(func() {
		select {
		case <-paf.Ok():
		case err := <-paf.Err():
			r.log.Warn("channel_event_publish_failed", "vm", vm, "state", state, "err", err)
		}
	})
}
