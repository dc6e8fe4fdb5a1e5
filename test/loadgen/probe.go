package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/internal/natsutil"
	"github.com/guestdiag/guestdiag/protocol"
)

// Sample is where the pipeline stood at one moment, read from JetStream.
type Sample struct {
	At time.Time
	// StreamLast is the GUESTDIAG stream's last seq: everything the relays
	// (and collectors' alerts) stored so far.
	StreamLast uint64
	// AckFloor is the stream seq up to which the collectors' durable has
	// acknowledged everything: every message up to it is in KV.
	AckFloor uint64
	// Pending is what the durable has yet to deliver, AckPending what it
	// delivered and awaits acks for.
	Pending, AckPending uint64
	// StreamLeader and ConsumerLeader name the servers that lead the
	// stream and the durable ("" on a single server).
	StreamLeader, ConsumerLeader string
	// KVWrites is the sum of the last seqs of the VM, liveness and alert
	// buckets' streams: every KV write so far.
	KVWrites uint64
}

// Probe reads Samples from a NATS server or cluster.
type Probe struct {
	js      jetstream.JetStream
	durable string
}

// NewProbe reads the stream and the durable named durable ("" for the
// collectors' default) through nc.
func NewProbe(nc *nats.Conn, durable string) (*Probe, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("probe: %w", err)
	}
	if durable == "" {
		durable = collector.DefaultDurable
	}
	return &Probe{js: js, durable: durable}, nil
}

// Sample reads the stream, the durable and the buckets now.
func (p *Probe) Sample(ctx context.Context) (Sample, error) {
	s := Sample{At: time.Now()}
	st, err := p.js.Stream(ctx, natsutil.StreamName)
	if err != nil {
		return s, fmt.Errorf("probe stream: %w", err)
	}
	si := st.CachedInfo()
	s.StreamLast = si.State.LastSeq
	if si.Cluster != nil {
		s.StreamLeader = si.Cluster.Leader
	}
	c, err := st.Consumer(ctx, p.durable)
	if err != nil {
		return s, fmt.Errorf("probe consumer %s: %w", p.durable, err)
	}
	ci := c.CachedInfo()
	s.AckFloor, s.Pending, s.AckPending = ci.AckFloor.Stream, ci.NumPending, uint64(ci.NumAckPending)
	if ci.Cluster != nil {
		s.ConsumerLeader = ci.Cluster.Leader
	}
	for _, b := range []string{collector.DefaultBucket, collector.DefaultLivenessBucket, collector.DefaultAlertBucket} {
		kv, err := p.js.Stream(ctx, "KV_"+b)
		if err != nil {
			return s, fmt.Errorf("probe bucket %s: %w", b, err)
		}
		s.KVWrites += kv.CachedInfo().State.LastSeq
	}
	return s, nil
}

// Rates are per-second rates between two Samples.
type Rates struct {
	Stored, Processed, KVWrites float64
}

// Since returns the rates from earlier to s.
func (s Sample) Since(earlier Sample) Rates {
	d := s.At.Sub(earlier.At).Seconds()
	if d <= 0 {
		return Rates{}
	}
	return Rates{
		Stored:    float64(s.StreamLast-earlier.StreamLast) / d,
		Processed: float64(s.AckFloor-earlier.AckFloor) / d,
		KVWrites:  float64(s.KVWrites-earlier.KVWrites) / d,
	}
}

// AlertClock measures the time from a crit result's first write (Config.OnCrit)
// to the firing alert the collector publishes for it on guestdiag.alert.>.
type AlertClock struct {
	host string

	mu      sync.Mutex
	written map[string]time.Time // by VM, the crit waiting for its alert
	lat     []time.Duration
	sub     *nats.Subscription
}

// NewAlertClock subscribes through nc to the alerts of host's VMs. Set
// Config.OnCrit to its Written.
func NewAlertClock(nc *nats.Conn, host string) (*AlertClock, error) {
	a := &AlertClock{host: host, written: map[string]time.Time{}}
	subj := protocol.SubjectPrefix + ".alert.*." + protocol.EscapeToken(host) + ".>"
	sub, err := nc.Subscribe(subj, a.received)
	if err != nil {
		return nil, fmt.Errorf("alert clock: %w", err)
	}
	a.sub = sub
	return a, nil
}

// Written notes that vm's crit result was written at t.
func (a *AlertClock) Written(vm string, t time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.written[vm] = t
}

func (a *AlertClock) received(msg *nats.Msg) {
	now := time.Now()
	var al collector.Alert
	if json.Unmarshal(msg.Data, &al) != nil || al.State != collector.AlertFiring || al.Key.Host != a.host || al.Key.Check != "firewall" {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if t, ok := a.written[al.Key.VM]; ok {
		delete(a.written, al.Key.VM)
		a.lat = append(a.lat, now.Sub(t))
	}
}

// Latencies returns the measured latencies, sorted, and how many crits
// still wait for their alert.
func (a *AlertClock) Latencies() (sorted []time.Duration, waiting int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := slices.Clone(a.lat)
	slices.Sort(out)
	return out, len(a.written)
}

// Close unsubscribes.
func (a *AlertClock) Close() { _ = a.sub.Unsubscribe() }

// Quantile returns the q quantile of sorted latencies, 0 for none.
func Quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)-1))
	return sorted[i]
}
