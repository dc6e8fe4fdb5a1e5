package collector

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/internal/pause"
	"github.com/guestdiag/guestdiag/protocol"
)

// maxAlertBytes bounds one alert record: the evidence's data is bounded by
// maxCheckData, and the rest is a few KiB.
const maxAlertBytes = 256 << 10

// alertRecord is an alert as the collector's watched copy holds it.
type alertRecord struct {
	a   Alert
	rev uint64
}

// AlertKV returns the KV key of an alert: the VM's key and the
// fingerprint, so that "<host>.<vm>.*" watches one VM's alerts.
func AlertKV(k AlertKey) string {
	return Key(k.Host, k.VM) + "." + Fingerprint(k)
}

func (c *Collector) alertBucket(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:       c.cfg.AlertBucket,
		Description:  "guestdiag alerts, firing and resolved, one record per host, VM and fingerprint",
		MaxValueSize: maxAlertBytes,
		History:      1,
		Storage:      jetstream.FileStorage,
		Replicas:     c.cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("kv bucket %s: %w", c.cfg.AlertBucket, err)
	}
	return kv, nil
}

// observe applies obs (nil: a tick of the clock) to the alert of key with
// compare-and-set, and publishes the transition if this collector's write
// won. Another collector deciding the same transition loses the race,
// reads the record it wrote and finds nothing left to do.
func (c *Collector) observe(ctx context.Context, b *backend, key AlertKey, obs *observation, now time.Time) error {
	kvKey := AlertKV(key)
	for attempt := 1; ; attempt++ {
		err := c.tryObserve(ctx, b, kvKey, obs, now)
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return err
		}
		c.conflicts.Add(1)
		if attempt == maxAttempts {
			return fmt.Errorf("%d conflicting writes: %w", attempt, err)
		}
		if pause.For(ctx, casDelay(attempt)) != nil {
			return fmt.Errorf("write %s: %w", kvKey, ctx.Err())
		}
	}
}

func (c *Collector) tryObserve(ctx context.Context, b *backend, kvKey string, obs *observation, now time.Time) error {
	opCtx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	var prev *Alert
	var rev uint64
	entry, err := b.alerts.Get(opCtx, kvKey)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return fmt.Errorf("read %s: %w", kvKey, err)
	default:
		rev = entry.Revision()
		var a Alert
		if err := json.Unmarshal(entry.Value(), &a); err != nil {
			c.log.Error("corrupt_alert_record", "key", kvKey, "revision", rev, "err", err)
		} else {
			prev = &a
		}
	}
	next, act := step(prev, obs, now, c.cfg.Policy)
	switch act {
	case keep:
		return nil
	case remove:
		if err := b.alerts.Purge(opCtx, kvKey, jetstream.LastRevision(rev)); err != nil {
			return fmt.Errorf("purge %s: %w", kvKey, err)
		}
		c.forgetAlert(kvKey)
		return nil
	}
	val, err := json.Marshal(&next)
	if err != nil {
		return fmt.Errorf("encode alert %s: %w", kvKey, err)
	}
	// A write cut short by this collector being stopped may still land on
	// the server, leaving a transition for the sweep to publish 20 s later;
	// letting it finish keeps an orderly stop from delaying any alert.
	wctx, wcancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer wcancel()
	if rev == 0 {
		rev, err = b.alerts.Create(wctx, kvKey, val)
	} else {
		rev, err = b.alerts.Update(wctx, kvKey, val, rev)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", kvKey, err)
	}
	c.cacheAlert(kvKey, next, rev)
	if act == notify {
		// The write is what counts: once it is in, the publication must
		// happen even if this collector is being stopped.
		c.publish(context.WithoutCancel(ctx), b, kvKey, next, rev)
		if next.State == AlertResolved {
			c.evictResolved(context.WithoutCancel(ctx), b, alertVMKey(kvKey))
		}
	}
	return nil
}

// evictResolved deletes the oldest resolved alerts of the VM of vmKey
// beyond maxResolvedPerVM, so that a guest raising ever new conditions
// cannot fill the bucket with history. One still pending publication is
// left for the sweep to publish first.
func (c *Collector) evictResolved(ctx context.Context, b *backend, vmKey string) {
	c.mu.RLock()
	var resolved []alertRecord
	var keys []string
	for kvKey := range c.alertsByVM[vmKey] {
		if r := c.alerts[kvKey]; r.a.State == AlertResolved {
			resolved = append(resolved, r)
			keys = append(keys, kvKey)
		}
	}
	c.mu.RUnlock()
	if len(resolved) <= maxResolvedPerVM {
		return
	}
	order := make([]int, len(resolved))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(i, j int) int {
		return cmp.Or(resolved[i].a.EndsAt.Compare(resolved[j].a.EndsAt), cmp.Compare(keys[i], keys[j]))
	})
	for _, i := range order[:len(resolved)-maxResolvedPerVM] {
		if resolved[i].a.Pending {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, opTimeout)
		err := b.alerts.Purge(pctx, keys[i], jetstream.LastRevision(resolved[i].rev))
		cancel()
		switch {
		case err == nil:
			c.forgetAlert(keys[i])
		case errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			// Another collector changed the record meanwhile: it fired
			// again, or that collector evicts it.
		default:
			c.log.Warn("alert_evict_failed", "key", keys[i], "err", err)
		}
	}
}

// publish tells the world of a transition recorded in rev of the alert's
// record: on NATS, to every notifier, on the VM's timeline; then it clears
// the record's pending mark. If the collector dies before that, the sweep
// of any collector finds the mark and publishes again: at least once,
// with the same Nats-Msg-Id, so the stream keeps it once.
func (c *Collector) publish(ctx context.Context, b *backend, kvKey string, a Alert, rev uint64) {
	a.Pending = false
	val, err := json.Marshal(&a)
	if err != nil {
		c.log.Error("alert_encode_failed", "key", kvKey, "err", err)
		return
	}
	pctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	subject := protocol.AlertSubject(a.Severity, a.Key.Host, a.Key.VM)
	msgID := a.Fingerprint + "/" + strconv.FormatUint(a.Seq, 10)
	_, err = b.js.Publish(pctx, subject, val, jetstream.WithMsgID(msgID))
	if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) {
		// No stream captures the subject: core NATS still reaches
		// every subscriber.
		err = c.nc.Publish(subject, val)
	}
	if err != nil {
		c.log.Warn("alert_publish_failed", "subject", subject, "fingerprint", a.Fingerprint, "err", err)
		return
	}
	c.published.Add(1)
	for _, n := range c.cfg.Notifiers {
		if err := n.Notify(pctx, a); err != nil {
			c.log.Warn("alert_notify_failed", "fingerprint", a.Fingerprint, "err", err)
		}
	}
	if err := c.appendTimeline(pctx, b, a.Key.Host, a.Key.VM, alertTimelineEvent(&a), "alert/"+msgID); err != nil {
		c.log.Warn("timeline_append_failed", "fingerprint", a.Fingerprint, "err", err)
	}
	if newRev, err := b.alerts.Update(pctx, kvKey, val, rev); err == nil {
		c.cacheAlert(kvKey, a, newRev)
	}
	c.changed(Change{Host: a.Key.Host, VM: a.Key.VM, What: "alert"})
}

func alertTimelineEvent(a *Alert) TimelineEvent {
	ts := a.StartsAt
	text := "firing: " + a.Summary
	if a.State == AlertResolved {
		ts, text = a.EndsAt, "resolved: "+a.Summary
	} else if a.Seq > 1 {
		ts = a.Notified
		if a.Flapping {
			text = "flapping: " + a.Summary
		}
	}
	return TimelineEvent{TS: ts, Kind: "alert", Check: a.Key.Check, To: string(a.State), Text: text}
}

func (c *Collector) cacheAlert(kvKey string, a Alert, rev uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur, ok := c.alerts[kvKey]; !ok || cur.rev < rev {
		c.putAlert(kvKey, alertRecord{a: a, rev: rev})
	}
}

func (c *Collector) forgetAlert(kvKey string) {
	c.mu.Lock()
	c.deleteAlert(kvKey)
	c.mu.Unlock()
}

// alertVMKey is the VM key of an alert's KV key: the fingerprint after
// the last dot is hex.
func alertVMKey(kvKey string) string {
	if i := strings.LastIndexByte(kvKey, '.'); i >= 0 {
		return kvKey[:i]
	}
	return kvKey
}

// putAlert and deleteAlert change c.alerts and its index by VM, which
// lets a result look at its own VM's alerts only. The caller holds c.mu.
func (c *Collector) putAlert(kvKey string, r alertRecord) {
	if _, ok := c.alerts[kvKey]; !ok {
		c.indexAlert(kvKey)
	}
	c.alerts[kvKey] = r
}

func (c *Collector) indexAlert(kvKey string) {
	vk := alertVMKey(kvKey)
	if c.alertsByVM[vk] == nil {
		c.alertsByVM[vk] = make(map[string]struct{})
	}
	c.alertsByVM[vk][kvKey] = struct{}{}
}

func (c *Collector) deleteAlert(kvKey string) {
	if _, ok := c.alerts[kvKey]; !ok {
		return
	}
	delete(c.alerts, kvKey)
	vk := alertVMKey(kvKey)
	delete(c.alertsByVM[vk], kvKey)
	if len(c.alertsByVM[vk]) == 0 {
		delete(c.alertsByVM, vk)
	}
}

// replaceAlerts makes m the watched copy of the alert bucket. The caller
// holds c.mu.
func (c *Collector) replaceAlerts(m map[string]alertRecord) {
	c.alerts = m
	c.alertsByVM = make(map[string]map[string]struct{})
	for kvKey := range m {
		c.indexAlert(kvKey)
	}
}

// watchAlerts keeps c.alerts equal to the alert bucket, as watch does for
// the VMs.
func (c *Collector) watchAlerts(ctx context.Context, kv jetstream.KeyValue) error {
	initial := make(map[string]alertRecord)
	return watchBucket(ctx, kv, c.cfg.AlertBucket, bucketHandler{
		entry: func(e jetstream.KeyValueEntry, loading bool) {
			var a Alert
			put := e.Operation() == jetstream.KeyValuePut
			if put {
				if err := json.Unmarshal(e.Value(), &a); err != nil {
					c.log.Error("corrupt_alert_record", "key", e.Key(), "revision", e.Revision(), "err", err)
					return
				}
			}
			if loading {
				if put {
					initial[e.Key()] = alertRecord{a: a, rev: e.Revision()}
				} else {
					delete(initial, e.Key())
				}
				return
			}
			c.mu.Lock()
			cur, had := c.alerts[e.Key()]
			switch {
			case !put:
				c.deleteAlert(e.Key())
			case !had || cur.rev < e.Revision():
				c.putAlert(e.Key(), alertRecord{a: a, rev: e.Revision()})
			}
			c.mu.Unlock()
			c.changed(Change{Host: a.Key.Host, VM: a.Key.VM, What: "alert"})
		},
		loaded: func() {
			c.mu.Lock()
			c.replaceAlerts(initial)
			c.alertsReady = true
			c.mu.Unlock()
			initial = nil
		},
	})
}

// Alerts returns the alerts f selects from the watched copy of the alert
// bucket: firing before resolved, then crit before warn before info, then
// the newest StartsAt first.
func (c *Collector) Alerts(f AlertFilter) []Alert {
	c.mu.RLock()
	out := make([]Alert, 0, len(c.alerts))
	for _, r := range c.alerts {
		a := &r.a
		if f.State != "" && a.State != f.State || f.Severity != "" && a.Severity != f.Severity ||
			f.Host != "" && a.Key.Host != f.Host || f.VM != "" && a.Key.VM != f.VM || f.Code != "" && a.Key.Code != f.Code {
			continue
		}
		out = append(out, r.a)
	}
	c.mu.RUnlock()
	slices.SortFunc(out, func(a, b Alert) int {
		return cmp.Or(
			cmp.Compare(stateRank(a.State), stateRank(b.State)),
			cmp.Compare(severityRank(b.Severity), severityRank(a.Severity)),
			b.StartsAt.Compare(a.StartsAt),
			cmp.Compare(a.Fingerprint, b.Fingerprint),
		)
	})
	return out
}

// alert returns one alert by fingerprint.
func (c *Collector) alert(fingerprint string) (Alert, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, r := range c.alerts {
		if r.a.Fingerprint == fingerprint {
			return r.a, true
		}
	}
	return Alert{}, false
}

func stateRank(s AlertState) int {
	if s == AlertFiring {
		return 0
	}
	return 1
}

func severityRank(s string) int {
	switch protocol.Severity(s) {
	case protocol.SeverityCrit:
		return 3
	case protocol.SeverityWarn:
		return 2
	case protocol.SeverityInfo:
		return 1
	}
	return 0
}
