package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/hostrelay"
	"github.com/guestdiag/guestdiag/internal/natstest"
	"github.com/guestdiag/guestdiag/internal/natsutil"
	"github.com/guestdiag/guestdiag/scheduler/lease"
	"github.com/guestdiag/guestdiag/test/loadgen"
)

// conn is a daemon's NATS connection that remembers when it last lost and
// regained its server.
type conn struct {
	*nats.Conn
	mu           sync.Mutex
	lost, regain time.Time
}

func dial(t *testing.T, urls, name string) *conn {
	t.Helper()
	c := &conn{}
	nc, err := natsutil.Connect(urls, name, discard(),
		nats.DisconnectErrHandler(func(*nats.Conn, error) {
			c.mu.Lock()
			c.lost = time.Now()
			c.mu.Unlock()
		}),
		nats.ReconnectHandler(func(*nats.Conn) {
			c.mu.Lock()
			c.regain = time.Now()
			c.mu.Unlock()
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	c.Conn = nc
	return c
}

// reconnected is how long the connection was away after it was lost at or
// after since, or false while it is still away or was not lost.
func (c *conn) reconnected(since time.Time) (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lost.Before(since) || c.regain.Before(c.lost) || !c.IsConnected() {
		return 0, false
	}
	return c.regain.Sub(c.lost), true
}

// prober publishes to the stream every 10 ms, one publish waiting for its
// ack at a time, so that the longest wait between two acks around a
// failover is how long publishing was blocked (to within 10 ms).
type prober struct {
	mu   sync.Mutex
	acks []time.Time
}

func (p *prober) run(ctx context.Context, js jetstream.JetStream) {
	for ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := js.Publish(pctx, "guestdiag.probe.failover", nil)
		cancel()
		if err == nil {
			p.mu.Lock()
			p.acks = append(p.acks, time.Now())
			p.mu.Unlock()
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// blocked is the longest gap between acks that ended after from.
func (p *prober) blocked(from time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	var worst time.Duration
	for i := 1; i < len(p.acks); i++ {
		if p.acks[i].After(from) {
			worst = max(worst, p.acks[i].Sub(p.acks[i-1]))
		}
	}
	return worst
}

func (p *prober) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.acks)
}

// TestIntegrationNodeLossLosesAndDoublesNothing runs two relays playing 80
// VMs, two collectors on the shared durable, an R3 stream and R3 buckets
// on a real three-node cluster; kills the stream's leader mid-stream and
// restarts it, then kills the node a collector is connected to and
// restarts it, while crit results raise alerts throughout.
func TestIntegrationNodeLossLosesAndDoublesNothing(t *testing.T) {
	if os.Getenv("GUESTDIAG_CLUSTER") == "" {
		t.Skip("kills nodes of a three-node cluster under load for a minute; enable with GUESTDIAG_CLUSTER=1 (make test-vmlab does)")
	}
	skipUnderRace(t)
	const hosts, vmsPerHost, speed = 2, 40, 3
	c := natstest.StartCluster(t, 3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The stream at R3 without the per-subject limit, so that every
	// message of the run is still there to be counted at the end.
	admin := dial(t, c.URLs(), "admin")
	ajs, err := jetstream.New(admin.Conn)
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
	_, err = natsutil.EnsureStream(sctx, ajs, natsutil.StreamConfig{Replicas: 3, MaxMsgsPerSubject: -1})
	scancel()
	if err != nil {
		t.Fatal(err)
	}

	var conns []*conn
	var cols []*running
	for i := range 2 {
		nc := dial(t, c.URLs(), fmt.Sprintf("collector-%d", i+1))
		conns = append(conns, nc)
		col := startCollector(t, nc.Conn, 3)
		cols = append(cols, col)
		// One after the other, as docs/deploy.md says: two collectors
		// creating the same R3 bucket at once both wait out their 10 s
		// request timeout, for each bucket (about 50 s in all, measured).
		waitFor(t, 3*time.Minute, fmt.Sprintf("collector %d consuming", i+1), func() bool { return col.get200(t, "/healthz") })
	}
	sched := startSchedulers(t, ctx, c.URLs(), 2)
	var fleets []*loadgen.Fleet
	var crits [][]int // per fleet, the VMs made crit
	for h := range hosts {
		f, err := loadgen.Start(ctx, loadgen.Config{VMs: vmsPerHost, Dir: t.TempDir(), Speed: speed, Seed: uint64(h)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(f.Close)
		fleets = append(fleets, f)
		crits = append(crits, nil)
		nc := dial(t, c.URLs(), fmt.Sprintf("relay-hv%d", h+1))
		conns = append(conns, nc)
		r, err := hostrelay.New(hostrelay.Config{
			Host: fmt.Sprintf("hv%d", h+1), Globs: []string{}, Static: f.Channels(), ProxmoxGlob: "-",
			BackoffMin: 10 * time.Millisecond, BackoffMax: 200 * time.Millisecond, HostUsageInterval: -1,
		}, nc.Conn, discard())
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		rctx, rcancel := context.WithCancel(ctx)
		go func() { done <- r.Run(rctx) }()
		t.Cleanup(func() {
			rcancel()
			if err := <-done; err != nil {
				t.Errorf("relay hv%d: %v", h+1, err)
			}
		})
	}
	next := 0
	crit := func(n int) {
		for range n {
			h, i := next%hosts, next/hosts
			fleets[h].Crit(i)
			crits[h] = append(crits[h], i)
			next++
		}
	}
	acked := func() uint64 {
		var n uint64
		for _, f := range fleets {
			n += f.Stats().Acked
		}
		return n
	}
	flowing := func(what string) {
		t.Helper()
		from := acked()
		waitFor(t, time.Minute, what, func() bool { return acked() >= from+200 })
	}
	flowing("the fleets' first 200 acks")
	crit(10)
	phase := func(what string) {
		t.Logf("%s: collector 1 applied %d, collector 2 %d; fleets acked %d", what, cols[0].c.Stats().Applied, cols[1].c.Stats().Applied, acked())
	}
	phase("before any loss")

	// 1. The stream leader goes mid-stream, and comes back.
	leader := c.StreamLeader(natsutil.StreamName)
	if leader < 0 {
		t.Fatal("no stream leader")
	}
	survivor := strings.Split(c.URLs(), ",")[(leader+1)%3]
	pc := dial(t, survivor, "prober")
	pjs, err := jetstream.New(pc.Conn)
	if err != nil {
		t.Fatal(err)
	}
	var p prober
	pctx, pcancel := context.WithCancel(ctx)
	defer pcancel()
	go p.run(pctx, pjs)
	waitFor(t, 10*time.Second, "the prober's first acks", func() bool { return p.count() > 10 })
	killed := time.Now()
	c.Kill(leader)
	crit(10)
	waitFor(t, 30*time.Second, "a new stream leader", func() bool {
		l := c.StreamLeader(natsutil.StreamName)
		return l >= 0 && l != leader
	})
	flowing("200 acks without the old leader")
	failover := p.blocked(killed)
	phase("without the old leader")
	relayAway := awayTimes(t, conns, killed)
	c.Restart(leader)
	c.WaitMetaLeader(30 * time.Second)
	crit(10)
	flowing("200 acks after the old leader came back")
	pcancel()

	// 2. The node a collector is connected to goes, and comes back. Take
	// one that is not the stream's leader now, to lose that node alone.
	target := -1
	for _, nc := range conns[:2] {
		if i := c.Index(nc.ConnectedServerName()); i >= 0 && i != c.StreamLeader(natsutil.StreamName) {
			target = i
			break
		}
	}
	if target < 0 {
		// Both collectors are on the leader's node: move the leadership
		// off it first, so that this loss is of the collector's node alone.
		target = c.Index(conns[0].ConnectedServerName())
		if _, err := admin.Request("$JS.API.STREAM.LEADER.STEPDOWN."+natsutil.StreamName, nil, 10*time.Second); err != nil {
			t.Fatalf("stream leader step down: %v", err)
		}
		waitFor(t, 30*time.Second, "a stream leader other than the collectors' node", func() bool {
			l := c.StreamLeader(natsutil.StreamName)
			return l >= 0 && l != target
		})
	}
	applied := []uint64{cols[0].c.Stats().Applied, cols[1].c.Stats().Applied}
	killed2 := time.Now()
	c.Kill(target)
	crit(10)
	flowing("200 acks without the collector's node")
	collectorAway := awayTimes(t, conns, killed2)
	phase("without the collector's node")
	c.Restart(target)
	c.WaitMetaLeader(30 * time.Second)
	crit(10)
	flowing("200 acks after the collector's node came back")

	// Every crit raised its alert, in every collector's view.
	want := 0
	for _, cs := range crits {
		want += len(cs)
	}
	var seen string
	deadline := time.Now().Add(3 * time.Minute)
	for {
		seen = ""
		done := true
		for i, col := range cols {
			n := len(col.c.Alerts(collector.AlertFilter{Code: "fw.disabled"}))
			seen += fmt.Sprintf("collector %d: %d; ", i+1, n)
			done = done && n == want
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("the %d fw.disabled alerts: not after 3m: %s%s", want, seen, consumerState(ajs, cols))
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	dctx, dcancel := context.WithTimeout(ctx, time.Minute)
	defer dcancel()
	var produced uint64
	for h, f := range fleets {
		if err := f.Drain(dctx); err != nil {
			t.Fatalf("fleet hv%d: %v", h+1, err)
		}
		produced += f.Stats().Messages
	}
	waitIdle(t, ajs, 3*time.Minute)

	t.Logf("stream leader %d killed: publishing blocked %s; away: %s", leader, failover.Round(time.Millisecond), relayAway)
	t.Logf("node %d of a collector killed: away: %s", target, collectorAway)
	for i, col := range cols {
		t.Logf("collector %d: %+v", i+1, col.c.Stats())
		if got := col.c.Stats().Applied; got <= applied[i] {
			t.Errorf("collector %d applied nothing after node %d went (%d before, %d now)", i+1, target, applied[i], got)
		}
	}
	for i, nc := range conns {
		if !nc.IsConnected() {
			t.Errorf("connection %d (%s) is not connected at the end", i, nc.Opts.Name)
		}
	}

	runs, firewall := storedRuns(t, ajs)
	t.Run("only one scheduler holds the lease at a time throughout", func(t *testing.T) {
		both, held, samples := sched.counts()
		t.Logf("lease held in %d of %d samples", held, samples)
		if both != 0 {
			t.Errorf("both schedulers held the lease in %d of %d samples, want none", both, samples)
		}
		if held == 0 {
			t.Errorf("no scheduler held the lease in %d samples", samples)
		}
	})
	t.Run("every run's stored seqs are contiguous, none doubled", func(t *testing.T) {
		var stored uint64
		for run, seqs := range runs {
			stored += uint64(len(seqs))
			if i := gapAt(seqs); i >= 0 {
				t.Errorf("run %s: seq %d at place %d of %d, want 1…%d once each", run, seqs[i], i+1, len(seqs), len(seqs))
			}
		}
		if stored != produced {
			t.Errorf("got %d guest messages stored, want the %d the fleets produced", stored, produced)
		}
	})
	t.Run("every alert transition is stored once, none lost", func(t *testing.T) {
		notes := map[string][]uint64{} // fingerprint: notification seqs
		fwFired := map[string]bool{}   // host/vm
		// fingerprint: the fw.disabled alert's states by notification seq
		fwStates := map[string]map[uint64]collector.AlertState{}
		for _, a := range storedAlerts(t, ajs) {
			notes[a.Fingerprint] = append(notes[a.Fingerprint], a.Seq)
			if a.Key.Code == "fw.disabled" && a.Seq == 1 && a.State == collector.AlertFiring {
				fwFired[a.Key.Host+"/"+a.Key.VM] = true
			}
			if a.Key.Code == "fw.disabled" {
				if fwStates[a.Fingerprint] == nil {
					fwStates[a.Fingerprint] = map[uint64]collector.AlertState{}
				}
				fwStates[a.Fingerprint][a.Seq] = a.State
			}
		}
		// One crit, then the VM's next ok result: an alert that fired again
		// after it resolved would still number its notifications 1…n.
		for fp, states := range fwStates {
			var got []collector.AlertState
			for seq := uint64(1); seq <= uint64(len(states)); seq++ {
				got = append(got, states[seq])
			}
			if fired := slices.Index(got, collector.AlertFiring); fired != 0 || slices.Index(got[1:], collector.AlertFiring) >= 0 || slices.Index(got, collector.AlertResolved) >= 0 && got[len(got)-1] != collector.AlertResolved {
				t.Errorf("fw.disabled alert %s: states %v, want it fired once and resolved at most once, last", fp, got)
			}
		}
		for fp, seqs := range notes {
			if gapAt(seqs) >= 0 {
				t.Errorf("alert %s: notifications %v, want 1…%d once each", fp, seqs, len(seqs))
			}
		}
		for h, cs := range crits {
			for _, i := range cs {
				vm := fleets[h].Channels()[i].Name
				if key := fmt.Sprintf("hv%d/%s", h+1, vm); !fwFired[key] {
					t.Errorf("crit on %s: no fw.disabled alert fired; its firewall results in stream order: %v; %s", key, firewall[key], alertTrail(t, ajs, fmt.Sprintf("hv%d", h+1), vm))
				}
			}
		}
		for _, col := range cols {
			for _, a := range col.c.Alerts(collector.AlertFilter{}) {
				if got := notes[a.Fingerprint]; len(got) == 0 || got[len(got)-1] != a.Seq {
					t.Errorf("alert %s: notification %d in the bucket, %v in the stream", a.Fingerprint, a.Seq, got)
				}
			}
		}
	})
	t.Run("every collector's API answers the same", func(t *testing.T) {
		for _, path := range []string{"/api/vms", "/api/alerts"} {
			var first, other []byte
			waitFor(t, 20*time.Second, path+" equal on both collectors", func() bool {
				_, first = cols[0].get(t, path)
				_, other = cols[1].get(t, path)
				return string(first) == string(other)
			})
			if len(first) < 100 {
				t.Errorf("%s: got %q, want the fleet", path, first)
			}
		}
	})
}

// gapAt sorts seqs and returns the first place where they stop being
// 1, 2, 3…, a seq missing or doubled, or -1 when they are 1…len(seqs).
func gapAt(seqs []uint64) int {
	slices.Sort(seqs)
	for i, s := range seqs {
		if s != uint64(i+1) {
			return i
		}
	}
	return -1
}

// awayTimes says for how long each connection lost since was away.
func awayTimes(t *testing.T, conns []*conn, since time.Time) string {
	t.Helper()
	var out []string
	waitFor(t, 30*time.Second, "every connection back", func() bool {
		out = out[:0]
		for _, nc := range conns {
			nc.mu.Lock()
			lost := !nc.lost.Before(since)
			nc.mu.Unlock()
			if !lost {
				continue
			}
			d, ok := nc.reconnected(since)
			if !ok {
				return false
			}
			out = append(out, fmt.Sprintf("%s %s", nc.Opts.Name, d.Round(time.Millisecond)))
		}
		return true
	})
	if len(out) == 0 {
		return "no connection was on it"
	}
	return strings.Join(out, ", ")
}

// storedRuns reads every guest message the stream holds and lists the
// seqs of each run by host, VM and run, and each VM's firewall results
// ("<seq>:<status>") in stream order.
func storedRuns(t *testing.T, js jetstream.JetStream) (runs map[string][]uint64, firewall map[string][]string) {
	t.Helper()
	runs, firewall = map[string][]uint64{}, map[string][]string{}
	readStream(t, js, []string{"guestdiag.report.>", "guestdiag.heartbeat.>"}, func(b []byte) {
		var r struct {
			Host  string `json:"host"`
			VM    string `json:"vm"`
			Guest struct {
				Run    string `json:"run"`
				Seq    uint64 `json:"seq"`
				Check  string `json:"check"`
				Status string `json:"status"`
			} `json:"guest"`
		}
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		key := r.Host + "/" + r.VM + "/" + r.Guest.Run
		runs[key] = append(runs[key], r.Guest.Seq)
		if r.Guest.Check == "firewall" {
			firewall[r.Host+"/"+r.VM] = append(firewall[r.Host+"/"+r.VM], fmt.Sprintf("%d:%s", r.Guest.Seq, r.Guest.Status))
		}
	})
	return runs, firewall
}

func storedAlerts(t *testing.T, js jetstream.JetStream) []collector.Alert {
	t.Helper()
	var out []collector.Alert
	readStream(t, js, []string{"guestdiag.alert.>"}, func(b []byte) {
		var a collector.Alert
		if err := json.Unmarshal(b, &a); err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	})
	return out
}

// readStream hands every message of the stream on subjects to each, in
// stream order.
func readStream(t *testing.T, js jetstream.JetStream, subjects []string, each func([]byte)) {
	t.Helper()
	readStreamOf(t, js, natsutil.StreamName, subjects, func(m jetstream.Msg) { each(m.Data()) })
}

func readStreamOf(t *testing.T, js jetstream.JetStream, stream string, subjects []string, each func(jetstream.Msg)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	var want uint64
	for _, subj := range subjects {
		info, err := s.Info(ctx, jetstream.WithSubjectFilter(subj))
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range info.State.Subjects {
			want += n
		}
	}
	// A node that just came back may not answer at once: on an error
	// the reader starts again after the last message it handed on.
	deadline := time.Now().Add(2 * time.Minute)
	next, got := uint64(1), uint64(0)
	var cons jetstream.Consumer
	for got < want {
		if time.Now().After(deadline) {
			t.Fatalf("read %d of %d messages on %v: %v", got, want, subjects, err)
		}
		if cons == nil {
			cons, err = s.CreateConsumer(ctx, jetstream.ConsumerConfig{
				FilterSubjects: subjects, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: next,
				AckPolicy: jetstream.AckNonePolicy, MemoryStorage: true, Replicas: 1, InactiveThreshold: time.Minute,
			})
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
		}
		batch, ferr := cons.Fetch(500, jetstream.FetchMaxWait(5*time.Second))
		if ferr != nil {
			cons, err = nil, ferr
			continue
		}
		for m := range batch.Messages() {
			md, merr := m.Metadata()
			if merr != nil {
				t.Fatal(merr)
			}
			next = md.Sequence.Stream + 1
			each(m)
			got++
		}
		if err = batch.Error(); err != nil {
			cons = nil
		}
	}
}

// consumerState says where the collectors' consumer stands, for a failure.
func consumerState(js jetstream.JetStream, cols []*running) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out := ""
	for i, col := range cols {
		out += fmt.Sprintf("collector %d %+v; ", i+1, col.c.Stats())
	}
	cons, err := js.Consumer(ctx, natsutil.StreamName, collector.DefaultDurable)
	if err != nil {
		return out + err.Error()
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return out + err.Error()
	}
	leader := ""
	if info.Cluster != nil {
		leader = info.Cluster.Leader
	}
	return out + fmt.Sprintf("consumer: pending %d, ack pending %d, waiting %d, redelivered %d, leader %s", info.NumPending, info.NumAckPending, info.NumWaiting, info.NumRedelivered, leader)
}

// alertTrail says what the alert bucket and the timeline hold of a VM's
// firewall alerts, operations and values in stream order, for a failure.
func alertTrail(t *testing.T, js jetstream.JetStream, host, vm string) string {
	t.Helper()
	var out []string
	subject := "$KV." + collector.DefaultAlertBucket + "." + collector.Key(host, vm) + ".>"
	readStreamOf(t, js, "KV_"+collector.DefaultAlertBucket, []string{subject}, func(m jetstream.Msg) {
		op := m.Headers().Get("KV-Operation")
		var a collector.Alert
		_ = json.Unmarshal(m.Data(), &a)
		out = append(out, fmt.Sprintf("bucket %s %s %s seq %d notified %v", op, a.Key.Code, a.State, a.Seq, !a.Notified.IsZero()))
	})
	readStreamOf(t, js, collector.TimelineStream, []string{collector.TimelineSubject(host, vm)}, func(m jetstream.Msg) {
		var ev collector.TimelineEvent
		_ = json.Unmarshal(m.Data(), &ev)
		if ev.Check == "firewall" || ev.Kind == "alert" {
			out = append(out, fmt.Sprintf("timeline %s %s %s→%s %s", ev.Kind, ev.Check, ev.From, ev.To, ev.Text))
		}
	})
	return strings.Join(out, "; ")
}

// leaseWatch samples every 5 ms which scheduler instances hold the lease.
type leaseWatch struct {
	mu                  sync.Mutex
	both, held, samples int
}

func (w *leaseWatch) counts() (both, held, samples int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.both, w.held, w.samples
}

// startSchedulers runs n instances of the scheduler's lease (what decides
// which scheduler acts), each on its own connection, the bucket at R3.
func startSchedulers(t *testing.T, ctx context.Context, urls string, n int) *leaseWatch {
	t.Helper()
	var leases []*lease.Lease
	for i := range n {
		js, err := jetstream.New(dial(t, urls, fmt.Sprintf("scheduler-%d", i+1)).Conn)
		if err != nil {
			t.Fatal(err)
		}
		// One after the other: the first creates the R3 bucket.
		octx, cancel := context.WithTimeout(ctx, time.Minute)
		l, err := lease.Open(octx, js, lease.Config{Name: fmt.Sprintf("scheduler-%d", i+1), Replicas: 3}, discard())
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		leases = append(leases, l)
		rctx, rcancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = l.Run(rctx)
		}()
		t.Cleanup(func() {
			rcancel()
			<-done
		})
	}
	w := &leaseWatch{}
	sctx, scancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-tick.C:
			}
			holders := 0
			for _, l := range leases {
				if l.Held() {
					holders++
				}
			}
			w.mu.Lock()
			w.samples++
			if holders > 1 {
				w.both++
			}
			if holders > 0 {
				w.held++
			}
			w.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		scancel()
		<-stopped
	})
	return w
}
