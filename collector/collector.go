package collector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/internal/natsutil"
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
	// pullBatch is how many messages a collector buffers ahead.
	pullBatch = 64
	// setupBackoffMin and setupBackoffMax bound the wait between attempts
	// to reach JetStream at start.
	setupBackoffMin = 500 * time.Millisecond
	setupBackoffMax = 30 * time.Second
)

// Stats counts what a Collector did with the messages it was given.
type Stats struct {
	Applied   uint64 // changed a VM's record
	Stale     uint64 // already applied or older than the record (redelivery, duplicates)
	Rejected  uint64 // valid but refused to keep a record bounded
	Poison    uint64 // could not be decoded; terminated so they never come back
	Failed    uint64 // state update failed; handed back for redelivery
	Conflicts uint64 // compare-and-set conflicts with another collector, retried
}

// Collector consumes relay messages into per-VM state and serves it.
type Collector struct {
	cfg Config
	nc  *nats.Conn
	log *slog.Logger

	mu    sync.RWMutex
	ready bool          // the KV watcher has delivered every record
	vms   map[string]VM // by KV key, fed by the KV watcher

	applied, stale, rejected, poison, failed, conflicts atomic.Uint64
}

// New returns a Collector that uses nc, which stays the caller's to close.
// Nothing touches the network before Run or Serve.
func New(cfg Config, nc *nats.Conn, logger *slog.Logger) *Collector {
	return &Collector{cfg: cfg.withDefaults(), nc: nc, log: logger, vms: make(map[string]VM)}
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
// current until ctx is cancelled, when it returns nil. It closes ln.
func (c *Collector) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 3)
	running := 1
	go func() { errc <- c.serveHTTP(ctx, ln) }()
	if kv, cons, ok := c.setup(ctx); ok {
		running += 2
		go func() { errc <- c.watch(ctx, kv) }()
		go func() { errc <- c.consume(ctx, cons, kv) }()
	}
	var first error
	for range running {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
		cancel()
	}
	return first
}

// setup retries trySetup until it succeeds or ctx is cancelled, so that
// collectors, relays and NATS can start in any order.
func (c *Collector) setup(ctx context.Context) (jetstream.KeyValue, jetstream.Consumer, bool) {
	wait := setupBackoffMin
	for {
		kv, cons, err := c.trySetup(ctx)
		if err == nil {
			c.log.Info("collector_started", "durable", c.cfg.Durable, "bucket", c.cfg.Bucket)
			return kv, cons, true
		}
		if ctx.Err() != nil {
			return nil, nil, false
		}
		c.log.Warn("setup_failed", "err", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, nil, false
		case <-t.C:
		}
		wait = min(2*wait, setupBackoffMax)
	}
}

func (c *Collector) trySetup(ctx context.Context) (jetstream.KeyValue, jetstream.Consumer, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	js, err := jetstream.New(c.nc)
	if err != nil {
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	stream, err := natsutil.EnsureStream(ctx, js, natsutil.StreamConfig{Replicas: c.cfg.Replicas})
	if err != nil {
		return nil, nil, err
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
		return nil, nil, fmt.Errorf("kv bucket %s: %w", c.cfg.Bucket, err)
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:     c.cfg.Durable,
		Description: "guestdiag collectors: reports, heartbeats and channel events into per-VM state",
		FilterSubjects: []string{
			protocol.SubjectPrefix + ".report.>",
			protocol.SubjectPrefix + ".heartbeat.>",
			protocol.SubjectPrefix + ".channel.>",
		},
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.cfg.AckWait,
		MaxAckPending: 1000,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("consumer %s: %w", c.cfg.Durable, err)
	}
	return kv, cons, nil
}

// consume applies messages one at a time. Parallelism comes from running
// more collectors on the same durable, not from goroutines here.
func (c *Collector) consume(ctx context.Context, cons jetstream.Consumer, kv jetstream.KeyValue) error {
	it, err := cons.Messages(jetstream.PullMaxMessages(pullBatch))
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("consume %s: %w", c.cfg.Durable, err)
	}
	defer it.Stop()
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				c.handBack(it)
				return nil
			}
			return fmt.Errorf("consume %s: %w", c.cfg.Durable, err)
		}
		c.handle(ctx, kv, msg)
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

func (c *Collector) handle(ctx context.Context, kv jetstream.KeyValue, msg jetstream.Msg) {
	var streamSeq uint64
	if md, err := msg.Metadata(); err == nil {
		streamSeq = md.Sequence.Stream
	}
	u, err := decodeMessage(msg.Subject(), msg.Data())
	if err != nil {
		c.poison.Add(1)
		c.log.Warn("poison_message", "subject", msg.Subject(), "stream_seq", streamSeq, "err", err)
		c.settle(msg.Term(), msg, streamSeq)
		return
	}
	out, err := c.store(ctx, kv, u)
	switch {
	case err == nil:
	case errors.Is(err, errRecordTooLarge):
		c.rejected.Add(1)
		c.log.Warn("record_too_large", "subject", msg.Subject(), "stream_seq", streamSeq, "host", u.host, "vm", u.vm, "err", err)
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
		c.log.Warn("message_rejected", "subject", msg.Subject(), "stream_seq", streamSeq, "host", u.host, "vm", u.vm)
	}
	c.settle(msg.Ack(), msg, streamSeq)
}

func (c *Collector) settle(err error, msg jetstream.Msg, streamSeq uint64) {
	if err != nil {
		c.log.Warn("ack_failed", "subject", msg.Subject(), "stream_seq", streamSeq, "err", err)
	}
}

// store applies u to its VM's record with compare-and-set on the record's
// revision, re-reading and retrying when another collector got there first.
func (c *Collector) store(ctx context.Context, kv jetstream.KeyValue, u update) (outcome, error) {
	key := Key(u.host, u.vm)
	for attempt := 1; ; attempt++ {
		out, err := c.tryStore(ctx, kv, key, u)
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return out, err
		}
		c.conflicts.Add(1)
		if attempt == maxAttempts {
			return out, fmt.Errorf("%d conflicting writes: %w", attempt, err)
		}
	}
}

func (c *Collector) tryStore(ctx context.Context, kv jetstream.KeyValue, key string, u update) (outcome, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	v := VM{Name: u.vm, Host: u.host}
	var rev uint64
	entry, err := kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return 0, fmt.Errorf("read %s: %w", key, err)
	default:
		rev = entry.Revision()
		if err := json.Unmarshal(entry.Value(), &v); err != nil {
			// Only collectors write the bucket; a record that does not
			// decode would block its VM forever, so start it afresh.
			c.log.Error("corrupt_state_record", "key", key, "revision", rev, "err", err)
			v = VM{Name: u.vm, Host: u.host}
		}
	}
	out := u.apply(&v)
	if out != applied {
		return out, nil
	}
	b, err := encodeRecord(&v)
	if err != nil {
		return 0, err
	}
	if rev == 0 {
		_, err = kv.Create(ctx, key, b)
	} else {
		_, err = kv.Update(ctx, key, b, rev)
	}
	if err != nil {
		return 0, fmt.Errorf("write %s: %w", key, err)
	}
	return applied, nil
}

// watch keeps c.vms equal to the bucket, whoever writes it, so the API
// answers from memory and every collector of a fleet serves the same state.
func (c *Collector) watch(ctx context.Context, kv jetstream.KeyValue) error {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("watch %s: %w", c.cfg.Bucket, err)
	}
	defer w.Stop()
	for {
		var e jetstream.KeyValueEntry
		var ok bool
		select {
		case <-ctx.Done():
			return nil
		case e, ok = <-w.Updates():
		}
		if !ok {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("watch %s: watcher closed", c.cfg.Bucket)
		}
		if e == nil {
			c.mu.Lock()
			c.ready = true
			c.mu.Unlock()
			continue
		}
		if e.Operation() != jetstream.KeyValuePut {
			c.mu.Lock()
			delete(c.vms, e.Key())
			c.mu.Unlock()
			continue
		}
		var v VM
		if err := json.Unmarshal(e.Value(), &v); err != nil {
			c.log.Error("corrupt_state_record", "key", e.Key(), "revision", e.Revision(), "err", err)
			continue
		}
		c.mu.Lock()
		c.vms[e.Key()] = v
		c.mu.Unlock()
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
		Failed:    c.failed.Load(),
		Conflicts: c.conflicts.Load(),
	}
}
