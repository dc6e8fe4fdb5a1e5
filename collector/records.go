package collector

// VM records: each message's compare-and-set write, and the watched copy
// of the bucket that the writes start from and the API answers from.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/internal/pause"
)

// store applies u to its VM's record with compare-and-set on the record's
// revision, re-reading and retrying when another collector got there first.
// The first attempt starts from the watched copy of the record, which saves
// a round trip whenever no other collector wrote the record since.
func (c *Collector) store(ctx context.Context, b *backend, u update) (outcome, error) {
	key := Key(u.host, u.vm)
	for attempt := 1; ; attempt++ {
		out, err := c.tryStore(ctx, b, key, u, attempt == 1)
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return out, err
		}
		c.conflicts.Add(1)
		if attempt == maxAttempts {
			return out, fmt.Errorf("%d conflicting writes: %w", attempt, err)
		}
		if pause.For(ctx, casDelay(attempt)) != nil {
			return out, fmt.Errorf("write %s: %w", key, ctx.Err())
		}
	}
}

// casDelay is the pause after the attempt-th conflicting write: doubling
// from casBackoffMin up to casBackoffMax, and drawn from the upper half of
// that so that collectors which collided do not retry in lockstep and
// collide again.
func casDelay(attempt int) time.Duration {
	d := casBackoffMax
	if attempt < 16 {
		d = min(casBackoffMin<<(attempt-1), casBackoffMax)
	}
	return d/2 + rand.N(d/2+1)
}

// cached returns the watched copy of the record of key and its revision,
// or false when there is none to start from.
func (c *Collector) cached(key string) (VM, uint64, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	rev := c.revs[key]
	if rev == 0 {
		return VM{}, 0, false
	}
	return c.vms[key], rev, true
}

// remember puts a record this collector wrote into the watched copy at
// once, so the VM's next message starts from it without waiting for the
// watcher; the watcher's own delivery of it is then skipped.
func (c *Collector) remember(key string, v VM, rev uint64) {
	c.mu.Lock()
	if rev > c.revs[key] {
		c.vms[key], c.revs[key] = v, rev
	}
	c.mu.Unlock()
}

// ownWrite is a record on its way to the bucket, kept so that the watcher
// recognises it by its bytes and takes it as it is rather than decoding it.
type ownWrite struct {
	val []byte
	v   VM
}

// writeStarted and writeFailed keep c.writing; the watcher empties it.
func (c *Collector) writeStarted(key string, val []byte, v VM) {
	c.mu.Lock()
	c.writing[key] = ownWrite{val: val, v: v}
	c.mu.Unlock()
}

func (c *Collector) writeFailed(key string, val []byte) {
	c.mu.Lock()
	if w, ok := c.writing[key]; ok && &w.val[0] == &val[0] {
		delete(c.writing, key)
	}
	c.mu.Unlock()
}

// read fetches the record of key from the bucket: zero revision when there
// is none.
func (c *Collector) read(ctx context.Context, b *backend, key string, u update) (VM, uint64, error) {
	v := VM{Name: u.vm, Host: u.host}
	entry, err := b.vms.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return v, 0, nil
	case err != nil:
		return v, 0, fmt.Errorf("read %s: %w", key, err)
	}
	v, err = decodeRecord(entry.Value())
	if err != nil {
		// Only collectors write the bucket; a record that does not
		// decode would block its VM forever, so start it afresh.
		c.log.Error("corrupt_state_record", "key", key, "revision", entry.Revision(), "err", err)
		v = VM{Name: u.vm, Host: u.host}
	}
	return v, entry.Revision(), nil
}

func (c *Collector) tryStore(ctx context.Context, b *backend, key string, u update, useCache bool) (outcome, error) {
	opCtx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	var old VM
	var rev uint64
	fromCache := false
	if useCache {
		old, rev, fromCache = c.cached(key)
	}
	for {
		if !fromCache {
			var err error
			if old, rev, err = c.read(opCtx, b, key, u); err != nil {
				return 0, err
			}
		}
		// The record stays as it is: the watched copy is shared with the
		// API's readers.
		v := old.clone()
		out := u.apply(&v)
		if out == stale {
			// A result older than the one the record holds was never
			// applied, so no write decided its alerts; see lateResult.
			if fx := c.lateResult(&old, u); !fx.empty() {
				if err := c.effects(ctx, b, fx); err != nil {
					return 0, err
				}
			}
		}
		if out != applied {
			// A copy is never newer than the record, and a message older
			// than the copy is older than the record too.
			return out, nil
		}
		fx := c.plan(&old, &v, u)
		if fromCache && !fx.empty() {
			// What the change causes is judged against the record itself,
			// so a copy that is behind adds no timeline entry that the
			// record would not.
			fromCache = false
			continue
		}
		val, err := encodeRecord(&v)
		if err != nil {
			return 0, err
		}
		// Alerts and the timeline go first: if the collector dies before
		// the record is written, the message comes back and finds the
		// record unchanged, so nothing it caused is lost; what was already
		// written is recognised by its origin and message ids.
		if err := c.effects(ctx, b, fx); err != nil {
			return 0, err
		}
		c.writeStarted(key, val, v)
		if rev == 0 {
			rev, err = b.vms.Create(opCtx, key, val)
		} else {
			rev, err = b.vms.Update(opCtx, key, val, rev)
		}
		if err != nil {
			c.writeFailed(key, val)
		}
		if fromCache && (errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)) {
			// The watched copy was behind: read the record and try
			// again at once, since no write collided with this one.
			c.conflicts.Add(1)
			fromCache = false
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("write %s: %w", key, err)
		}
		c.remember(key, v, rev)
		return applied, nil
	}
}

// watch keeps c.vms equal to the bucket, whoever writes it, so the API
// answers from memory and every collector of a fleet serves the same state.
// The bucket's current records are gathered first and then replace c.vms at
// once, so that a watch started again after a failure drops the records
// deleted meanwhile, and the API goes on answering from the old view until
// then.
func (c *Collector) watch(ctx context.Context, kv jetstream.KeyValue) error {
	initial := make(map[string]VM)
	initialRevs := make(map[string]uint64)
	return watchBucket(ctx, kv, c.cfg.Bucket, bucketHandler{
		entry: func(e jetstream.KeyValueEntry, loading bool) {
			if !loading {
				c.watchedVM(e)
				return
			}
			if e.Operation() != jetstream.KeyValuePut {
				delete(initial, e.Key())
				delete(initialRevs, e.Key())
				return
			}
			v, err := decodeRecord(e.Value())
			if err != nil {
				c.log.Error("corrupt_state_record", "key", e.Key(), "revision", e.Revision(), "err", err)
				return
			}
			initial[e.Key()], initialRevs[e.Key()] = v, e.Revision()
		},
		loaded: func() {
			c.mu.Lock()
			c.vms, c.revs, c.ready = initial, initialRevs, true
			c.mu.Unlock()
			initial, initialRevs = nil, nil
		},
	})
}

// watchedVM applies one entry watched after the initial load to c.vms.
func (c *Collector) watchedVM(e jetstream.KeyValueEntry) {
	key := e.Key()
	if e.Operation() != jetstream.KeyValuePut {
		c.mu.Lock()
		old := c.vms[key]
		delete(c.vms, key)
		delete(c.revs, key)
		c.mu.Unlock()
		c.forgetVM(key, old.Host, old.Name)
		return
	}
	var v VM
	c.mu.Lock()
	known, mine := c.revs[key], c.vms[key]
	w, decoded := c.writing[key]
	decoded = decoded && bytes.Equal(w.val, e.Value())
	if decoded {
		// This collector wrote it: take what it encoded.
		delete(c.writing, key)
		v = w.v
	}
	c.mu.Unlock()
	if known != 0 && known >= e.Revision() {
		// This collector wrote it and remembered it already.
		c.changed(Change{Host: mine.Host, VM: mine.Name, What: "vm"})
		return
	}
	if !decoded {
		var err error
		if v, err = decodeRecord(e.Value()); err != nil {
			c.log.Error("corrupt_state_record", "key", key, "revision", e.Revision(), "err", err)
			return
		}
	}
	c.mu.Lock()
	if c.revs[key] == 0 || e.Revision() > c.revs[key] {
		c.vms[key], c.revs[key] = v, e.Revision()
	}
	c.mu.Unlock()
	c.changed(Change{Host: v.Host, VM: v.Name, What: "vm"})
}
