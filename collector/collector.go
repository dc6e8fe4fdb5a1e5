package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/guestdiag/guestdiag/internal/natsutil"
	"github.com/guestdiag/guestdiag/internal/pause"
	"github.com/guestdiag/guestdiag/protocol"
)

const (
	// opTimeout bounds every single JetStream request.
	opTimeout = 10 * time.Second
	// maxAttempts bounds compare-and-set retries of one message before it
	// is handed back to JetStream for redelivery.
	maxAttempts = 50
	// retryDelay is how long a message whose state update failed waits
	// before JetStream redelivers it.
	retryDelay = time.Second
	// deferDelay is how long a message of a protocol version this
	// collector cannot read waits before JetStream offers it again: during
	// a rolling upgrade a newer collector takes it meanwhile.
	deferDelay = time.Minute
	// pullBatch is how many messages a collector buffers ahead.
	pullBatch = 64
	// setupBackoffMin and setupBackoffMax bound the wait between attempts
	// to set up JetStream, at start and after a consumer failed.
	setupBackoffMin = 500 * time.Millisecond
	setupBackoffMax = 30 * time.Second
	// casBackoffMin and casBackoffMax bound the pause between
	// compare-and-set retries of one message.
	casBackoffMin = 2 * time.Millisecond
	casBackoffMax = 100 * time.Millisecond
)

// Stats counts what a Collector did with the messages it was given.
type Stats struct {
	Applied   uint64 // changed a VM's record
	Stale     uint64 // already applied or older than the record (redelivery, duplicates)
	Rejected  uint64 // valid but refused to keep a record bounded
	Poison    uint64 // could not be decoded; terminated so they never come back
	Deferred  uint64 // of a newer protocol version; handed back for a newer collector
	Failed    uint64 // state update failed; handed back for redelivery
	Conflicts uint64 // compare-and-set conflicts with another collector, retried
	Published uint64 // alert transitions published on NATS
	Hints     uint64 // hint transitions published on NATS, repeats included
}

// Collector consumes relay messages into per-VM state and serves it.
type Collector struct {
	cfg Config
	nc  *nats.Conn
	log *slog.Logger

	mu          sync.RWMutex
	ready       bool                           // the KV watcher has delivered every record
	vms         map[string]VM                  // by KV key, fed by the KV watcher and own writes
	revs        map[string]uint64              // the KV revision of each record in vms
	writing     map[string]ownWrite            // by KV key: the record this collector is writing
	alertsReady bool                           // the alert watcher has delivered every record
	alerts      map[string]alertRecord         // by KV key, fed by the alert watcher and own writes
	alertsByVM  map[string]map[string]struct{} // KV keys of c.alerts by VM key

	kb       kbHolder
	subs     subscribers
	live     liveness
	timeline atomic.Pointer[jetstream.Stream]
	hosts    hostState
	plans    planState

	applied, stale, rejected, poison, deferred, failed, conflicts, published atomic.Uint64

	// One limiter per warning that a guest (or a bad publisher) can cause
	// once per message, so one flood does not silence the others.
	poisonLog, tooLargeLog, rejectedLog, deferLog *warnLimiter
}

// New returns a Collector that uses nc, which stays the caller's to close.
// Nothing touches the network before Run or Serve.
func New(cfg Config, nc *nats.Conn, logger *slog.Logger) *Collector {
	c := &Collector{
		cfg: cfg.withDefaults(), nc: nc, log: logger, vms: make(map[string]VM), revs: make(map[string]uint64), writing: make(map[string]ownWrite), alerts: make(map[string]alertRecord), alertsByVM: make(map[string]map[string]struct{}), live: liveness{m: make(map[string]*live)},
		poisonLog: newWarnLimiter(), tooLargeLog: newWarnLimiter(), rejectedLog: newWarnLimiter(), deferLog: newWarnLimiter(),
	}
	c.subs.init()
	c.ReloadKB()
	return c
}

// backend is what JetStream setup hands to the consumer, the watchers and
// the sweep.
type backend struct {
	js       jetstream.JetStream
	vms      jetstream.KeyValue
	live     jetstream.KeyValue
	alerts   jetstream.KeyValue
	timeline jetstream.Stream
	cons     jetstream.Consumer
	stream   jetstream.Stream
	hosts    jetstream.KeyValue
}

// Run dials cfg.NATSURL and runs a Collector on that connection until ctx
// is cancelled.
func Run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	cfg = cfg.withDefaults()
	nc, err := natsutil.Connect(cfg.NATSURL, "guestdiag-collector", logger)
	if err != nil {
		return err
	}
	defer nc.Close()
	return New(cfg, nc, logger).Run(ctx)
}

// Run listens on cfg.Listen and serves; see Serve.
func (c *Collector) Run(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", c.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	return c.Serve(ctx, ln)
}

// Serve serves the API on ln at once, ensures the stream, the KV bucket and
// the durable consumer exist (retrying while NATS is unreachable; /healthz
// answers 503 meanwhile), then consumes and keeps its view of the bucket
// current until ctx is cancelled, when it returns nil. A failing consumer or
// watcher is set up again after a backoff rather than ending Serve; only a
// failing listener does. It closes ln.
func (c *Collector) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { c.pipeline(ctx) })
	err := c.serveHTTP(ctx, ln)
	cancel()
	wg.Wait()
	return err
}

// pipeline sets JetStream up and consumes until ctx is cancelled. Whatever
// ends a consumer (an operator deleting it, its stream lost, a server that
// stopped answering) leads to setting everything up again and resuming, so
// that collectors, relays and NATS can start, stop and be repaired in any
// order.
func (c *Collector) pipeline(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	setups := 0
	c.retry(ctx, "consumer_failed", func(ctx context.Context) error {
		b, err := c.trySetup(ctx)
		if err != nil {
			return err
		}
		setups++
		if setups == 1 {
			c.log.Info("collector_started", "durable", c.cfg.Durable, "bucket", c.cfg.Bucket, "alert_bucket", c.cfg.AlertBucket)
			c.timeline.Store(&b.timeline)
			wg.Go(func() {
				c.retry(ctx, "watch_failed", func(ctx context.Context) error { return c.watch(ctx, b.vms) })
			})
			wg.Go(func() {
				c.retry(ctx, "watch_failed", func(ctx context.Context) error { return c.watchAlerts(ctx, b.alerts) })
			})
			wg.Go(func() {
				c.retry(ctx, "watch_failed", func(ctx context.Context) error { return c.watchLiveness(ctx, b.live) })
			})
			wg.Go(func() {
				c.retry(ctx, "watch_failed", func(ctx context.Context) error { return c.watchHosts(ctx, b.hosts) })
			})
			wg.Go(func() {
				c.retry(ctx, "plans_failed", func(ctx context.Context) error { return c.followPlans(ctx, b.stream) })
			})
			wg.Go(func() { c.sweepLoop(ctx, b) })
			wg.Go(func() { c.flushLoop(ctx, b) })
		} else {
			c.log.Info("consumer_recreated", "durable", c.cfg.Durable, "setups", setups)
		}
		return c.consume(ctx, b)
	})
}

// retry runs f until ctx is cancelled, logging each failure as msg. The
// wait between runs doubles from setupBackoffMin to setupBackoffMax, and
// starts over after a run that lasted longer than setupBackoffMax, so a
// consumer deleted once a day is back within a second, while one that
// cannot be set up at all costs a request every half minute.
func (c *Collector) retry(ctx context.Context, msg string, f func(context.Context) error) {
	wait := setupBackoffMin
	for {
		started := time.Now()
		err := f(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > setupBackoffMax {
			wait = setupBackoffMin
		}
		c.log.Warn(msg, "err", err, "retry_in", wait)
		if pause.For(ctx, wait) != nil {
			return
		}
		wait = min(2*wait, setupBackoffMax)
	}
}

func (c *Collector) trySetup(ctx context.Context) (*backend, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	js, err := jetstream.New(c.nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	stream, err := natsutil.EnsureStream(ctx, js, natsutil.StreamConfig{Replicas: c.cfg.Replicas})
	if err != nil {
		return nil, err
	}
	b := &backend{js: js, stream: stream}
	if b.hosts, err = c.hostBucket(ctx, js); err != nil {
		return nil, err
	}
	if b.alerts, err = c.alertBucket(ctx, js); err != nil {
		return nil, err
	}
	if b.timeline, err = c.timelineStream(ctx, js); err != nil {
		return nil, err
	}
	if b.live, err = c.livenessBucket(ctx, js); err != nil {
		return nil, err
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:       c.cfg.Bucket,
		Description:  "guestdiag per-VM state, one record per host and VM name",
		MaxValueSize: maxRecordBytes,
		History:      1,
		Storage:      jetstream.FileStorage,
		Replicas:     c.cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("kv bucket %s: %w", c.cfg.Bucket, err)
	}
	b.vms = kv
	b.cons, err = stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:     c.cfg.Durable,
		Description: "guestdiag collectors: reports, heartbeats and channel events into per-VM state",
		// One filter for the whole stream, because the server matches a
		// consumer's several filters against every subject the stream
		// holds for each fetch, which cost most of a collector's CPU with
		// a thousand VMs (profiled). What the collector does not read
		// (its own alerts, host samples, plans) is acked unread.
		FilterSubject: protocol.SubjectPrefix + ".>",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.cfg.AckWait,
		MaxAckPending: 1000,
	})
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", c.cfg.Durable, err)
	}
	return b, nil
}

// consume applies messages on the appliers of their VMs. Beyond that,
// parallelism comes from running more collectors on the same durable.
func (c *Collector) consume(ctx context.Context, b *backend) error {
	// Missing heartbeats are an error so that a consumer deleted while this
	// collector was disconnected, which no status message announces, is
	// noticed and recreated.
	it, err := b.cons.Messages(jetstream.PullMaxMessages(pullBatch), jetstream.WithMessagesErrOnMissingHeartbeat(true))
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("consume %s: %w", c.cfg.Durable, err)
	}
	defer it.Stop()
	pool := c.startAppliers(ctx, b)
	defer pool.stop()
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				c.handBack(it)
				return nil
			}
			return fmt.Errorf("consume %s: %w", c.cfg.Durable, err)
		}
		pool.apply(msg)
	}
}

// handBack returns the messages buffered but not yet applied, so another
// collector gets them now rather than after AckWait.
func (c *Collector) handBack(it jetstream.MessagesContext) {
	it.Drain()
	for {
		msg, err := it.Next(jetstream.NextMaxWait(time.Second))
		if err != nil {
			return
		}
		if err := msg.Nak(); err != nil {
			return
		}
	}
}

func (c *Collector) handle(ctx context.Context, b *backend, msg jetstream.Msg) {
	var streamSeq uint64
	if md, err := msg.Metadata(); err == nil {
		streamSeq = md.Sequence.Stream
	}
	if strings.HasPrefix(msg.Subject(), protocol.SubjectPrefix+".host.") {
		c.handleHost(ctx, msg, streamSeq)
		return
	}
	if !consumed(msg.Subject()) {
		c.settle(msg.Ack(), msg, streamSeq)
		return
	}
	u, err := decodeMessage(msg.Subject(), msg.Data())
	if c.refused(msg, streamSeq, err) {
		return
	}
	if u.heartbeat != nil {
		// Heartbeats go to the liveness table, which the flusher writes
		// to its own bucket in batches, so that the fleet's most frequent
		// message never costs a write of the VM's whole record.
		if c.beat(u.host, u.vm, u.heartbeat) == applied {
			c.applied.Add(1)
		} else {
			c.stale.Add(1)
		}
		c.settle(msg.Ack(), msg, streamSeq)
		return
	}
	out, err := c.store(ctx, b, u)
	switch {
	case err == nil:
	case errors.Is(err, errRecordTooLarge):
		c.rejected.Add(1)
		c.tooLargeLog.warn(c.log, "record_too_large", "subject", msg.Subject(), "stream_seq", streamSeq, "host", u.host, "vm", u.vm, "err", err)
		c.settle(msg.Term(), msg, streamSeq)
		return
	case ctx.Err() != nil:
		c.settle(msg.Nak(), msg, streamSeq)
		return
	default:
		c.failed.Add(1)
		c.log.Error("state_update_failed", "subject", msg.Subject(), "stream_seq", streamSeq, "host", u.host, "vm", u.vm, "err", err)
		c.settle(msg.NakWithDelay(retryDelay), msg, streamSeq)
		return
	}
	switch out {
	case applied:
		c.applied.Add(1)
	case stale:
		c.stale.Add(1)
	case rejected:
		c.rejected.Add(1)
		c.rejectedLog.warn(c.log, "message_rejected", "subject", msg.Subject(), "stream_seq", streamSeq, "host", u.host, "vm", u.vm)
	}
	c.settle(msg.Ack(), msg, streamSeq)
}

// consumed reports whether subject is one the collector reads: reports,
// heartbeats and channel events.
func consumed(subject string) bool {
	rest, ok := strings.CutPrefix(subject, protocol.SubjectPrefix+".")
	if !ok {
		return false
	}
	kind, _, _ := strings.Cut(rest, ".")
	return kind == "report" || kind == "heartbeat" || kind == "channel"
}

// refused settles a message that could not be decoded (err not nil) and
// reports whether it did: one of a newer protocol version is handed back
// for later, when this collector may have been upgraded; any other is
// poison and terminated, so it is not redelivered without end.
func (c *Collector) refused(msg jetstream.Msg, streamSeq uint64, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, protocol.ErrUnsupportedVersion):
		c.deferred.Add(1)
		c.deferLog.warn(c.log, "message_deferred", "subject", msg.Subject(), "stream_seq", streamSeq, "err", err, "retry_in", deferDelay)
		c.settle(msg.NakWithDelay(deferDelay), msg, streamSeq)
	default:
		c.poison.Add(1)
		c.poisonLog.warn(c.log, "poison_message", "subject", msg.Subject(), "stream_seq", streamSeq, "err", err)
		c.settle(msg.Term(), msg, streamSeq)
	}
	return true
}

func (c *Collector) settle(err error, msg jetstream.Msg, streamSeq uint64) {
	if err != nil {
		c.log.Warn("ack_failed", "subject", msg.Subject(), "stream_seq", streamSeq, "err", err)
	}
}

func (c *Collector) serveHTTP(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           c.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(c.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		c.log.Warn("http_shutdown", "err", err)
	}
	<-errc
	return nil
}

// Stats returns the counters so far.
func (c *Collector) Stats() Stats {
	return Stats{
		Applied:   c.applied.Load(),
		Stale:     c.stale.Load(),
		Rejected:  c.rejected.Load(),
		Poison:    c.poison.Load(),
		Deferred:  c.deferred.Load(),
		Failed:    c.failed.Load(),
		Conflicts: c.conflicts.Load(),
		Published: c.published.Load(),
		Hints:     c.hosts.published.Load(),
	}
}

const (
	// warnBurst warnings of one kind are logged at once, then warnEvery.
	warnBurst = 10
	warnEvery = time.Second
)

// warnLimiter lets warnBurst warnings through and then one per warnEvery,
// so that a guest inventing check names as fast as it can does not flood
// the log. The next warning it lets through says how many it dropped.
type warnLimiter struct {
	lim        *rate.Limiter
	suppressed atomic.Uint64
}

func newWarnLimiter() *warnLimiter {
	return &warnLimiter{lim: rate.NewLimiter(rate.Every(warnEvery), warnBurst)}
}

func (w *warnLimiter) warn(log *slog.Logger, msg string, args ...any) {
	if !w.lim.Allow() {
		w.suppressed.Add(1)
		return
	}
	if n := w.suppressed.Swap(0); n > 0 {
		args = append(args, "suppressed", n)
	}
	log.Warn(msg, args...)
}
