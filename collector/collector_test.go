package collector_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/internal/natstest"
	"github.com/guestdiag/guestdiag/protocol"
)

var t0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

// relay publishes what a hostrelay would, for one host.
type relay struct {
	t    *testing.T
	js   jetstream.JetStream
	host string
}

func (r *relay) guest(vm, uuid string, e protocol.Envelope, received time.Time) {
	r.t.Helper()
	line, err := protocol.Marshal(e)
	if err != nil {
		r.t.Fatal(err)
	}
	rep := protocol.Report{V: 1, Host: r.host, VM: vm, UUID: uuid, Channel: "/run/guestdiag/" + vm + ".sock", Received: received, Guest: line[:len(line)-1]}
	subject := protocol.HeartbeatSubject(r.host, vm)
	if e.Kind == protocol.KindResult || e.Kind == protocol.KindEvent {
		subject = protocol.ReportSubject(r.host, vm, e.Check)
	}
	r.publish(subject, rep, jetstream.WithMsgID(protocol.MsgID(uuid, e.Run, e.Seq)))
}

func (r *relay) channel(vm, uuid string, state protocol.ChannelState, ts time.Time) {
	r.t.Helper()
	ev := protocol.ChannelEvent{V: 1, Host: r.host, VM: vm, UUID: uuid, Channel: "/run/guestdiag/" + vm + ".sock", State: state, TS: ts}
	r.publish(protocol.ChannelSubject(r.host, vm), ev)
}

func (r *relay) publish(subject string, v any, opts ...jetstream.PublishOpt) {
	r.t.Helper()
	b, ok := v.([]byte)
	if !ok {
		var err error
		if b, err = json.Marshal(v); err != nil {
			r.t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := r.js.Publish(ctx, subject, b, opts...); err != nil {
		r.t.Fatalf("publish %s: %v", subject, err)
	}
}

func hello(run string, seq uint64, hostname string, ts time.Time) protocol.Envelope {
	data, _ := json.Marshal(protocol.Hello{Hostname: hostname, OS: "linux", Kernel: "6.12.0", AgentVersion: "0.1.0", Checks: []string{"network", "resources"}})
	return protocol.Envelope{V: 1, Kind: protocol.KindHello, Run: run, Seq: seq, TS: ts, Data: data}
}

func heartbeat(run string, seq uint64, ts time.Time) protocol.Envelope {
	return protocol.Envelope{V: 1, Kind: protocol.KindHeartbeat, Run: run, Seq: seq, TS: ts, Data: json.RawMessage(`{"uptime_s":60,"spooled":0}`)}
}

func result(run string, seq uint64, check string, status protocol.Status, ts time.Time) protocol.Envelope {
	return protocol.Envelope{V: 1, Kind: protocol.KindResult, Run: run, Seq: seq, TS: ts, Check: check, Status: status, Summary: check + " " + string(status)}
}

type env struct {
	url string
	nc  *nats.Conn
	js  jetstream.JetStream
}

func newEnv(t *testing.T) *env {
	t.Helper()
	s := natstest.Start(t)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &env{url: s.ClientURL(), nc: nc, js: js}
}

func (e *env) relay(t *testing.T, host string) *relay { return &relay{t: t, js: e.js, host: host} }

// running is a collector under test with its own NATS connection.
type running struct {
	c    *collector.Collector
	api  string
	stop func()
	// done reports whether Serve has returned.
	done func() bool
}

func (e *env) startCollector(t *testing.T) *running {
	t.Helper()
	return e.startCollectorWith(t, collector.Config{})
}

func (e *env) startCollectorWith(t *testing.T, cfg collector.Config) *running {
	t.Helper()
	nc, err := nats.Connect(e.url)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := collector.New(cfg, nc, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx, ln) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve after cancel: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return within 10s of cancel")
		}
		nc.Close()
	}
	t.Cleanup(stop)
	isDone := func() bool {
		select {
		case err := <-done:
			done <- err
			return true
		default:
			return false
		}
	}
	return &running{c: c, api: "http://" + ln.Addr().String(), stop: stop, done: isDone}
}

// vms returns the API's list, or nil while it is not answering yet.
func (r *running) vms(t *testing.T) []collector.VM {
	t.Helper()
	resp, err := http.Get(r.api + "/api/vms")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	var vms []collector.VM
	if err := json.NewDecoder(resp.Body).Decode(&vms); err != nil {
		t.Fatalf("GET /api/vms: %v", err)
	}
	return vms
}

// waitFor polls the API until cond holds for the VM list and returns it.
func (r *running) waitFor(t *testing.T, what string, cond func(map[string]collector.VM) bool) map[string]collector.VM {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		byKey := map[string]collector.VM{}
		for _, v := range r.vms(t) {
			byKey[v.Host+"/"+v.Name] = v
		}
		if cond(byKey) {
			return byKey
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; state: %+v", what, byKey)
		}
		<-tick.C
	}
}

func checkSeq(vms map[string]collector.VM, key, check string) uint64 {
	if c := vms[key].Checks[check]; c != nil {
		return c.Seq
	}
	return 0
}

// waitConsumerIdle polls until the durable has nothing pending or unacked.
func (e *env) waitConsumerIdle(t *testing.T) jetstream.ConsumerInfo {
	t.Helper()
	// Generous: under -race on two shared cores the flood tests take
	// several times longer than they do plain.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		cons, err := e.js.Consumer(ctx, "GUESTDIAG", collector.DefaultDurable)
		if err == nil {
			info, err := cons.Info(ctx)
			if err == nil && info.NumPending == 0 && info.NumAckPending == 0 {
				return *info
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("consumer %s never became idle", collector.DefaultDurable)
		case <-tick.C:
		}
	}
}

func TestCollectorKeepsStatePerVM(t *testing.T) {
	e := newEnv(t)
	col := e.startCollector(t)
	h1 := e.relay(t, "h1")

	h1.channel("web1", "uuid-web1", protocol.ChannelConnected, t0)
	h1.channel("db1", "uuid-db1", protocol.ChannelConnected, t0)
	h1.guest("db1", "uuid-db1", hello("dbrun", 1, "db1", t0), t0.Add(1*time.Second))
	// web1's guest claims to be db1: it must stay web1, with the claim kept as data.
	h1.guest("web1", "uuid-web1", hello("webrun", 1, "db1", t0), t0.Add(2*time.Second))
	h1.guest("web1", "uuid-web1", result("webrun", 2, "resources", protocol.StatusOK, t0), t0.Add(3*time.Second))
	h1.guest("web1", "uuid-web1", result("webrun", 3, "network", protocol.StatusWarn, t0), t0.Add(4*time.Second))
	h1.guest("db1", "uuid-db1", result("dbrun", 2, "resources", protocol.StatusCrit, t0), t0.Add(5*time.Second))
	h1.guest("db1", "uuid-db1", heartbeat("dbrun", 3, t0), t0.Add(6*time.Second))

	vms := col.waitFor(t, "both VMs with results", func(vms map[string]collector.VM) bool {
		return checkSeq(vms, "h1/web1", "network") == 3 && vms["h1/db1"].Heartbeat != nil
	})
	if len(vms) != 2 {
		t.Fatalf("VMs: got %d (%v), want 2", len(vms), vms)
	}
	list := col.vms(t)
	if got := list[0].Name + "," + list[1].Name; got != "db1,web1" {
		t.Errorf("list order: got %s, want db1,web1", got)
	}

	web, db := vms["h1/web1"], vms["h1/db1"]
	tests := []struct {
		name      string
		got, want any
	}{
		{"web1 keeps its uuid", web.UUID, "uuid-web1"},
		{"web1's claimed hostname is kept as data", web.Hello.ClaimedHostname, "db1"},
		{"db1's hello is its own", db.Hello.Run, "dbrun"},
		{"web1 resources", web.Checks["resources"].Status, protocol.StatusOK},
		{"web1 network", web.Checks["network"].Status, protocol.StatusWarn},
		{"web1 network summary", web.Checks["network"].Summary, "network warn"},
		{"db1 resources", db.Checks["resources"].Status, protocol.StatusCrit},
		{"db1 has no network result", db.Checks["network"] == nil, true},
		{"web1 channel", web.Channel.State, protocol.ChannelConnected},
		{"web1 last seen is the relay's receive time", web.LastSeen.UTC(), t0.Add(4 * time.Second)},
		{"db1 last seen counts the heartbeat", db.LastSeen.UTC(), t0.Add(6 * time.Second)},
		{"db1 agent version", db.Hello.AgentVersion, "0.1.0"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}

	resp, err := http.Get(col.api + "/api/vms/web1")
	if err != nil {
		t.Fatal(err)
	}
	var one collector.VM
	err = json.NewDecoder(resp.Body).Decode(&one)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || one.Name != "web1" || one.Host != "h1" {
		t.Errorf("GET /api/vms/web1: got %d %+v (%v), want web1 on h1", resp.StatusCode, one, err)
	}
}

func TestCollectorIgnoresStaleResults(t *testing.T) {
	e := newEnv(t)
	col := e.startCollector(t)
	h1 := e.relay(t, "h1")

	h1.guest("web1", "u1", result("run1", 5, "resources", protocol.StatusCrit, t0), t0.Add(5*time.Second))
	// Seq 3 arrives late; seq 5 comes again under another message id, as a
	// redelivery outside the duplicate window would.
	h1.guest("web1", "u1", result("run1", 3, "resources", protocol.StatusOK, t0), t0.Add(6*time.Second))
	h1.guest("web1", "u1-again", result("run1", 5, "resources", protocol.StatusOK, t0), t0.Add(7*time.Second))
	h1.guest("web1", "u1", heartbeat("run1", 6, t0), t0.Add(8*time.Second))

	vms := col.waitFor(t, "the heartbeat published last", func(vms map[string]collector.VM) bool {
		return vms["h1/web1"].Heartbeat != nil
	})
	got := vms["h1/web1"].Checks["resources"]
	if got.Seq != 5 || got.Status != protocol.StatusCrit {
		t.Errorf("resources after stale messages: got seq %d %s, want seq 5 crit", got.Seq, got.Status)
	}
	if st := col.c.Stats(); st.Stale != 2 || st.Applied != 2 {
		t.Errorf("stats: got %+v, want 2 applied and 2 stale", st)
	}
}

func TestCollectorSkipsPoisonMessages(t *testing.T) {
	e := newEnv(t)
	col := e.startCollector(t)
	h1 := e.relay(t, "h1")

	h1.publish(protocol.ReportSubject("h1", "web1", "resources"), []byte("this is not json"))
	h1.publish(protocol.HeartbeatSubject("h1", "web1"), protocol.Report{V: 1, Host: "h1", VM: "web1", Received: t0, Guest: json.RawMessage(`{"v":1,"kind":"bogus"}`)})
	h1.publish(protocol.ChannelSubject("h1", "web1"), []byte(`{"v":1,"host":"h1"}`))
	h1.guest("web1", "u1", result("run1", 1, "resources", protocol.StatusOK, t0), t0)

	col.waitFor(t, "the good result after the poison", func(vms map[string]collector.VM) bool {
		return checkSeq(vms, "h1/web1", "resources") == 1
	})
	if st := col.c.Stats(); st.Poison != 3 || st.Applied != 1 {
		t.Errorf("stats: got %+v, want 3 poison and 1 applied", st)
	}
	if info := e.waitConsumerIdle(t); info.NumRedelivered != 0 {
		t.Errorf("redelivered: got %d, want 0 (poison is terminated, not retried)", info.NumRedelivered)
	}
}

func TestCollectorDefersMessagesOfANewerVersion(t *testing.T) {
	e := newEnv(t)
	col := e.startCollector(t)
	h1 := e.relay(t, "h1")

	h1.publish(protocol.ChannelSubject("h1", "web1"), []byte(`{"v":2,"host":"h1","vm":"web1","state":"connected"}`))
	h1.publish(protocol.HeartbeatSubject("h1", "web1"), protocol.Report{V: 1, Host: "h1", VM: "web1", Received: t0, Guest: json.RawMessage(`{"v":2,"kind":"heartbeat","run":"r","seq":1,"ts":"2026-11-21T10:00:00Z","new_field":1}`)})
	h1.guest("web1", "u1", result("run1", 1, "resources", protocol.StatusOK, t0), t0)

	col.waitFor(t, "the good result after the newer ones", func(vms map[string]collector.VM) bool {
		return checkSeq(vms, "h1/web1", "resources") == 1
	})
	if st := col.c.Stats(); st.Deferred != 2 || st.Poison != 0 {
		t.Errorf("stats: got %+v, want 2 deferred and no poison", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cons, err := e.js.Consumer(ctx, "GUESTDIAG", collector.DefaultDurable)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending != 2 {
		t.Errorf("messages still held by the consumer: got %d, want the 2 deferred ones (not terminated)", info.NumAckPending)
	}
}

func TestRestartedCollectorContinuesWhereItLeftOff(t *testing.T) {
	e := newEnv(t)
	h1 := e.relay(t, "h1")

	first := e.startCollector(t)
	for seq := uint64(1); seq <= 5; seq++ {
		h1.guest("web1", "u1", result("run1", seq, "resources", protocol.StatusOK, t0), t0.Add(time.Duration(seq)*time.Second))
	}
	first.waitFor(t, "the first batch", func(vms map[string]collector.VM) bool {
		return checkSeq(vms, "h1/web1", "resources") == 5
	})
	e.waitConsumerIdle(t)
	first.stop()

	for seq := uint64(6); seq <= 8; seq++ {
		h1.guest("web1", "u1", result("run1", seq, "network", protocol.StatusWarn, t0), t0.Add(time.Duration(seq)*time.Second))
	}
	second := e.startCollector(t)
	vms := second.waitFor(t, "the second batch", func(vms map[string]collector.VM) bool {
		return checkSeq(vms, "h1/web1", "network") == 8
	})
	if got := checkSeq(vms, "h1/web1", "resources"); got != 5 {
		t.Errorf("resources seq after restart: got %d, want 5", got)
	}
	if got := second.c.Stats(); got.Applied != 3 || got.Stale != 0 {
		t.Errorf("second collector's stats: got %+v, want 3 applied and none stale (it must not see the first batch again)", got)
	}
}

func TestCollectorsSharingTheDurableLoseNoUpdates(t *testing.T) {
	e := newEnv(t)
	cols := []*running{e.startCollector(t), e.startCollector(t), e.startCollector(t)}
	h1 := e.relay(t, "h1")

	// Every message lands on the same VM record, so the two collectors
	// keep racing for its revision.
	const checks, rounds = 60, 3
	seq := uint64(0)
	for round := range rounds {
		for c := range checks {
			seq++
			status := protocol.StatusOK
			if round == rounds-1 {
				status = protocol.StatusCrit
			}
			h1.guest("web1", "u1", result("run1", seq, fmt.Sprintf("check_%d", c), status, t0), t0.Add(time.Duration(seq)*time.Millisecond))
		}
	}
	done := func(vms map[string]collector.VM) bool {
		for c := range checks {
			if checkSeq(vms, "h1/web1", fmt.Sprintf("check_%d", c)) != seq-uint64(checks-1-c) {
				return false
			}
		}
		return true
	}
	e.waitConsumerIdle(t)
	var total uint64
	for i, col := range cols {
		vms := col.waitFor(t, fmt.Sprintf("collector %d to show every check's last result", i), done)
		for c, got := range vms["h1/web1"].Checks {
			if got.Status != protocol.StatusCrit {
				t.Errorf("collector %d: %s status: got %s, want crit", i, c, got.Status)
			}
		}
		st := col.c.Stats()
		total += st.Applied + st.Stale
		t.Logf("collector %d: %+v", i, st)
	}
	if total != seq {
		t.Errorf("applied+stale over all collectors: got %d, want %d", total, seq)
	}
}

func TestCollectorRecreatesADeletedConsumer(t *testing.T) {
	e := newEnv(t)
	col := e.startCollector(t)
	h1 := e.relay(t, "h1")

	h1.guest("web1", "u1", result("run1", 1, "resources", protocol.StatusOK, t0), t0.Add(time.Second))
	col.waitFor(t, "the result before the deletion", func(vms map[string]collector.VM) bool {
		return checkSeq(vms, "h1/web1", "resources") == 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.js.DeleteConsumer(ctx, "GUESTDIAG", collector.DefaultDurable); err != nil {
		t.Fatalf("delete consumer: %v", err)
	}

	h1.guest("web1", "u1", result("run1", 2, "network", protocol.StatusWarn, t0), t0.Add(2*time.Second))
	col.waitFor(t, "a result published after the consumer was deleted", func(vms map[string]collector.VM) bool {
		return checkSeq(vms, "h1/web1", "network") == 2
	})
	if _, err := e.js.Consumer(ctx, "GUESTDIAG", collector.DefaultDurable); err != nil {
		t.Errorf("the durable after recovery: %v, want it recreated", err)
	}
	if col.done() {
		t.Errorf("Serve returned while its context was live")
	}
}
