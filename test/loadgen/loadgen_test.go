package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/hostrelay"
	"github.com/guestdiag/guestdiag/internal/natstest"
	"github.com/guestdiag/guestdiag/internal/natsutil"
	"github.com/guestdiag/guestdiag/protocol"
)

func TestMixLinesAreValidEnvelopes(t *testing.T) {
	m, err := loadMix()
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Date(2026, 12, 1, 10, 0, 0, 5, time.UTC)
	lines := map[string][]byte{
		"hello":     m.hello.line(nil, "run1", 1, ts),
		"crit":      m.crit.line(nil, "run1", 2, ts),
		"burst":     m.burst.line(nil, "run1", 3, ts),
		"heartbeat": heartbeat(nil, "run1", 4, ts, 3600, 2),
	}
	for name, tpl := range m.ok {
		lines[name] = tpl.line(nil, "run1", 5, ts)
	}
	for name, line := range lines {
		t.Run(name+" decodes as the protocol's envelope", func(t *testing.T) {
			e, err := protocol.Decode(line[:len(line)-1])
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			if e.Run != "run1" || !e.TS.Equal(ts) {
				t.Errorf("got run %q ts %v, want run1 %v", e.Run, e.TS, ts)
			}
		})
	}
	if got := len(m.checks); got != 6 {
		t.Errorf("got %d checks in the mix, want the agent's six", got)
	}
	for _, c := range m.checks {
		if c.Interval <= 0 || c.Bytes < 150 {
			t.Errorf("check %s: interval %v, %d bytes; want the agent's interval and a real payload", c.Name, c.Interval, c.Bytes)
		}
	}
}

// TestFleetThroughRelayStoresEveryMessageOnce plays a small fleet through a
// real relay into a real embedded JetStream, replaces the relay halfway
// (the VMs resend from their last ack, as agents do), and checks that the
// stream holds every message produced exactly once.
func TestFleetThroughRelayStoresEveryMessageOnce(t *testing.T) {
	srv := natstest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f, err := Start(ctx, Config{VMs: 20, Dir: shortDir(t), Speed: 50, BurstEvery: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg := hostrelay.Config{
		Host: "hv1", Globs: []string{}, Static: f.Channels(), ProxmoxGlob: "-",
		BackoffMin: 5 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
		HostUsageInterval: -1, MaxMsgsPerSubject: -1,
	}
	stop := runRelay(t, srv.ClientURL(), cfg)
	waitFor(t, "the first relay to have acked 200 messages", func() bool { return f.Stats().Acked >= 200 })
	stop()
	before := f.Stats()
	stop = runRelay(t, srv.ClientURL(), cfg)
	waitFor(t, "the second relay to ack 200 more", func() bool { return f.Stats().Acked >= before.Acked+200 })
	dctx, dcancel := context.WithTimeout(ctx, 20*time.Second)
	defer dcancel()
	if err := f.Drain(dctx); err != nil {
		t.Fatal(err)
	}
	stop()
	st := f.Stats()
	t.Logf("stats %+v", st)
	if st.Connects < 2*20 {
		t.Errorf("got %d connections, want at least two per VM (one per relay)", st.Connects)
	}
	if st.Written != st.Messages || st.Acked != st.Messages {
		t.Errorf("got %d written and %d acked of %d produced, want all", st.Written, st.Acked, st.Messages)
	}

	ids := storedIDs(t, srv.ClientURL())
	var n uint64
	for id, c := range ids {
		n += uint64(c)
		if c != 1 {
			t.Errorf("message %s stored %d times, want once", id, c)
		}
	}
	if n != st.Messages {
		t.Errorf("got %d messages stored, want the %d produced", n, st.Messages)
	}
}

func TestCritIsWrittenAndReported(t *testing.T) {
	srv := natstest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	crits := make(chan string, 10)
	f, err := Start(ctx, Config{VMs: 3, Dir: shortDir(t), BurstLen: -1, OnCrit: func(vm string, _ time.Time) { crits <- vm }})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	stop := runRelay(t, srv.ClientURL(), hostrelay.Config{Host: "hv1", Globs: []string{}, Static: f.Channels(), ProxmoxGlob: "-", HostUsageInterval: -1})
	defer stop()
	f.Crit(1)
	select {
	case got := <-crits:
		if want := f.Channels()[1].Name; got != want {
			t.Errorf("got a crit written on %s, want %s", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no crit written within 10s")
	}
	waitFor(t, "the crit to be acked", func() bool { return f.Stats().Spooled == 0 })
	// Reported: the relay stored it as the crit firewall result that
	// raises fw.disabled, not just some line the VM wrote.
	vm := f.Channels()[1].Name
	if got := storedStatuses(t, srv.ClientURL(), protocol.ReportSubject("hv1", vm, "firewall")); !slices.Contains(got, "crit fw.disabled") {
		t.Errorf("got firewall results %v stored for %s, want one crit with fw.disabled", got, vm)
	}
}

// storedStatuses lists the status and finding codes of every guest result
// the stream holds on subject, in stream order.
func storedStatuses(t *testing.T, url, subject string) []string {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, natsutil.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for {
		msg, err := cons.Next(jetstream.FetchMaxWait(2 * time.Second))
		if err != nil {
			t.Fatalf("reading %s: %v", subject, err)
		}
		var r protocol.Report
		if err := json.Unmarshal(msg.Data(), &r); err != nil {
			t.Fatal(err)
		}
		e, err := protocol.Decode(r.Guest)
		if err != nil {
			t.Fatal(err)
		}
		s := string(e.Status)
		for _, fd := range e.Findings {
			s += " " + fd.Code
		}
		out = append(out, s)
		if md, err := msg.Metadata(); err != nil || md.NumPending == 0 {
			return out
		}
	}
}

// runRelay runs a relay until the returned stop is called.
func runRelay(t *testing.T, url string, cfg hostrelay.Config) (stop func()) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	r, err := hostrelay.New(cfg, nc, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay Run returned %v, want nil", err)
		}
		nc.Close()
	}
	t.Cleanup(stop)
	return stop
}

// storedIDs counts the stream's guest messages (reports, heartbeats and
// hellos) by run and seq.
func storedIDs(t *testing.T, url string) map[string]int {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, natsutil.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	subjects := []string{protocol.SubjectPrefix + ".report.>", protocol.SubjectPrefix + ".heartbeat.>"}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The figure docs/capacity.md takes stream storage per message from.
	t.Logf("stream %s: %d messages, %d bytes, %.0f bytes per message", natsutil.StreamName, info.State.Msgs, info.State.Bytes, float64(info.State.Bytes)/float64(max(1, info.State.Msgs)))
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: subjects})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]int{}
	for seq := uint64(0); seq < info.State.LastSeq; {
		msg, err := cons.Next(jetstream.FetchMaxWait(2 * time.Second))
		if err != nil {
			break
		}
		md, _ := msg.Metadata()
		seq = md.Sequence.Stream
		var r struct {
			VM  string `json:"vm"`
			Msg struct {
				Run string `json:"run"`
				Seq uint64 `json:"seq"`
			} `json:"guest"`
		}
		if err := json.Unmarshal(msg.Data(), &r); err != nil {
			t.Fatalf("stream seq %d: %v", seq, err)
		}
		ids[fmt.Sprintf("%s/%s/%d", r.VM, r.Msg.Run, r.Msg.Seq)]++
	}
	return ids
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitWithin(t, 30*time.Second, what, cond)
}

func waitWithin(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReconnectResendsFromTheLastAck plays the relay's side by hand: it
// acks part of what it read, drops the connection, and connects again; the
// VM must start with a resume naming what it holds and resend exactly the
// unacknowledged messages.
func TestReconnectResendsFromTheLastAck(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f, err := Start(ctx, Config{VMs: 1, Dir: shortDir(t), Speed: 100, BurstLen: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	waitFor(t, "a few messages to be spooled", func() bool { return f.Stats().Messages >= 6 })
	path := f.Channels()[0].Path

	read := func(conn net.Conn, n int) []protocol.Envelope {
		t.Helper()
		r := protocol.NewReader(conn, protocol.MaxLineLen)
		var got []protocol.Envelope
		for len(got) < n {
			line, err := r.ReadLine()
			if err != nil {
				t.Fatal(err)
			}
			if len(line) == 0 {
				continue // the lone newline
			}
			e, err := protocol.Decode(line)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, e)
		}
		return got
	}

	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	first := read(conn, 6)
	if first[0].Kind != protocol.KindResume || first[1].Kind != protocol.KindHello {
		t.Fatalf("got %s then %s, want resume then hello", first[0].Kind, first[1].Kind)
	}
	run := first[1].Run
	ack, _ := protocol.Marshal(protocol.NewAck(run, 3))
	if _, err := conn.Write(ack); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the ack to be applied", func() bool { return f.Stats().Acked == 3 })
	conn.Close()

	conn, err = net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	again := read(conn, 3)
	var res protocol.Resume
	if err := json.Unmarshal(again[0].Data, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Held) != 1 || res.Held[0].Run != run || res.Held[0].Oldest != 4 {
		t.Errorf("got resume %+v, want run %s held from seq 4", res, run)
	}
	if again[1].Seq != 4 || again[2].Seq != 5 {
		t.Errorf("got seqs %d, %d after the resume, want 4, 5", again[1].Seq, again[2].Seq)
	}
	if st := f.Stats(); st.Resent < 2 {
		t.Errorf("got %d resent, want at least 2", st.Resent)
	}
}

// shortDir is a temporary folder with a short path: a unix socket's path
// must fit in 108 bytes, which a long test name's TempDir does not leave.
func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "lg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}
