package collector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/internal/pause"
	"github.com/guestdiag/guestdiag/protocol"
)

// DefaultHostBucket holds one record per host: its newest usage, the
// sample windows, the drain mark and the raised hints.
const DefaultHostBucket = "guestdiag_hosts"

const (
	// maxHostRecordBytes bounds a host record: the newest usage with a few
	// hundred VMs, two windows of samples and a handful of hints.
	maxHostRecordBytes = 512 << 10
	// maxHostName is a DNS name's limit; host names become KV keys.
	maxHostName = 253
	// maxOutbox bounds the transitions a record holds unpublished.
	maxOutbox = 64
	// signalsMaxAge is how old the per-host summary of guest findings may
	// be: rebuilding it walks every VM record, so it is done at most once
	// per second however many hosts report.
	signalsMaxAge = time.Second
)

// MaxDrainReason bounds an operator's drain reason, in bytes, wherever it
// is given (API, CLI, dashboard) and shown.
const MaxDrainReason = 1000

// ErrNotConnected is returned by Drain and Undrain before the collector has
// set JetStream up.
var ErrNotConnected = errors.New("collector not connected to JetStream yet")

// hostRecord is the JSON value of a host's KV record.
type hostRecord struct {
	Host  string              `json:"host"`
	Usage *protocol.HostUsage `json:"usage,omitempty"`
	// CPU and Mem are the last Window samples that carried that figure,
	// oldest first, which the hints count.
	CPU   []protocol.HostSample `json:"cpu_window,omitempty"`
	Mem   []protocol.HostSample `json:"mem_window,omitempty"`
	Drain *Drain                `json:"drain,omitempty"`
	// Hints are the raised hints by hintKey.
	Hints map[string]protocol.Hint `json:"hints,omitempty"`
	// Seq counts the host's transitions; "hint/<host>/<seq>" is each one's
	// Nats-Msg-Id, so a publication repeated by another collector is kept
	// once.
	Seq uint64 `json:"seq"`
	// Outbox holds transitions written but not yet known published; the
	// next writer of the record publishes them (again).
	Outbox []outgoing `json:"outbox,omitempty"`
}

type outgoing struct {
	Seq  uint64        `json:"seq"`
	Hint protocol.Hint `json:"hint"`
}

// hostState is the collector's watched copy of the host bucket.
type hostState struct {
	kv        atomic.Pointer[hostBackend]
	published atomic.Uint64

	mu    sync.RWMutex
	ready bool
	recs  map[string]hostEntry // by KV key

	sigMu    sync.Mutex
	sigAt    time.Time
	sigIndex map[string]*guestSignals
}

type hostBackend struct {
	js jetstream.JetStream
	kv jetstream.KeyValue
}

type hostEntry struct {
	rec hostRecord
	rev uint64
}

func (c *Collector) hostBucket(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:       c.cfg.HostBucket,
		Description:  "guestdiag hosts: newest usage, sample windows, drain mark and raised placement hints",
		MaxValueSize: maxHostRecordBytes,
		History:      1,
		Storage:      jetstream.FileStorage,
		Replicas:     c.cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("kv bucket %s: %w", c.cfg.HostBucket, err)
	}
	c.hosts.kv.Store(&hostBackend{js: js, kv: kv})
	return kv, nil
}

// validHostName refuses a host name that could not be a relay's --host: a
// name is shown on terminals and pages and becomes a KV key.
func validHostName(host string) error {
	switch {
	case host == "":
		return errors.New("empty host name")
	case len(host) > maxHostName:
		return fmt.Errorf("host name of %d bytes; at most %d", len(host), maxHostName)
	case !utf8.ValidString(host):
		return errors.New("host name is not valid UTF-8")
	case strings.ContainsFunc(host, func(r rune) bool { return unicode.IsControl(r) || !unicode.IsPrint(r) }):
		return errors.New("host name has control or non-printable characters")
	}
	return nil
}

// CheckOperatorText refuses an operator's text (a drain reason, a name)
// that could not be shown as it is: too long, not UTF-8, or with control
// characters.
func CheckOperatorText(s string) error {
	switch {
	case len(s) > MaxDrainReason:
		return fmt.Errorf("%d bytes; at most %d", len(s), MaxDrainReason)
	case !utf8.ValidString(s):
		return errors.New("not valid UTF-8")
	case strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) || !unicode.IsPrint(r) }):
		return errors.New("has control or non-printable characters")
	}
	return nil
}

// operator is who drains or undrains: "anonymous" when nobody is named.
func operator(by string) (string, error) {
	if by == "" {
		return anonymous, nil
	}
	if err := CheckOperatorText(by); err != nil {
		return "", fmt.Errorf("operator name: %w", err)
	}
	return by, nil
}

// decodeHostUsage reads a guestdiag.host message; the subject must be the
// one its relay would publish it on.
func decodeHostUsage(subject string, data []byte) (*protocol.HostUsage, error) {
	var u protocol.HostUsage
	if err := json.Unmarshal(data, &u); err != nil {
		return nil, fmt.Errorf("host usage: %w", err)
	}
	if u.V != protocol.Version {
		return nil, fmt.Errorf("host usage: %w: v %d", protocol.ErrUnsupportedVersion, u.V)
	}
	if err := validHostName(u.Host); err != nil {
		return nil, fmt.Errorf("host usage: %w", err)
	}
	if protocol.HostSubject(u.Host) != subject {
		return nil, fmt.Errorf("host usage of %q on subject %s", u.Host, subject)
	}
	if u.TS.IsZero() {
		return nil, errors.New("host usage: no ts")
	}
	return &u, nil
}

// handleHost applies one host sample to its host's record.
func (c *Collector) handleHost(ctx context.Context, msg jetstream.Msg, streamSeq uint64) {
	u, err := decodeHostUsage(msg.Subject(), msg.Data())
	if c.refused(msg, streamSeq, err) {
		return
	}
	sig := c.signalsOf(u.Host)
	out, err := c.updateHost(ctx, u.Host, func(rec *hostRecord) ([]protocol.Hint, bool) { return c.applySample(rec, u, sig) })
	switch {
	case err == nil && out == applied:
		c.applied.Add(1)
	case err == nil:
		c.stale.Add(1)
	case ctx.Err() != nil:
		c.settle(msg.Nak(), msg, streamSeq)
		return
	default:
		c.failed.Add(1)
		c.log.Error("host_update_failed", "subject", msg.Subject(), "stream_seq", streamSeq, "host", u.Host, "err", err)
		c.settle(msg.NakWithDelay(retryDelay), msg, streamSeq)
		return
	}
	c.settle(msg.Ack(), msg, streamSeq)
}

// applySample folds u into rec and returns the hint transitions; it
// leaves rec alone and reports false when u is not newer than its newest
// sample (a redelivery).
func (c *Collector) applySample(rec *hostRecord, u *protocol.HostUsage, sig guestSignals) ([]protocol.Hint, bool) {
	if rec.Usage != nil && !u.TS.After(rec.Usage.TS) {
		return nil, false
	}
	n := c.cfg.Hints.Window
	s := protocol.HostSample{TS: u.TS, CPUPct: u.CPU.UsedPct, MemPct: u.Memory.UsedPct}
	push := func(w []protocol.HostSample) []protocol.HostSample {
		w = append(w, s)
		return slices.Clone(w[max(0, len(w)-n):])
	}
	rec.Usage = u
	cpuNew, memNew := !u.Lacks("cpu"), !u.Lacks("mem")
	if cpuNew {
		rec.CPU = push(rec.CPU)
	}
	if memNew {
		rec.Mem = push(rec.Mem)
	}
	return evaluate(rec, hintInput{cfg: c.cfg.Hints, now: u.TS, cpu: rec.CPU, mem: rec.Mem, cpuNew: cpuNew, memNew: memNew, signals: sig}), true
}

// updateHost changes host's record with change under compare-and-set,
// retrying on conflict, then publishes the transitions change returns.
// change reports false to leave the record alone; it may run several
// times, each time on a fresh read.
func (c *Collector) updateHost(ctx context.Context, host string, change func(*hostRecord) ([]protocol.Hint, bool)) (outcome, error) {
	hb := c.hosts.kv.Load()
	if hb == nil {
		return stale, ErrNotConnected
	}
	key := kvToken(host)
	for attempt := 1; ; attempt++ {
		// The first attempt starts from the watched copy, which saves a
		// read per sample while this collector's copy is current; a
		// conflict means it was not, and the retries read.
		out, err := c.tryUpdateHost(ctx, hb, key, host, change, attempt == 1)
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return out, err
		}
		c.conflicts.Add(1)
		if attempt == maxAttempts {
			return stale, fmt.Errorf("%d conflicting writes: %w", attempt, err)
		}
		if pause.For(ctx, casDelay(attempt)) != nil {
			return stale, fmt.Errorf("write host %s: %w", key, ctx.Err())
		}
	}
}

func (c *Collector) tryUpdateHost(ctx context.Context, hb *hostBackend, key, host string, change func(*hostRecord) ([]protocol.Hint, bool), cached bool) (out outcome, err error) {
	opCtx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	rec := hostRecord{Host: host}
	var rev uint64
	var entry jetstream.KeyValueEntry
	if cached {
		var r hostRecord
		if r, rev, cached = c.cachedHost(key); cached {
			rec = r
		}
	}
	if !cached {
		entry, err = hb.kv.Get(opCtx, key)
	}
	switch {
	case cached:
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return stale, fmt.Errorf("read host %s: %w", key, err)
	default:
		rev = entry.Revision()
		if err := json.Unmarshal(entry.Value(), &rec); err != nil {
			// A record no collector can read is replaced rather than
			// blocking the host's hints for ever.
			c.log.Error("corrupt_host_record", "key", key, "revision", rev, "err", err)
			rec = hostRecord{Host: host}
		}
	}
	hints, changed := change(&rec)
	if !changed {
		if len(rec.Outbox) > 0 {
			c.publishHints(ctx, hb, key, rec, rev)
		}
		return stale, nil
	}
	for _, h := range hints {
		rec.Seq++
		rec.Outbox = append(rec.Outbox, outgoing{Seq: rec.Seq, Hint: h})
	}
	if n := len(rec.Outbox) - maxOutbox; n > 0 {
		// NATS took writes but no publications for a long while: the
		// oldest transitions are history by now.
		c.log.Warn("hint_outbox_full", "host", host, "dropped", n)
		rec.Outbox = slices.Clone(rec.Outbox[n:])
	}
	val, err := json.Marshal(&rec)
	if err == nil && len(val) > maxHostRecordBytes && rec.Usage != nil {
		// A host with thousands of QEMU processes: the record keeps its
		// own figures and leaves the per-VM list to the stream.
		u := *rec.Usage
		u.VMs = nil
		rec.Usage = &u
		val, err = json.Marshal(&rec)
	}
	if err != nil {
		return stale, fmt.Errorf("encode host %s: %w", key, err)
	}
	wctx, wcancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer wcancel()
	if rev == 0 {
		rev, err = hb.kv.Create(wctx, key, val)
	} else {
		rev, err = hb.kv.Update(wctx, key, val, rev)
	}
	if err != nil {
		return stale, fmt.Errorf("write host %s: %w", key, err)
	}
	c.cacheHost(key, rec, rev)
	if len(rec.Outbox) > 0 {
		c.publishHints(context.WithoutCancel(ctx), hb, key, rec, rev)
	}
	return applied, nil
}

// publishHints publishes the outbox of rec, written at rev, and empties
// it. Each hint's Nats-Msg-Id is fixed by its seq, so the stream keeps
// once what two collectors, or one retrying, publish twice.
func (c *Collector) publishHints(ctx context.Context, hb *hostBackend, key string, rec hostRecord, rev uint64) {
	pctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	subject := protocol.HintSubject(rec.Host)
	for _, o := range rec.Outbox {
		val, err := json.Marshal(&o.Hint)
		if err != nil {
			c.log.Error("hint_encode_failed", "host", rec.Host, "err", err)
			return
		}
		// The time keeps the id unique should Seq ever start over (a
		// corrupt record replaced) within the de-duplication window.
		msgID := "hint/" + key + "/" + strconv.FormatUint(o.Seq, 10) + "/" + strconv.FormatInt(o.Hint.TS.UnixNano(), 10)
		_, err = hb.js.Publish(pctx, subject, val, jetstream.WithMsgID(msgID))
		if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) {
			err = c.nc.Publish(subject, val)
		}
		if err != nil {
			c.log.Warn("hint_publish_failed", "subject", subject, "seq", o.Seq, "err", err)
			return
		}
		c.hosts.published.Add(1)
		c.log.Info("hint_published", "host", rec.Host, "kind", o.Hint.Kind, "resource", o.Hint.Resource, "state", o.Hint.State)
	}
	rec.Outbox = nil
	val, err := json.Marshal(&rec)
	if err != nil {
		return
	}
	// A conflict means another collector wrote meanwhile; it publishes
	// what is left in the outbox it read.
	if newRev, err := hb.kv.Update(pctx, key, val, rev); err == nil {
		c.cacheHost(key, rec, newRev)
	}
}

// Drain marks host for maintenance and raises its evacuate hint, by the
// operator by, for reason. Draining a drained host keeps the first mark.
func (c *Collector) Drain(ctx context.Context, host, by, reason string) error {
	if err := validHostName(host); err != nil {
		return err
	}
	if err := CheckOperatorText(reason); err != nil {
		return fmt.Errorf("reason: %w", err)
	}
	by, err := operator(by)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	_, err = c.updateHost(ctx, host, func(rec *hostRecord) ([]protocol.Hint, bool) {
		if rec.Drain != nil {
			return nil, false
		}
		rec.Drain = &Drain{By: by, Reason: reason, Since: now}
		h := protocol.Hint{V: protocol.Version, Host: host, Kind: protocol.HintEvacuate, State: protocol.HintRaised, TS: now, Since: now,
			Summary: "drained by " + by, Evidence: protocol.HintEvidence{By: by, Reason: reason}}
		if reason != "" {
			h.Summary += ": " + reason
		}
		if rec.Hints == nil {
			rec.Hints = make(map[string]protocol.Hint)
		}
		rec.Hints[hintKey(protocol.HintEvacuate, "")] = h
		return []protocol.Hint{h}, true
	})
	return err
}

// Undrain removes host's maintenance mark and clears its evacuate hint.
// Undraining a host that is not drained changes nothing.
func (c *Collector) Undrain(ctx context.Context, host, by string) error {
	if err := validHostName(host); err != nil {
		return err
	}
	by, err := operator(by)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	_, err = c.updateHost(ctx, host, func(rec *hostRecord) ([]protocol.Hint, bool) {
		key := hintKey(protocol.HintEvacuate, "")
		h, raised := rec.Hints[key]
		if rec.Drain == nil && !raised {
			return nil, false
		}
		rec.Drain = nil
		delete(rec.Hints, key)
		if !raised {
			return nil, true
		}
		h.State, h.TS = protocol.HintCleared, now
		h.Summary = "undrained by " + by
		h.Evidence.By, h.Evidence.Reason = by, ""
		return []protocol.Hint{h}, true
	})
	return err
}

// cachedHost returns a copy of the watched record of key that change may
// edit, and whether there is one.
func (c *Collector) cachedHost(key string) (hostRecord, uint64, bool) {
	c.hosts.mu.RLock()
	e, ok := c.hosts.recs[key]
	c.hosts.mu.RUnlock()
	if !ok {
		return hostRecord{}, 0, false
	}
	rec := e.rec
	rec.Hints = maps.Clone(rec.Hints)
	rec.CPU, rec.Mem = slices.Clip(rec.CPU), slices.Clip(rec.Mem)
	rec.Outbox = slices.Clip(rec.Outbox)
	return rec, e.rev, true
}

func (c *Collector) cacheHost(key string, rec hostRecord, rev uint64) {
	c.hosts.mu.Lock()
	if c.hosts.recs == nil {
		c.hosts.recs = make(map[string]hostEntry)
	}
	cur, ok := c.hosts.recs[key]
	if !ok || cur.rev < rev {
		c.hosts.recs[key] = hostEntry{rec: rec, rev: rev}
	}
	c.hosts.mu.Unlock()
	if !ok || cur.rev < rev && marksChanged(cur.rec, rec) {
		c.changed(Change{Host: rec.Host, What: "host"})
	}
}

// hasHostRev reports whether the watched copy of key is at rev or newer.
func (c *Collector) hasHostRev(key string, rev uint64) bool {
	c.hosts.mu.RLock()
	defer c.hosts.mu.RUnlock()
	cur, ok := c.hosts.recs[key]
	return ok && cur.rev >= rev
}

// marksChanged reports whether a host's hints or drain mark differ between
// two versions of its record. Subscribers hear of those only: a change
// per host every 10 s would make every open fleet page re-read for
// nothing.
func marksChanged(a, b hostRecord) bool {
	return a.Seq != b.Seq || (a.Drain == nil) != (b.Drain == nil)
}

// watchHosts keeps the watched copy equal to the host bucket.
func (c *Collector) watchHosts(ctx context.Context, kv jetstream.KeyValue) error {
	initial := make(map[string]hostEntry)
	return watchBucket(ctx, kv, c.cfg.HostBucket, bucketHandler{
		entry: func(e jetstream.KeyValueEntry, loading bool) {
			var rec hostRecord
			put := e.Operation() == jetstream.KeyValuePut
			if put && !loading && c.hasHostRev(e.Key(), e.Revision()) {
				// This collector's own write, cached when it was made:
				// decoding it again would change nothing.
				return
			}
			if put {
				if err := json.Unmarshal(e.Value(), &rec); err != nil {
					c.log.Error("corrupt_host_record", "key", e.Key(), "revision", e.Revision(), "err", err)
					return
				}
			}
			if loading {
				if put {
					initial[e.Key()] = hostEntry{rec: rec, rev: e.Revision()}
				} else {
					delete(initial, e.Key())
				}
				return
			}
			c.hosts.mu.Lock()
			cur, had := c.hosts.recs[e.Key()]
			notify := false
			if !put {
				delete(c.hosts.recs, e.Key())
				rec, notify = cur.rec, had
			} else if !had || cur.rev < e.Revision() {
				c.hosts.recs[e.Key()] = hostEntry{rec: rec, rev: e.Revision()}
				notify = !had || marksChanged(cur.rec, rec)
			}
			c.hosts.mu.Unlock()
			if notify {
				c.changed(Change{Host: rec.Host, What: "host"})
			}
		},
		loaded: func() {
			c.hosts.mu.Lock()
			for k, own := range c.hosts.recs {
				if cur, ok := initial[k]; !ok || cur.rev < own.rev {
					initial[k] = own
				}
			}
			hosts := make([]string, 0, len(initial))
			for _, e := range initial {
				hosts = append(hosts, e.rec.Host)
			}
			c.hosts.recs, c.hosts.ready = initial, true
			c.hosts.mu.Unlock()
			initial = nil
			// A page subscribed before the copy was loaded learns of
			// the hosts it did not show.
			for _, h := range hosts {
				c.changed(Change{Host: h, What: "host"})
			}
		},
	})
}

// signalsOf returns the findings of host's guests that hints quote, from a
// summary of every VM record at most signalsMaxAge old.
func (c *Collector) signalsOf(host string) guestSignals {
	c.hosts.sigMu.Lock()
	defer c.hosts.sigMu.Unlock()
	if c.hosts.sigIndex == nil || time.Since(c.hosts.sigAt) > signalsMaxAge {
		c.hosts.sigIndex = c.guestSignalsByHost()
		c.hosts.sigAt = time.Now()
	}
	if s := c.hosts.sigIndex[host]; s != nil {
		return *s
	}
	return guestSignals{}
}

func (c *Collector) guestSignalsByHost() map[string]*guestSignals {
	idx := make(map[string]*guestSignals)
	c.mu.RLock()
	for _, v := range c.vms {
		s := idx[v.Host]
		if s == nil {
			s = &guestSignals{}
			idx[v.Host] = s
		}
		s.add(&v)
	}
	c.mu.RUnlock()
	for _, s := range idx {
		s.sort()
	}
	return idx
}
