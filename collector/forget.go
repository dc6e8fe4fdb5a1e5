package collector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// forget drops the heartbeat of l, whose VM the operator removed, and
// keeps what is needed to refuse a late one: its origin and the record's
// revision. unwrite asks the next flush to delete the bucket's record
// too. It reports whether the VM's view changed. The caller holds t.mu.
func (t *liveness) forget(l *live, now time.Time, unwrite bool) bool {
	had := l.rec.Heartbeat != nil
	if l.forgotAt.IsZero() {
		l.forgotAt = now
		if had {
			l.forgot = l.rec.Heartbeat.Origin
		}
	}
	l.rec = liveRecord{Host: l.rec.Host, VM: l.rec.VM}
	l.dirty = false
	if !unwrite {
		l.unwrite = false
	} else if !l.unwrite {
		l.unwrite = true
		t.unwrites = append(t.unwrites, Key(l.rec.Host, l.rec.VM))
	}
	return had
}

// takeUnwrites returns the keys queued for deletion from the bucket. The
// caller holds t.mu.
func (t *liveness) takeUnwrites() []string {
	keys := t.unwrites
	t.unwrites = nil
	return keys
}

// forgetVM is called when the VM record of key was deleted: the operator
// removed the VM, so its liveness entry goes too, in this table and in the
// bucket, and the sweep retires its alerts.
func (c *Collector) forgetVM(key, host, vm string) {
	c.live.mu.Lock()
	l := c.live.m[key]
	if l == nil && host == "" {
		// Neither record was known: nothing to forget.
		c.live.mu.Unlock()
		return
	}
	if l == nil {
		// Marked all the same, so that the sweep retires its alerts now.
		l = &live{rec: liveRecord{Host: host, VM: vm}}
		c.live.m[key] = l
	}
	changed := c.live.forget(l, time.Now().UTC(), l.rev > 0 || l.sending != nil)
	host, vm = l.rec.Host, l.rec.VM
	c.live.mu.Unlock()
	c.log.Info("vm_forgotten", "host", host, "vm", vm)
	if changed {
		c.changed(Change{Host: host, VM: vm, What: "vm"})
	}
}

// unwrite deletes the liveness records of the forgotten VMs of keys, each
// expecting the revision this collector knows, so that a newer heartbeat
// that another collector wrote meanwhile stays.
func (c *Collector) unwrite(ctx context.Context, b *backend, keys []string) {
	for _, key := range keys {
		c.live.mu.Lock()
		l := c.live.m[key]
		if l == nil || !l.unwrite {
			c.live.mu.Unlock()
			continue
		}
		l.unwrite = false
		rev := l.rev
		c.live.mu.Unlock()
		var opts []jetstream.KVDeleteOpt
		if rev > 0 {
			opts = append(opts, jetstream.LastRevision(rev))
		}
		err := b.live.Delete(ctx, key, opts...)
		if err != nil && !wrongSequence(err) && !errors.Is(err, context.Canceled) {
			c.log.Warn("liveness_delete_failed", "key", key, "err", err)
		}
	}
}

// wrongSequence reports whether err is a compare-and-set that lost: the
// record changed since the revision it expected.
func wrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// orphanGrace is how long an alert of a VM that has neither a VM record
// nor a liveness record is kept before the sweep retires it, when no
// deletion of the VM was watched (a collector started after it): longer
// than a first message takes from its alert write to its record write,
// redelivery included.
func (c *Collector) orphanGrace() time.Duration {
	return 2*c.cfg.AckWait + pendingGrace
}

// orphanAlerts returns the KV keys of the alerts the sweep retires: those
// of VMs with neither a VM record nor a heartbeat, at once when the VM
// was forgotten after the alert's last change, else after orphanGrace.
// The caller holds c.mu.
func (c *Collector) orphanAlerts(now time.Time) map[string]bool {
	out := make(map[string]bool)
	c.live.mu.Lock()
	defer c.live.mu.Unlock()
	for vk, keys := range c.alertsByVM {
		if _, ok := c.vms[vk]; ok {
			continue
		}
		var forgotAt time.Time
		if l := c.live.m[vk]; l != nil {
			if l.rec.Heartbeat != nil {
				continue
			}
			forgotAt = l.forgotAt
		}
		for kvKey := range keys {
			a := c.alerts[kvKey].a
			if !forgotAt.IsZero() && !a.Updated.After(forgotAt) || now.Sub(a.Updated) >= c.orphanGrace() {
				out[kvKey] = true
			}
		}
	}
	return out
}

// retire ends the alert of kvKey, whose VM is gone: a firing one is
// resolved and published, so that Alertmanager and subscribers learn it
// ended, then the record is purged.
func (c *Collector) retire(ctx context.Context, b *backend, kvKey string, now time.Time) error {
	opCtx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	entry, err := b.alerts.Get(opCtx, kvKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		c.forgetAlert(kvKey)
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", kvKey, err)
	}
	purge := []jetstream.KVDeleteOpt{jetstream.LastRevision(entry.Revision())}
	var a Alert
	if json.Unmarshal(entry.Value(), &a) == nil && a.State == AlertFiring {
		a = a.clone()
		a.State, a.EndsAt, a.Updated = AlertResolved, now, now
		a.Flapping, a.ClearSince = false, time.Time{}
		a = a.notified(now)
		val, err := json.Marshal(&a)
		if err != nil {
			return fmt.Errorf("encode alert %s: %w", kvKey, err)
		}
		rev, err := b.alerts.Update(opCtx, kvKey, val, entry.Revision())
		if err != nil {
			return fmt.Errorf("write %s: %w", kvKey, err)
		}
		c.cacheAlert(kvKey, a, rev)
		c.publish(context.WithoutCancel(ctx), b, kvKey, a, rev)
		// publish wrote the record again; the VM is gone, so whatever
		// the record holds now goes.
		purge = nil
	}
	if err := b.alerts.Purge(opCtx, kvKey, purge...); err != nil {
		return fmt.Errorf("purge %s: %w", kvKey, err)
	}
	c.forgetAlert(kvKey)
	c.log.Info("alert_retired", "host", a.Key.Host, "vm", a.Key.VM, "code", a.Key.Code)
	return nil
}
