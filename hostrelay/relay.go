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
	// budget bounds the bytes in flight over all connections.
	budget  *byteBudget
	metrics *relayMetrics
	// The publish options every guest message shares, made once rather
	// than per message.
	noRetry, stallWait jetstream.PublishOpt

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
		cfg:     cfg,
		nc:      nc,
		js:      js,
		log:     logger,
		vms:     make(map[string]*vmState),
		budget:  newByteBudget(cfg.MaxRelayInFlightBytes),
		metrics: newRelayMetrics(),
		// No client-side retries: a retry that lands after a connection
		// has given up would store an old message behind newer ones. The
		// agent's resend after a reconnect is the retry.
		noRetry:   jetstream.WithRetryAttempts(0),
		stallWait: jetstream.WithStallWait(cfg.PublishTimeout),
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
	waitMetrics, err := r.serveMetrics(ctx)
	if err != nil {
		return err
	}
	defer waitMetrics()
	if err := r.ensureStream(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	r.metrics.ready.Store(true)
	r.log.Info("relay_started", "host", r.cfg.Host, "globs", r.cfg.Globs, "static", len(r.cfg.Static))

	var wg sync.WaitGroup
	stops := make(map[string]context.CancelCauseFunc)
	vctx, stopViolations := context.WithCancel(context.WithoutCancel(ctx))
	violations := make(chan struct{})
	go func() { r.reportViolations(vctx); close(violations) }()
	defer func() {
		for _, stop := range stops {
			stop(errShutdown)
		}
		wg.Wait()
		stopViolations()
		<-violations
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
	if r.cfg.VsockPort != 0 {
		ln, err := listenVsock(r.cfg.VsockPort)
		if err != nil {
			return err
		}
		wg.Go(func() { r.serveVsock(ctx, ln, newVsockTable(r.cfg.VsockVMs, virshVsockVMs)) })
	}
	chans := newChannelSet(r.cfg, r.log)
	chans.domainUUID = virshUUID
	chans.onRefuse = func(ch Channel, reason string) { r.publishChannelEvent(ch, protocol.ChannelRefused, reason) }
	tick := time.NewTicker(r.cfg.RescanInterval)
	defer tick.Stop()
	rescan := newRescanner(r.log)
	defer rescan.close()
	for {
		found := discover(r.cfg)
		rescan.watch(watchDirs(r.cfg, found))
		start, gone := chans.update(found)
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
			r.adopt(ch)
			wg.Go(func() {
				if ch.Listen {
					r.listenOn(wctx, ch)
				} else {
					r.watch(wctx, ch)
				}
				r.forget(ch)
			})
		}

		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-rescan.C:
		}
	}
}

// ensureStream creates or updates the stream, retrying while NATS is
// unreachable.
func (r *Relay) ensureStream(ctx context.Context) error {
	wait := r.cfg.BackoffMin
	for {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := natsutil.EnsureStream(actx, r.js, natsutil.StreamConfig{Duplicates: r.cfg.Duplicates, MaxMsgsPerSubject: r.cfg.MaxMsgsPerSubject})
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

// adopt makes the VM state of a channel about to be watched, or takes the
// one a vanishing channel of the same name still holds.
func (r *Relay) adopt(ch Channel) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.vms[ch.Name]
	if !ok {
		v = newVMState(r.cfg)
		r.vms[ch.Name] = v
	}
	v.ch = ch
	v.watchers++
}

// forget drops the state of a VM whose last watcher stopped, so that the
// relay's tables hold the VMs it watches, not every VM it ever saw. What
// the VM's guest got refused since the last violations event is published
// first.
func (r *Relay) forget(ch Channel) {
	r.mu.Lock()
	v, ok := r.vms[ch.Name]
	if !ok {
		r.mu.Unlock()
		return
	}
	v.watchers--
	if v.watchers > 0 {
		r.mu.Unlock()
		return
	}
	delete(r.vms, ch.Name)
	counts := v.newViolations()
	r.mu.Unlock()
	if counts != nil {
		r.publishViolations(ch, counts)
	}
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
	r.publishEvent(ch, protocol.ChannelEvent{State: state, Reason: reason})
}

// publishEvent fills in the channel's identity and publishes ev as
// publishChannelEvent does.
func (r *Relay) publishEvent(ch Channel, ev protocol.ChannelEvent) {
	state := ev.State
	ev.V, ev.Host, ev.VM, ev.UUID, ev.Channel, ev.TS = protocol.Version, r.cfg.Host, ch.Name, ch.UUID, ch.Path, time.Now().UTC()
	data, err := protocol.Marshal(ev)
	if err == nil {
		r.publishAsync(&nats.Msg{Subject: protocol.ChannelSubject(r.cfg.Host, ch.Name), Data: data[:len(data)-1]}, ch.Name, state)
		return
	}
	r.log.Warn("channel_event_publish_failed", "vm", ch.Name, "state", state, "err", err)
}

// publishAsync publishes an event without waiting for it.
func (r *Relay) publishAsync(msg *nats.Msg, vm string, state protocol.ChannelState) {
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
