package hostrelay

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/internal/natstest"
	"github.com/guestdiag/guestdiag/protocol"
)

// The hostile-guest suite: one relay, a well-behaved VM ("victim") and a
// hostile one, a real embedded JetStream. Each attack must be counted under
// its reason, reported in a violations event, and leave the victim's
// delivery whole and prompt.

// hostileRig is a relay watching the victim's and the hostile VM's channels.
type hostileRig struct {
	r               *Relay
	js              jetstream.JetStream
	victim, hostile *fakeQEMU
	logs            *testLog
}

func startHostileRig(t *testing.T, mod func(*Config)) *hostileRig {
	t.Helper()
	srv := natstest.Start(t)
	dir := socketDir(t)
	rig := &hostileRig{
		victim:  listenChannel(t, filepath.Join(dir, "domain-1-victim", channelFile)),
		hostile: listenChannel(t, filepath.Join(dir, "domain-2-hostile", channelFile)),
	}
	cfg := testConfig(dir)
	cfg.ViolationInterval = 50 * time.Millisecond
	if mod != nil {
		mod(&cfg)
	}
	log, logs := newTestLogger(t)
	rig.logs = logs
	rig.r, rig.js = startRelay(t, srv, cfg, log)
	return rig
}

// victimDelivers has the victim send a hello and 20 results while the attack
// goes on, and checks that all are acknowledged promptly and stored once.
func (rig *hostileRig) victimDelivers(t *testing.T, g *fakeGuest) {
	t.Helper()
	const run = "calm"
	start := time.Now()
	g.send(t, append([][]byte{helloLine(t, run, 1, "victim")}, results(t, run, 2, 21)...)...)
	g.mustAck(t, run, 21)
	// Generous for a shared CI machine; unhindered this takes a few ms.
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the victim's 21 messages took %v to be acknowledged during the attack, want under 2s", took)
	}
	var ids []string
	for _, m := range append(streamMsgs(t, rig.js, "guestdiag.report.hv1.victim."), streamMsgs(t, rig.js, "guestdiag.heartbeat.hv1.victim")...) {
		ids = append(ids, m.Header.Get(jetstream.MsgIDHeader))
	}
	if len(ids) != 21 {
		t.Errorf("the stream holds %d of the victim's messages, want 21: %q", len(ids), ids)
	}
	if st := rig.r.Stats()["victim"]; len(st.Dropped) != 0 {
		t.Errorf("the victim had lines dropped: %v", st.Dropped)
	}
}

// violationsEvent waits for a violations event of the hostile VM that counts
// reason, and returns the count it gives.
func (rig *hostileRig) violationsEvent(t *testing.T, reason DropReason) uint64 {
	t.Helper()
	var got uint64
	eventually(t, "a violations event counting "+string(reason), func() bool {
		got = 0
		for _, m := range streamMsgs(t, rig.js, protocol.ChannelSubject("hv1", "hostile")) {
			var ev protocol.ChannelEvent
			if err := json.Unmarshal(m.Data, &ev); err != nil {
				t.Fatalf("channel event %s: %v", m.Data, err)
			}
			if ev.State == protocol.ChannelViolations {
				got += ev.Counts[string(reason)]
			}
		}
		return got > 0
	})
	return got
}

func TestHostileGuests(t *testing.T) {
	const run = "evil"
	tests := []struct {
		name string
		mod  func(*Config)
		// attack runs against the hostile channel while the victim sends.
		attack func(t *testing.T, q *fakeQEMU)
		reason DropReason // counted for the hostile VM; "" for none
		// atLeast is how many drops of reason the attack must cause.
		atLeast uint64
	}{
		{
			name: "oversized lines are dropped and counted",
			attack: func(t *testing.T, q *fakeQEMU) {
				g := q.accept(t)
				huge := append(bytes.Repeat([]byte("A"), protocol.MaxLineLen+1), '\n')
				g.send(t, huge, huge)
			},
			reason: DropOversized, atLeast: 2,
		},
		{
			name: "JSON nested past the limit is malformed",
			attack: func(t *testing.T, q *fakeQEMU) {
				g := q.accept(t)
				deep := `{"v":1,"kind":"heartbeat","run":"evil","seq":1,"ts":"2026-01-01T00:00:00Z","data":{"x":` +
					strings.Repeat("[", 100) + strings.Repeat("]", 100) + "}}\n"
				g.send(t, []byte(deep), []byte(deep))
			},
			reason: DropMalformed, atLeast: 2,
		},
		{
			name: "invalid UTF-8 is malformed",
			attack: func(t *testing.T, q *fakeQEMU) {
				g := q.accept(t)
				bad := bytes.Replace(resultLine(t, run, 1, "resources"), []byte("gateway slow"), []byte("gateway \xff\xfe"), 1)
				g.send(t, bad)
			},
			reason: DropMalformed, atLeast: 1,
		},
		{
			name: "a check name with subject syntax is invalid",
			attack: func(t *testing.T, q *fakeQEMU) {
				g := q.accept(t)
				g.send(t, bytes.Replace(resultLine(t, run, 1, "resources"), []byte(`"check":"resources"`), []byte(`"check":"x.*.>"`), 1))
			},
			reason: DropInvalid, atLeast: 1,
		},
		{
			name: "invented check names never become subjects",
			attack: func(t *testing.T, q *fakeQEMU) {
				g := q.accept(t)
				var lines [][]byte
				for i := range 50 {
					lines = append(lines, resultLine(t, run, uint64(i+1), "invented_"+strings.Repeat("x", i%10)+string(rune('a'+i%26))))
				}
				g.send(t, lines...)
			},
			reason: DropUnknownCheck, atLeast: 1,
		},
		{
			name: "a flood beyond the rate is cut off",
			mod:  func(cfg *Config) { cfg.Rate, cfg.Burst = 200, 50 },
			attack: func(t *testing.T, q *fakeQEMU) {
				g := q.accept(t)
				var flood []byte
				for seq := uint64(1); seq <= 2000; seq++ {
					flood = append(flood, line(t, protocol.Envelope{V: 1, Kind: protocol.KindHeartbeat, Run: run, Seq: seq, TS: testTS})...)
				}
				_ = g.write(flood) // the relay may hang up mid-flood
			},
			reason: DropRateLimited, atLeast: 1,
		},
		{
			name: "half lines then a disconnect, again and again, are counted as truncated",
			attack: func(t *testing.T, q *fakeQEMU) {
				for range 8 {
					g := q.accept(t)
					g.send(t, []byte(`{"v":1,"kind":"result","run":"evil","se`))
					g.conn.Close()
				}
			},
			reason: DropTruncated, atLeast: 8,
		},
		{
			name: "binary garbage is malformed",
			attack: func(t *testing.T, q *fakeQEMU) {
				g := q.accept(t)
				rng := rand.New(rand.NewPCG(1, 2))
				junk := make([]byte, 64<<10)
				for i := range junk {
					junk[i] = byte(rng.Uint32())
				}
				g.send(t, junk, []byte("\n"))
			},
			reason: DropMalformed, atLeast: 1,
		},
		{
			name: "seqs near 2^64, repeated and going backwards crash nothing",
			attack: func(t *testing.T, q *fakeQEMU) {
				g := q.accept(t)
				for _, seq := range []uint64{math.MaxUint64 - 1, math.MaxUint64, math.MaxUint64, 5, 5, 3, 1} {
					_ = g.write(resultLine(t, run, seq, "resources"))
				}
			},
		},
		{
			name: "a guest that never reads its acks holds up no one",
			attack: func(t *testing.T, q *fakeQEMU) {
				if err := q.ln.SetDeadline(time.Now().Add(waitFor)); err != nil {
					t.Fatal(err)
				}
				conn, err := q.ln.AcceptUnix()
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { conn.Close() })
				for seq := uint64(1); seq <= 3000; seq++ {
					if _, err := conn.Write(resultLine(t, run, seq, "resources")); err != nil {
						break
					}
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rig := startHostileRig(t, tt.mod)
			victim := rig.victim.accept(t)
			attacked := make(chan struct{})
			go func() {
				defer close(attacked)
				tt.attack(t, rig.hostile)
			}()
			rig.victimDelivers(t, victim)
			<-attacked
			if tt.reason == "" {
				eventually(t, "the hostile guest's lines to be read", func() bool { return rig.r.Stats()["hostile"].Lines > 0 })
				return
			}
			eventually(t, "the attack to be counted as "+string(tt.reason), func() bool {
				return rig.r.Stats()["hostile"].Dropped[tt.reason] >= tt.atLeast
			})
			if got := rig.violationsEvent(t, tt.reason); got == 0 {
				t.Errorf("violations events count no %s", tt.reason)
			}
			for _, m := range streamMsgs(t, rig.js, "guestdiag.report.hv1.hostile.") {
				if check := strings.TrimPrefix(m.Subject, "guestdiag.report.hv1.hostile."); check != "resources" {
					t.Errorf("the hostile guest made the subject %q", m.Subject)
				}
			}
		})
	}
}

func TestAGuestCannotClaimAnotherVMsIdentity(t *testing.T) {
	rig := startHostileRig(t, nil)
	victim := rig.victim.accept(t)
	g := rig.hostile.accept(t)
	g.send(t, helloLine(t, "liar", 1, "victim"), resultLine(t, "liar", 2, "resources"))
	g.mustAck(t, "liar", 2)
	rig.victimDelivers(t, victim)
	for _, m := range streamMsgs(t, rig.js, "guestdiag.") {
		var rep protocol.Report
		if err := json.Unmarshal(m.Data, &rep); err != nil || rep.Guest == nil {
			continue // a channel event
		}
		fromLiar := bytes.Contains(rep.Guest, []byte(`"run":"liar"`))
		if fromLiar && (rep.VM != "hostile" || !strings.Contains(m.Subject, ".hostile")) {
			t.Errorf("the lying guest's message went out as VM %q on %s, want hostile", rep.VM, m.Subject)
		}
		if fromLiar && m.Header.Get(jetstream.MsgIDHeader) != protocol.MsgID("hv1:hostile", "liar", 1) &&
			m.Header.Get(jetstream.MsgIDHeader) != protocol.MsgID("hv1:hostile", "liar", 2) {
			t.Errorf("the lying guest's message id is %q, want one under hv1:hostile", m.Header.Get(jetstream.MsgIDHeader))
		}
	}
}

func TestViolationEventsAreRateLimited(t *testing.T) {
	rig := startHostileRig(t, func(cfg *Config) { cfg.ViolationInterval = 200 * time.Millisecond })
	g := rig.hostile.accept(t)
	start := time.Now()
	var garbage []byte
	for range 5000 {
		garbage = append(garbage, "not json\n"...)
	}
	g.send(t, garbage)
	eventually(t, "5000 malformed lines to be counted", func() bool {
		return rig.r.Stats()["hostile"].Dropped[DropMalformed] == 5000
	})
	if got := rig.violationsEvent(t, DropMalformed); got != 5000 {
		// Every drop is in exactly one event.
		eventually(t, "events to count all 5000", func() bool { return rig.violationsEvent(t, DropMalformed) == 5000 })
	}
	n := 0
	for _, m := range streamMsgs(t, rig.js, protocol.ChannelSubject("hv1", "hostile")) {
		if bytes.Contains(m.Data, []byte(`"state":"violations"`)) {
			n++
		}
	}
	if limit := int(time.Since(start)/(200*time.Millisecond)) + 2; n > limit {
		t.Errorf("%d violations events for one flood, want at most %d (one per interval)", n, limit)
	}
}
