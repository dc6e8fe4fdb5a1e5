package collector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

const (
	// flushEvery is how often the heartbeats taken since the last flush
	// are written: last_seen in another collector's view lags the newest
	// heartbeat by at most this plus the watch's delay.
	flushEvery = time.Second
	// flushWindow is how many liveness writes one flush has in flight at
	// once, under the client's default bound on unacknowledged publishes.
	flushWindow = 1024
	// maxLivenessBytes bounds one liveness record; names and a run id
	// bounded by the protocol keep a real one under a few hundred bytes.
	maxLivenessBytes = 4 << 10
)

// liveRecord is the value of a VM's record in the liveness bucket: its
// newest heartbeat and the receive time of the newest guest message that
// the liveness table took.
type liveRecord struct {
	Host      string     `json:"host"`
	VM        string     `json:"vm"`
	LastSeen  time.Time  `json:"last_seen,omitzero"`
	Heartbeat *Heartbeat `json:"heartbeat,omitempty"`
}

// live is one VM's entry in the liveness table.
type live struct {
	rec liveRecord
	// rev is the newest revision of the VM's liveness record that this
	// collector knows of, written or watched: the next write's
	// compare-and-set expects it.
	rev uint64
	// dirty marks a heartbeat the bucket does not hold yet.
	dirty bool
	// loaded marks a record delivered by the current watch's initial load.
	loaded bool
	// sending is the value this collector is writing, by which the
	// watcher knows its delivery as this collector's own and skips
	// decoding it.
	sending []byte
	// forgotAt is when the VM was forgotten (its VM or liveness record
	// deleted), zero while it is known; forgot is the origin of the
	// heartbeat dropped then, which only a newer one may replace.
	forgotAt time.Time
	forgot   Origin
	// unwrite marks a forgotten entry whose bucket record this collector
	// must still delete.
	unwrite bool
}

// liveness is the table of every VM's newest heartbeat, fed by this
// collector's heartbeats and by the watch of the liveness bucket. Its lock
// is taken after c.mu, never before.
type liveness struct {
	mu    sync.Mutex
	ready bool // the liveness watcher has delivered every record
	m     map[string]*live
	queue []string // keys of the entries that turned dirty since the last flush
	// unwrites are the keys of the forgotten entries whose bucket records
	// the next flush deletes.
	unwrites []string
}

// beat puts hb, of the VM named vm on host, into the liveness table unless
// a newer heartbeat of that VM is there.
func (c *Collector) beat(host, vm string, hb *Heartbeat) outcome {
	key := Key(host, vm)
	c.live.mu.Lock()
	defer c.live.mu.Unlock()
	l := c.live.m[key]
	if l == nil {
		l = &live{rec: liveRecord{Host: host, VM: vm}}
		c.live.m[key] = l
	}
	if l.rec.Heartbeat != nil && !l.rec.Heartbeat.supersededBy(hb.Origin) {
		return stale
	}
	if !l.forgotAt.IsZero() {
		if l.forgot.Run != "" && !l.forgot.supersededBy(hb.Origin) {
			// A late heartbeat of a VM the operator removed.
			return stale
		}
		l.forgotAt, l.forgot, l.unwrite = time.Time{}, Origin{}, false
	}
	l.rec.Heartbeat = hb
	if hb.Received.After(l.rec.LastSeen) {
		l.rec.LastSeen = hb.Received
	}
	c.live.markDirty(key, l)
	return applied
}

func (c *Collector) liveReady() bool {
	c.live.mu.Lock()
	defer c.live.mu.Unlock()
	return c.live.ready
}

func (t *liveness) markDirty(key string, l *live) {
	if !l.dirty {
		l.dirty = true
		t.queue = append(t.queue, key)
	}
}

// merged returns v as the API shows it: with the heartbeat and last_seen
// of its liveness entry, if it has one.
func (l *live) merged(v VM) VM {
	if l == nil || !l.forgotAt.IsZero() {
		return v
	}
	if l.rec.Heartbeat != nil {
		v.Heartbeat = l.rec.Heartbeat
	}
	if l.rec.LastSeen.After(v.LastSeen) {
		v.LastSeen = l.rec.LastSeen
	}
	return v
}

// mergedVMs calls f with every VM as the API shows it, VM records merged
// with the liveness table, including the VMs that only sent heartbeats so
// far. The caller holds c.mu.
func (c *Collector) mergedVMs(f func(key string, v VM)) {
	c.live.mu.Lock()
	defer c.live.mu.Unlock()
	for key, v := range c.vms {
		f(key, c.live.m[key].merged(v))
	}
	for key, l := range c.live.m {
		if _, ok := c.vms[key]; !ok && l.rec.Heartbeat != nil {
			f(key, l.merged(VM{Name: l.rec.VM, Host: l.rec.Host}))
		}
	}
}

func (c *Collector) livenessBucket(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:       c.cfg.LivenessBucket,
		Description:  "guestdiag per-VM liveness: the newest heartbeat and last_seen, one record per host and VM name",
		MaxValueSize: maxLivenessBytes,
		History:      1,
		Storage:      jetstream.FileStorage,
		Replicas:     c.cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("kv bucket %s: %w", c.cfg.LivenessBucket, err)
	}
	return kv, nil
}

// flushLoop writes the liveness table's dirty entries every flushEvery,
// and once more when ctx ends so that a collector stopping in order loses
// no heartbeat it acked.
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

// liveWrite is one liveness record on its way to the bucket.
type liveWrite struct {
	key string
	rec liveRecord
	rev uint64 // the revision its compare-and-set expects
}

// flush writes every dirty entry of the liveness table. The writes go out
// as asynchronous publishes to the bucket's subjects, each expecting the
// record's last known revision, so that a flush of thousands of VMs costs
// a few round trips and a write never replaces a record it has not seen.
func (c *Collector) flush(ctx context.Context, b *backend) {
	c.live.mu.Lock()
	batch := make([]liveWrite, 0, len(c.live.queue))
	for _, key := range c.live.queue {
		if l := c.live.m[key]; l != nil && l.dirty && l.forgotAt.IsZero() {
			l.dirty = false
			batch = append(batch, liveWrite{key: key, rec: l.rec, rev: l.rev})
		}
	}
	c.live.queue = nil
	unwrites := c.live.takeUnwrites()
	c.live.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	c.unwrite(ctx, b, unwrites)
	for len(batch) > 0 {
		n := min(len(batch), flushWindow)
		c.flushWindow(ctx, b, batch[:n])
		batch = batch[n:]
	}
}

func (c *Collector) flushWindow(ctx context.Context, b *backend, batch []liveWrite) {
	vals := make([][]byte, len(batch))
	for i, w := range batch {
		val, err := json.Marshal(&w.rec)
		if err == nil && len(val) > maxLivenessBytes {
			err = fmt.Errorf("%d bytes, limit %d", len(val), maxLivenessBytes)
		}
		if err != nil {
			c.rejected.Add(1)
			c.rejectedLog.warn(c.log, "liveness_record_rejected", "host", w.rec.Host, "vm", w.rec.VM, "err", err)
			continue
		}
		vals[i] = val
	}
	c.live.mu.Lock()
	for i, w := range batch {
		c.live.m[w.key].sending = vals[i]
	}
	c.live.mu.Unlock()
	futures := make([]jetstream.PubAckFuture, len(batch))
	for i, w := range batch {
		if vals[i] == nil {
			continue
		}
		var err error
		subject := "$KV." + c.cfg.LivenessBucket + "." + w.key
		futures[i], err = b.js.PublishAsync(subject, vals[i], jetstream.WithExpectLastSequencePerSubject(w.rev))
		if err != nil {
			c.flushed(w, 0, err)
		}
	}
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case ack := <-f.Ok():
			c.flushed(batch[i], ack.Sequence, nil)
		case err := <-f.Err():
			c.flushed(batch[i], 0, err)
		case <-ctx.Done():
			c.flushed(batch[i], 0, ctx.Err())
		}
	}
}

// flushed notes how the write of w ended. A failed one is tried again at
// the next flush, unless the watcher has delivered a newer revision since,
// which settled whether a write is still needed.
func (c *Collector) flushed(w liveWrite, rev uint64, err error) {
	c.live.mu.Lock()
	l := c.live.m[w.key]
	l.sending = nil
	forgotten := !l.forgotAt.IsZero()
	switch {
	case err != nil && l.rev == w.rev && !forgotten:
		c.live.markDirty(w.key, l)
	case err == nil && rev > l.rev:
		l.rev = rev
	}
	if err == nil && forgotten {
		// The VM was removed while this write was on its way.
		c.live.forget(l, l.forgotAt, true)
	}
	c.live.mu.Unlock()
	if err == nil {
		c.changed(Change{Host: w.rec.Host, VM: w.rec.VM, What: "vm"})
		return
	}
	if wrongSequence(err) {
		c.conflicts.Add(1)
		return
	}
	if !errors.Is(err, context.Canceled) {
		c.log.Warn("liveness_write_failed", "host", w.rec.Host, "vm", w.rec.VM, "err", err)
	}
}

// watchLiveness keeps the liveness table up to date with the bucket, so
// that every collector sees the heartbeats every other one took. Records
// only ever move forward, so a watch started again merges what it reads
// into the table; the entries it did not find (a bucket that was
// recreated) lose the revision that their next write would expect.
func (c *Collector) watchLiveness(ctx context.Context, kv jetstream.KeyValue) error {
	return watchBucket(ctx, kv, c.cfg.LivenessBucket, bucketHandler{
		entry: func(e jetstream.KeyValueEntry, loading bool) {
			if host, vm, ok := c.watchedLive(e, loading); ok {
				c.changed(Change{Host: host, VM: vm, What: "vm"})
			}
		},
		loaded: func() {
			c.live.mu.Lock()
			for _, l := range c.live.m {
				if !l.loaded {
					l.rev = 0
				}
				l.loaded = false
			}
			c.live.ready = true
			c.live.mu.Unlock()
		},
	})
}

// watchedLive merges one watched entry into the liveness table, reporting
// which VM's view changed.
func (c *Collector) watchedLive(e jetstream.KeyValueEntry, initial bool) (host, vm string, changed bool) {
	key := e.Key()
	c.live.mu.Lock()
	l := c.live.m[key]
	if l != nil {
		l.loaded = l.loaded || initial
		if e.Revision() <= l.rev {
			// Known already: this collector's own write, acked first.
			c.live.mu.Unlock()
			return "", "", false
		}
		if l.sending != nil && bytes.Equal(l.sending, e.Value()) {
			// This collector's own write, delivered before its ack.
			l.rev = e.Revision()
			c.live.mu.Unlock()
			return "", "", false
		}
	}
	c.live.mu.Unlock()
	var rec liveRecord
	if e.Operation() == jetstream.KeyValuePut {
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			c.log.Error("corrupt_liveness_record", "key", key, "revision", e.Revision(), "err", err)
		}
	}
	c.live.mu.Lock()
	defer c.live.mu.Unlock()
	l = c.live.m[key]
	if l == nil {
		if rec.Heartbeat == nil {
			return "", "", false
		}
		l = &live{rec: liveRecord{Host: rec.Host, VM: rec.VM}}
		c.live.m[key] = l
	}
	l.loaded = l.loaded || initial
	if e.Revision() <= l.rev {
		return "", "", false
	}
	l.rev = e.Revision()
	if rec.LastSeen.After(l.rec.LastSeen) {
		l.rec.LastSeen, changed = rec.LastSeen, true
	}
	if e.Operation() != jetstream.KeyValuePut {
		// A deleted or purged record: the operator removed the VM, and
		// no heartbeat this table holds may bring it back.
		return l.rec.Host, l.rec.VM, c.live.forget(l, time.Now().UTC(), false)
	}
	if !l.forgotAt.IsZero() {
		if rec.Heartbeat == nil || l.forgot.Run != "" && !l.forgot.supersededBy(rec.Heartbeat.Origin) {
			// An older heartbeat written back after the VM was removed:
			// the removal wins.
			c.live.forget(l, l.forgotAt, true)
			return "", "", false
		}
		l.forgotAt, l.forgot, l.unwrite = time.Time{}, Origin{}, false
	}
	switch cur := l.rec.Heartbeat; {
	case rec.Heartbeat == nil:
		// An unreadable record: write the table's again.
		if cur != nil {
			c.live.markDirty(key, l)
		}
	case cur == nil || cur.supersededBy(rec.Heartbeat.Origin):
		l.rec.Heartbeat, l.dirty, changed = rec.Heartbeat, false, true
	case cur.Run == rec.Heartbeat.Run && cur.Seq == rec.Heartbeat.Seq:
		l.dirty = false
	default:
		// The bucket holds an older heartbeat than this table: another
		// collector's write overtook this one's.
		c.live.markDirty(key, l)
	}
	return l.rec.Host, l.rec.VM, changed
}
