package hostrelay

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/internal/natstest"
	"github.com/guestdiag/guestdiag/internal/natsutil"
	"github.com/guestdiag/guestdiag/protocol"
)

func TestRelayStampsHostSideIdentity(t *testing.T) {
	srv := natstest.Start(t)
	dir := socketDir(t)
	fixture, err := os.ReadFile(filepath.Join("testdata", "libvirt-run", "web01.xml"))
	if err != nil {
		t.Fatal(err)
	}
	touch(t, filepath.Join(dir, "run", "web01.xml"))
	if err := os.WriteFile(filepath.Join(dir, "run", "web01.xml"), fixture, 0o644); err != nil {
		t.Fatal(err)
	}
	web := listenChannel(t, filepath.Join(dir, "domain-1-web01", channelFile))
	db := listenChannel(t, filepath.Join(dir, "domain-2-db.prod eu", channelFile))
	log, _ := newTestLogger(t)
	_, js := startRelay(t, srv, testConfig(dir), log)

	tests := []struct {
		name  string
		q     *fakeQEMU
		vm    string
		uuid  string
		token string // the VM's subject token
		key   string // the VM part of message ids
	}{
		{"a VM with a libvirt status file is keyed by its UUID", web,
			"web01", "6f1c2a3b-4d5e-4f60-8172-93a4b5c6d7e8", "web01", "6f1c2a3b-4d5e-4f60-8172-93a4b5c6d7e8"},
		{"a VM name with dots and spaces is one escaped subject token", db,
			"db.prod eu", "", "db~2Eprod~20eu", "hv1:db~2Eprod~20eu"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const run = "r7Kq2mX9"
			lines := [][]byte{
				helloLine(t, run, 1, "evil.example"), // the guest claims to be someone else
				resultLine(t, run, 2, "network"),
				eventLine(t, run, 3, "logs"),
			}
			before := time.Now()
			g := tt.q.accept(t)
			g.send(t, lines...)
			g.mustAck(t, run, 3)
			for _, a := range g.ackList() {
				if a.Run != run || a.Seq > 3 {
					t.Errorf("ack %+v: want only run %s, seq up to 3", a, run)
				}
			}

			msgs := streamMsgs(t, js, "guestdiag.")
			var guest []string
			var subjects []string
			for _, m := range msgs {
				if strings.Contains(m.Subject, ".hv1."+tt.token) && !strings.HasPrefix(m.Subject, "guestdiag.channel.") {
					subjects = append(subjects, m.Subject)
					guest = append(guest, m.Header.Get("Nats-Msg-Id"))
				}
			}
			wantSubjects := []string{
				"guestdiag.heartbeat.hv1." + tt.token,
				"guestdiag.report.hv1." + tt.token + ".network",
				"guestdiag.report.hv1." + tt.token + ".logs",
			}
			if !slices.Equal(subjects, wantSubjects) {
				t.Errorf("subjects\n got %q\nwant %q", subjects, wantSubjects)
			}
			wantIDs := []string{tt.key + "/" + run + "/1", tt.key + "/" + run + "/2", tt.key + "/" + run + "/3"}
			if !slices.Equal(guest, wantIDs) {
				t.Errorf("message ids\n got %q\nwant %q", guest, wantIDs)
			}

			reports := streamMsgs(t, js, "guestdiag.heartbeat.hv1."+tt.token)
			reports = append(reports, streamMsgs(t, js, "guestdiag.report.hv1."+tt.token+".")...)
			for i, m := range reports {
				var got protocol.Report
				if err := json.Unmarshal(m.Data, &got); err != nil {
					t.Fatalf("%s: %v", m.Subject, err)
				}
				if got.Received.Before(before.Add(-time.Second)) || got.Received.After(time.Now()) {
					t.Errorf("%s: received %v, want between %v and now", m.Subject, got.Received, before)
				}
				want := protocol.Report{V: 1, Host: "hv1", VM: tt.vm, UUID: tt.uuid, Channel: tt.q.path,
					Received: got.Received, Guest: bytes.TrimSuffix(lines[i], []byte("\n"))}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s: report\n got %+v\nwant %+v", m.Subject, got, want)
				}
			}
			if len(reports) != 3 {
				t.Errorf("found %d reports and heartbeats, want 3", len(reports))
			}

			events := streamMsgs(t, js, "guestdiag.channel.hv1."+tt.token)
			if len(events) == 0 {
				t.Fatal("no channel event")
			}
			var ev protocol.ChannelEvent
			if err := json.Unmarshal(events[0].Data, &ev); err != nil {
				t.Fatal(err)
			}
			if ev.State != protocol.ChannelConnected || ev.VM != tt.vm || ev.UUID != tt.uuid || ev.Host != "hv1" || ev.Channel != tt.q.path {
				t.Errorf("channel event %+v: want connected, vm %q, uuid %q, host hv1, channel %s", ev, tt.vm, tt.uuid, tt.q.path)
			}
		})
	}
}

func TestRelayAcksOnlyWhatJetStreamStored(t *testing.T) {
	r, js, q, _ := startOneVM(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()

	g := q.accept(t)
	// With the stream bound elsewhere, JetStream cannot store anything.
	st, err := js.Stream(ctx, natsutil.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	sc := st.CachedInfo().Config
	sc.Subjects = []string{"elsewhere.>"}
	if _, err := js.UpdateStream(ctx, sc); err != nil {
		t.Fatal(err)
	}
	const run = "r1"
	lines := results(t, run, 1, 3)
	g.send(t, lines...)
	if g.waitAck(t, run, 1) {
		t.Fatalf("got acks %+v for messages JetStream never stored, want none and a closed connection", g.ackList())
	}
	if got := r.Stats()["web01"].Dropped[DropPublishFailed]; got == 0 {
		t.Errorf("publish failures counted %d, want at least 1", got)
	}

	sc.Subjects = []string{natsutil.StreamSubjects}
	if _, err := js.UpdateStream(ctx, sc); err != nil {
		t.Fatal(err)
	}
	g = q.accept(t)
	g.send(t, lines...) // the agent resends what was not acked
	g.mustAck(t, run, 3)
	// Publishes of the first connection still in flight may land after
	// the stream is back, so only the set of messages is certain.
	checkStreamHolds(t, js, "hv1:web01", run, 3)
}

func TestRelayAcksResendsWithoutDoublingTheStream(t *testing.T) {
	r, js, q, _ := startOneVM(t, nil)

	const run = "r1"
	lines := append([][]byte{helloLine(t, run, 1, "web01")}, results(t, run, 2, 4)...)
	g := q.accept(t)
	g.send(t, lines[:3]...)
	g.mustAck(t, run, 3)
	g.conn.Close() // the guest side goes away, e.g. a live migration

	g = q.accept(t)
	g.send(t, lines...) // an agent that lost its acks sends everything again
	g.mustAck(t, run, 4)

	checkStreamHolds(t, js, "hv1:web01", run, 4)
	st := r.Stats()["web01"]
	if st.Duplicates != 3 || st.Published != 7 {
		t.Errorf("published %d with %d duplicates, want 7 with 3", st.Published, st.Duplicates)
	}
}

func TestRelayDropsBadLinesAndKeepsTheGoodOnes(t *testing.T) {
	r, js, q, logs := startOneVM(t, nil)

	const run = "r1"
	good := append([][]byte{helloLine(t, run, 1, "web01")}, results(t, run, 2, 5)...)
	wrongVersion := bytes.Replace(resultLine(t, run, 9, "network"), []byte(`"v":1`), []byte(`"v":2`), 1)
	invalid := bytes.Replace(resultLine(t, run, 9, "network"), []byte(`"status":"warn"`), []byte(`"status":"maybe"`), 1)
	oversized := append(bytes.Repeat([]byte("x"), protocol.MaxLineLen+1), '\n')
	stream := [][]byte{
		good[0], []byte(`{"v":1,"kind":` + "\n"),
		good[1], oversized,
		good[2], wrongVersion,
		good[3], invalid,
		good[4],
	}
	g := q.accept(t)
	g.send(t, stream...)
	g.mustAck(t, run, 5)
	g.send(t, []byte(`{"v":1,"kind":"res`)) // cut off mid-line
	if err := g.conn.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "truncated line to be counted", func() bool {
		return r.Stats()["web01"].Dropped[DropTruncated] == 1
	})

	checkStreamHolds(t, js, "hv1:web01", run, 5)
	st := r.Stats()["web01"]
	wantDropped := map[DropReason]uint64{DropMalformed: 1, DropOversized: 1, DropVersion: 1, DropInvalid: 1, DropTruncated: 1}
	if !reflect.DeepEqual(st.Dropped, wantDropped) {
		t.Errorf("dropped %v, want %v", st.Dropped, wantDropped)
	}
	if st.Lines != 10 {
		t.Errorf("counted %d lines, want 10", st.Lines)
	}

	// Line 1 is the agent's lone newline, line 2 the hello.
	wantLog := fmt.Sprintf("vm=web01 channel=%s line=3 offset=%d reason=malformed", q.path, 1+len(good[0]))
	if got := logs.lines("guest_line_dropped"); len(got) == 0 || !strings.Contains(got[0], wantLog) {
		t.Errorf("first drop logged as %q, want it to contain %q", got, wantLog)
	}
}

func TestRelayDoesNotAckAFloodBeyondTheRateLimit(t *testing.T) {
	r, js, q, _ := startOneVM(t, func(cfg *Config) { cfg.Rate, cfg.Burst = 10, 5 })

	// The fake guest behaves like the agent: on every connection it resends
	// everything not yet acknowledged.
	const run, total = "flood", 20
	lines := results(t, run, 1, total)
	var acked uint64
	for conn := 0; ; conn++ {
		if conn > 20 {
			t.Fatalf("only %d of %d acknowledged after %d connections", acked, total, conn)
		}
		g := q.accept(t)
		g.send(t, lines[acked:]...)
		done := g.waitAck(t, run, total)
		if conn == 0 {
			// The bucket holds 5 and refills at 10/s; reading the flood takes
			// far less than the 100 ms a sixth token would need.
			if got := g.acked(run); got < 1 || got > 6 {
				t.Errorf("first connection acknowledged up to %d of a %d-line flood, want 1..6", got, total)
			}
		}
		acked = max(acked, g.acked(run))
		if done {
			break
		}
	}

	if got := r.Stats()["web01"].Dropped[DropRateLimited]; got == 0 {
		t.Error("no line was counted as rate limited")
	}
	checkStreamHolds(t, js, "hv1:web01", run, total)
}

func TestRelayRestartPicksUpWhereItLeft(t *testing.T) {
	srv := natstest.Start(t)
	dir := socketDir(t)
	q := listenChannel(t, filepath.Join(dir, "domain-1-web01", channelFile))
	cfg := testConfig(dir)
	cfg.NATSURL = srv.ClientURL()
	js := testJetStream(t, srv)

	const run = "r1"
	lines := append([][]byte{helloLine(t, run, 1, "web01")}, results(t, run, 2, 4)...)
	var acked uint64
	for i, upTo := range []uint64{3, 4} {
		log, _ := newTestLogger(t)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- Run(ctx, cfg, log) }()

		g := q.accept(t)
		// The agent resumes on connecting to the restarted relay.
		g.send(t, resumeLine(t, uint64(i+1), protocol.HeldRun{Run: run, Oldest: acked + 1, Newest: upTo}))
		g.send(t, lines[acked:upTo]...)
		if i == 0 {
			g.mustAck(t, run, 2)
		} else {
			g.mustAck(t, run, upTo)
		}
		cancel() // may land before seq 3 is confirmed; it must then be acked while draining or resent
		g.waitClosed(t)
		if err := <-done; err != nil {
			t.Fatalf("Run returned %v after cancel, want nil", err)
		}
		acked = g.acked(run)
	}

	checkStreamHolds(t, js, "hv1:web01", run, 4)
}

func TestRelayFollowsChannelsAsTheyComeAndGo(t *testing.T) {
	srv := natstest.Start(t)
	dir := socketDir(t)
	log, _ := newTestLogger(t)
	r, js := startRelay(t, srv, testConfig(dir), log)

	folder := filepath.Join(dir, "domain-7-late")
	q := listenChannel(t, filepath.Join(folder, channelFile))
	g := q.accept(t)
	want := []Channel{{Name: "late", Path: q.path}}
	if got := r.Channels(); !reflect.DeepEqual(got, want) {
		t.Errorf("channels %v, want %v", got, want)
	}
	eventually(t, "late to count as connected", func() bool { return r.Stats()["late"].Connected })

	// The VM stops: QEMU closes the connection and libvirt removes the folder.
	q.ln.Close()
	g.conn.Close()
	if err := os.RemoveAll(folder); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the vanished channel to be dropped", func() bool {
		return len(r.Channels()) == 0 && !r.Stats()["late"].Connected
	})
	// The disconnected event is published after the channel is dropped,
	// so the stream may not hold it yet.
	var states []protocol.ChannelState
	eventually(t, "the disconnected event in the stream", func() bool {
		states = states[:0]
		for _, m := range streamMsgs(t, js, "guestdiag.channel.hv1.late") {
			var ev protocol.ChannelEvent
			if err := json.Unmarshal(m.Data, &ev); err != nil {
				t.Fatal(err)
			}
			states = append(states, ev.State)
		}
		return len(states) > 0 && states[len(states)-1] == protocol.ChannelDisconnected
	})
	if len(states) < 2 || states[0] != protocol.ChannelConnected {
		t.Errorf("channel events %v, want connected first and disconnected last", states)
	}
}

func TestRelayNeverAcksAcrossAGap(t *testing.T) {
	const run = "r1"
	// firstTwoThenFive acks seqs 1 and 2 on one connection, then sends
	// only 5 on the next, as an agent does that missed a quick reconnect:
	// 3 and 4 went nowhere. The relay must close that connection without
	// acknowledging 3 to 5.
	firstTwoThenFive := func(t *testing.T, q *fakeQEMU) {
		t.Helper()
		g := q.accept(t)
		g.send(t, results(t, run, 1, 2)...)
		g.mustAck(t, run, 2)
		g.conn.Close()

		g = q.accept(t)
		g.send(t, resultLine(t, run, 5, "resources"))
		for _, a := range g.waitClosed(t) {
			if a.Seq > 2 {
				t.Fatalf("relay acked %s/%d across the gap 3..4", a.Run, a.Seq)
			}
		}
	}

	t.Run("the agent resending from its oldest message is acknowledged in full", func(t *testing.T) {
		r, js, q, _ := startOneVM(t, nil)
		firstTwoThenFive(t, q)
		g := q.accept(t)
		g.send(t, results(t, run, 3, 5)...)
		g.mustAck(t, run, 5)

		checkStreamHolds(t, js, "hv1:web01", run, 5)
		if got := r.Stats()["web01"].Gaps; got != 0 {
			t.Errorf("counted %d gaps, want 0", got)
		}
	})
	t.Run("a gap the agent cannot fill is accepted on the next connection, logged and counted", func(t *testing.T) {
		r, js, q, logs := startOneVM(t, nil)
		firstTwoThenFive(t, q)
		g := q.accept(t) // its spool dropped 3 and 4
		g.send(t, results(t, run, 5, 6)...)
		g.mustAck(t, run, 6)

		checkStreamHoldsSeqs(t, js, "hv1:web01", run, 1, 2, 5, 6)
		if got := r.Stats()["web01"].Gaps; got != 1 {
			t.Errorf("counted %d gaps, want 1", got)
		}
		got := logs.lines("guest_seq_gap_accepted")
		want := "vm=web01 channel=" + q.path + " run=r1 missing_from=3 missing_to=4"
		if len(got) != 1 || !strings.Contains(got[0], "level=WARN") || !strings.Contains(got[0], want) {
			t.Errorf("accepted gap logged as %q, want one warning with %q", got, want)
		}
	})
	t.Run("a gap in the middle of a connection is acknowledged up to the gap", func(t *testing.T) {
		_, js, q, _ := startOneVM(t, nil)
		g := q.accept(t)
		g.send(t, append(results(t, run, 1, 2), resultLine(t, run, 4, "resources"))...)
		g.mustAck(t, run, 2)
		if acks := g.waitClosed(t); acks[len(acks)-1].Seq != 2 {
			t.Errorf("acks %+v, want the last to be 2", acks)
		}
		g = q.accept(t)
		g.send(t, results(t, run, 3, 4)...)
		g.mustAck(t, run, 4)
		checkStreamHolds(t, js, "hv1:web01", run, 4)
	})
}

func TestRelayKeepsAVMsIdentityWhileItsChannelExists(t *testing.T) {
	tests := []struct {
		name, folder, statusFile, vm string
	}{
		{"a UUID that libvirt writes late does not change the message ids",
			"domain-1-web01", "web01.xml", "web01"},
		{"a full name that libvirt writes late does not change the subjects",
			"domain-6-accounting-postgres-", "accounting-postgres-replica.xml", "accounting-postgres-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := natstest.Start(t)
			dir := socketDir(t)
			if err := os.Mkdir(filepath.Join(dir, "run"), 0o755); err != nil {
				t.Fatal(err)
			}
			q := listenChannel(t, filepath.Join(dir, tt.folder, channelFile))
			log, _ := newTestLogger(t)
			r, js := startRelay(t, srv, testConfig(dir), log)

			const run = "r1"
			g := q.accept(t)
			g.send(t, helloLine(t, run, 1, "guest"), resultLine(t, run, 2, "network"))
			g.mustAck(t, run, 2)

			copyFile(t, filepath.Join("testdata", "libvirt-run", tt.statusFile), filepath.Join(dir, "run", tt.statusFile))
			g.conn.Close()
			g = q.accept(t)
			g.send(t, resultLine(t, run, 3, "network"))
			g.mustAck(t, run, 3)

			checkStreamHolds(t, js, "hv1:"+tt.vm, run, 3)
			for _, m := range streamMsgs(t, js, "guestdiag.report.") {
				if want := "guestdiag.report.hv1." + tt.vm + ".network"; m.Subject != want {
					t.Errorf("report on %s, want %s", m.Subject, want)
				}
			}
			want := []Channel{{Name: tt.vm, Path: q.path}}
			if got := r.Channels(); !reflect.DeepEqual(got, want) {
				t.Errorf("channels %+v, want %+v", got, want)
			}
		})
	}
}

func TestRelayWatchesOneChannelPerVMName(t *testing.T) {
	srv := natstest.Start(t)
	dir := socketDir(t)
	static := listenChannel(t, filepath.Join(dir, "static", "web01.sock"))
	listenChannel(t, filepath.Join(dir, "domain-1-web01", channelFile))
	cfg := testConfig(dir)
	cfg.Static = []Channel{{Name: "web01", Path: static.path}}
	log, logs := newTestLogger(t)
	r, _ := startRelay(t, srv, cfg, log)

	static.accept(t)
	eventually(t, "the globbed channel's name conflict to be logged", func() bool {
		return len(logs.lines("channel_name_conflict")) > 0
	})
	if got, want := r.Channels(), []Channel{{Name: "web01", Path: static.path}}; !reflect.DeepEqual(got, want) {
		t.Errorf("channels %+v, want only the static one %+v", got, want)
	}
}

func TestRelayReadsAGuestNoFasterThanItsByteRate(t *testing.T) {
	const rate, burst = 32 << 10, 16 << 10
	r, _, q, _ := startOneVM(t, func(cfg *Config) { cfg.MaxBytesRate, cfg.MaxBytesBurst = rate, burst })

	// Blank lines carry no message, so only the byte rate can slow them.
	blanks := bytes.Repeat([]byte("\n"), 64<<10)
	hello := helloLine(t, "r1", 1, "web01")
	g := q.accept(t)
	start := time.Now()
	g.send(t, blanks, hello)
	g.mustAck(t, "r1", 1)
	elapsed := time.Since(start)

	// The reader pays for each read, of at most burst bytes, after making
	// it: all but the last two reads must have been paid for at the rate.
	total := 1 + len(blanks) + len(hello) // the lone newline of accept first
	floor := time.Duration(float64(total-2*burst) / rate * float64(time.Second))
	if elapsed < floor*9/10 {
		t.Errorf("%d bytes read in %v; at %d bytes/s with a burst of %d it takes at least %v", total, elapsed, rate, burst, floor)
	}
	if got := r.Stats()["web01"].Bytes; got != uint64(total) {
		t.Errorf("counted %d bytes read, want %d", got, total)
	}
}

// slowJetStream confirms every publish some time after JetStream did, as a
// busy server would, and records the most report bytes that were published
// and not yet confirmed.
type slowJetStream struct {
	jetstream.JetStream
	delay time.Duration

	mu            sync.Mutex
	held, maxHeld int
}

func (s *slowJetStream) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	paf, err := s.JetStream.PublishMsgAsync(m, opts...)
	if err != nil || strings.HasPrefix(m.Subject, "guestdiag.channel.") {
		return paf, err
	}
	n := len(m.Data)
	s.mu.Lock()
	s.held += n
	s.maxHeld = max(s.maxHeld, s.held)
	s.mu.Unlock()
	f := &slowFuture{msg: m, ok: make(chan *jetstream.PubAck, 1), err: make(chan error, 1)}
	go func() {
		var pa *jetstream.PubAck
		var perr error
		select {
		case pa = <-paf.Ok():
		case perr = <-paf.Err():
		}
		<-time.After(s.delay)
		// Before the relay can see it, so that held never lags the relay's.
		s.mu.Lock()
		s.held -= n
		s.mu.Unlock()
		if perr != nil {
			f.err <- perr
		} else {
			f.ok <- pa
		}
	}()
	return f, nil
}

type slowFuture struct {
	msg *nats.Msg
	ok  chan *jetstream.PubAck
	err chan error
}

func (f *slowFuture) Ok() <-chan *jetstream.PubAck { return f.ok }
func (f *slowFuture) Err() <-chan error            { return f.err }
func (f *slowFuture) Msg() *nats.Msg               { return f.msg }

func TestRelayBoundsTheBytesInFlight(t *testing.T) {
	const bound = 3000 // a few reports
	srv := natstest.Start(t)
	dir := socketDir(t)
	q := listenChannel(t, filepath.Join(dir, "domain-1-web01", channelFile))
	cfg := testConfig(dir)
	cfg.MaxInFlightBytes = bound
	log, _ := newTestLogger(t)
	slow := &slowJetStream{delay: 50 * time.Millisecond}
	_, js := startRelayWith(t, srv, cfg, log, func(js jetstream.JetStream) jetstream.JetStream {
		slow.JetStream = js
		return slow
	})

	const run, n = "r1", 30
	g := q.accept(t)
	g.send(t, results(t, run, 1, n)...)
	g.mustAck(t, run, n)

	checkStreamHolds(t, js, "hv1:web01", run, n)
	slow.mu.Lock()
	maxHeld := slow.maxHeld
	slow.mu.Unlock()
	if maxHeld > bound {
		t.Errorf("up to %d bytes were in flight, want at most %d", maxHeld, bound)
	}
}

func TestRelayStartsAfreshWithAVMThatCameBack(t *testing.T) {
	srv := natstest.Start(t)
	dir := socketDir(t)
	folder := filepath.Join(dir, "domain-1-web01")
	q := listenChannel(t, filepath.Join(folder, channelFile))
	log, _ := newTestLogger(t)
	r, js := startRelay(t, srv, testConfig(dir), log)

	const run = "r1"
	g := q.accept(t)
	g.send(t, results(t, run, 1, 2)...)
	g.mustAck(t, run, 2)

	// The VM migrates away, and libvirt removes its channel folder.
	q.ln.Close()
	g.conn.Close()
	if err := os.RemoveAll(folder); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the vanished channel to be dropped", func() bool { return len(r.Channels()) == 0 })

	// Another host stored and acknowledged 3 and 4 before the VM came
	// back with a new domain id; its agent goes on with the same run.
	q = listenChannel(t, filepath.Join(dir, "domain-2-web01", channelFile))
	g = q.accept(t)
	g.send(t, resumeLine(t, 2, protocol.HeldRun{Run: run, Oldest: 5, Newest: 6}))
	g.send(t, results(t, run, 5, 6)...)
	g.mustAck(t, run, 6)

	checkStreamHoldsSeqs(t, js, "hv1:web01", run, 1, 2, 5, 6)
	if got := r.Stats()["web01"].Gaps; got != 0 {
		t.Errorf("counted %d gaps, want 0", got)
	}
}
