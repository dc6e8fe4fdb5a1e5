package logs

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/guestdiag/guestdiag/checks"
	"github.com/guestdiag/guestdiag/protocol"
)

func TestLogsNormalize(t *testing.T) {
	tests := []struct{ name, a, b string }{
		{"numbers differ", "connect() failed (111: Connection refused) port 51234", "connect() failed (111: Connection refused) port 40022"},
		{"hex addresses differ", "segfault at 7f3a2b1c ip 00007f3a2b1c4d5e sp 00007ffd3a2b1c40 error 4", "segfault at 7f9e0d1c ip 00007f9e0d1c4d5e sp 00007ffc0a2b1c40 error 4"},
		{"0x values differ", "flags 0x800 phys_seg 1", "flags 0x1 phys_seg 7"},
		{"spacing differs", "  disk   failure\n", "disk failure"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if a, b := normalize(tt.a), normalize(tt.b); a != b {
				t.Errorf("%q and %q normalize to %q and %q", tt.a, tt.b, a, b)
			}
		})
	}
	if a, b := normalize("disk vda failed"), normalize("disk vdb failed"); a == b {
		t.Errorf("different devices normalize alike: %q", a)
	}
	if got := normalize("deadbeef is a word but cafe1234 is hex"); got != "deadbeef is a word but # is hex" {
		t.Errorf("got %q", got)
	}
}

func TestLogsFilter(t *testing.T) {
	f, err := newFilter(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		pri     int
		msg     string
		wantPri int
		want    bool
	}{
		{"an ordinary line is no error", priUnknown, "Started Session 42 of user root.", 0, false},
		{"a line with error is an error", priUnknown, "EXT4-fs error (device vda1): bad block", priErr, true},
		{"keywords match in any case", priUnknown, "Payment FAILED for order", priErr, true},
		{"a word only containing a keyword is no error", priUnknown, "interrupt terrier deferred", 0, false},
		{"a kernel panic is critical", priUnknown, "Kernel panic - not syncing: Fatal exception", priCrit, true},
		{"no errors is no error", priUnknown, "check finished with no errors", priErr, false},
		{"a known priority err is an error whatever the words", priErr, "something odd", priErr, true},
		{"a known priority warning is not", priWarning, "an error of sorts", priWarning, false},
		{"out of memory is an error", priUnknown, "Out of memory: Killed process 1234 (java)", priErr, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pri, ok := priUnknown, false
			if tt.pri != priUnknown || f.mayMatch([]byte(tt.msg)) {
				pri, ok = f.classify(tt.pri, []byte(tt.msg))
			}
			if ok != tt.want || ok && pri != tt.wantPri {
				t.Errorf("got %d %v, want %d %v", pri, ok, tt.wantPri, tt.want)
			}
		})
	}
}

func TestLogsConfigRejectsBadValues(t *testing.T) {
	for _, mod := range []func(*Config){
		func(c *Config) { c.Journal = "yes" },
		func(c *Config) { c.MinPriority = 9 },
		func(c *Config) { c.ErrorPatterns = []string{"("} },
	} {
		c := DefaultConfig()
		mod(&c)
		if _, err := New(c, checks.Env{}); err == nil {
			t.Errorf("config %+v accepted", c)
		}
	}
}

func testEntry(src, unit, msg string, pri int, at time.Time) entry {
	return entry{Source: src, Unit: unit, Message: msg, Priority: pri, Time: at}
}

// TestLogsAggregatorWindow shows how repeats are held back: a new entry
// triggers a report at once, its repeats within the window wait and come
// as one finding with their count once the window is over.
func TestLogsAggregatorWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.AggregateWindow = checks.D(time.Minute)
		cfg, _ = cfg.withDefaults()
		a := newAggregator(cfg)
		var triggers atomic.Int32
		a.setTrigger(func() { triggers.Add(1) })

		t0 := time.Now()
		a.push("journald", Position{Cursor: "c1"}, 10, []entry{
			testEntry("journald", "nginx.service", "upstream 10.0.0.1:8080 failed", priErr, t0),
			testEntry("journald", "nginx.service", "upstream 10.0.0.2:8080 failed", priErr, t0),
		})
		if n := triggers.Load(); n != 1 {
			t.Fatalf("triggers = %d, want 1", n)
		}
		b := a.drain(time.Now())
		if len(b.groups) != 1 || b.groups[0].count != 2 {
			t.Fatalf("first drain: %d groups, want one of count 2", len(b.groups))
		}
		if b.positions["journald"].Cursor != "c1" || b.sources["journald"].read != 10 {
			t.Errorf("position %v read %d", b.positions["journald"], b.sources["journald"].read)
		}

		time.Sleep(10 * time.Second)
		a.push("journald", Position{Cursor: "c2"}, 1, []entry{testEntry("journald", "nginx.service", "upstream 10.0.0.3:8080 failed", priErr, time.Now())})
		if n := triggers.Load(); n != 1 {
			t.Errorf("a repeat within the window triggered: %d", n)
		}
		if b := a.drain(time.Now()); len(b.groups) != 0 {
			t.Errorf("a repeat within the window was reported: %d groups", len(b.groups))
		}
		time.Sleep(time.Minute)
		b = a.drain(time.Now())
		if len(b.groups) != 1 || b.groups[0].count != 1 || !b.groups[0].first.Equal(t0.Add(10*time.Second)) {
			t.Fatalf("after the window: %+v", b.groups)
		}
		time.Sleep(time.Minute)
		a.push("journald", Position{Cursor: "c3"}, 1, []entry{testEntry("journald", "nginx.service", "upstream 10.0.0.4:8080 failed", priErr, time.Now())})
		if n := triggers.Load(); n != 2 {
			t.Errorf("a repeat after the window did not trigger: %d", n)
		}
	})
}

func TestLogsAggregatorCaps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.MaxPerSource, cfg.MaxRate, cfg.MaxEntries = 3, 10, 4
		cfg, _ = cfg.withDefaults()
		a := newAggregator(cfg)
		var flood []entry
		for i := range 25 {
			flood = append(flood, testEntry("/var/log/syslog", "app", fmt.Sprintf("error kind %c", 'a'+i%5), priErr, time.Now()))
		}
		a.push("/var/log/syslog", Position{Offset: 100}, 1000, flood)
		b := a.drain(time.Now())
		s := b.sources["/var/log/syslog"]
		// 10 pass the rate cap; of those, kinds a, b, c fit and d, e do not.
		if len(b.groups) != 3 || s.matched != 25 || s.suppressed != 15+4 {
			t.Errorf("groups %d matched %d suppressed %d, want 3, 25, 19", len(b.groups), s.matched, s.suppressed)
		}
		if len(b.entries) != 4 || b.entriesLeftOut != 2 {
			t.Errorf("entries %d left out %d, want 4 and 2", len(b.entries), b.entriesLeftOut)
		}
		time.Sleep(time.Second) // the bucket refills
		a.push("/var/log/syslog", Position{Offset: 200}, 10, flood[:1])
		if s := a.drain(time.Now()).sources["/var/log/syslog"]; s.suppressed != 0 {
			t.Errorf("suppressed after refill: %d", s.suppressed)
		}
	})
}

// fakeReader pushes scripted entries, one script step per read.
type fakeReader struct {
	steps [][]entry
	at    int
}

func (r *fakeReader) name() string { return "fake" }

func (r *fakeReader) read(ctx context.Context, follow bool, sink entrySink) error {
	pos, _ := sink.position("fake")
	sink.started("fake", "journald", "saved_position")
	if r.at < len(r.steps) {
		step := r.steps[r.at]
		r.at++
		sink.push("fake", Position{Offset: pos.Offset + int64(len(step))}, uint64(len(step)), step)
	}
	if follow {
		<-ctx.Done()
	}
	return nil
}

func newTestLogs(t *testing.T, state *checks.State, r reader) *Logs {
	t.Helper()
	cfg, _ := DefaultConfig().withDefaults()
	f, _ := newFilter(cfg)
	l := newCheck(cfg, f, checks.Env{State: state})
	l.readers = []reader{r}
	l.locks[r.name()] = new(sync.Mutex)
	return l
}

func TestLogsRunCommitAndRestart(t *testing.T) {
	state := checks.NewState(t.TempDir(), Name)
	now := time.Now()
	fake := &fakeReader{steps: [][]entry{
		{testEntry("journald", "a.service", "boom 1", priErr, now), testEntry("journald", "kernel", "panic", priCrit, now)},
		{testEntry("journald", "b.service", "fail", priErr, now)},
		{},
	}}
	l := newTestLogs(t, state, fake)

	res := l.Run(context.Background())
	if res.Status != protocol.StatusCrit || len(res.Findings) != 2 || res.Findings[0].Code != CodeLogCritical {
		t.Fatalf("first run: %s %q %+v", res.Status, res.Summary, res.Findings)
	}
	for _, f := range res.Findings {
		if err := (&protocol.Envelope{V: 1, Kind: protocol.KindResult, Run: "r", Seq: 1, TS: now, Check: "logs", Status: res.Status, Findings: []protocol.Finding{f}}).Validate(); err != nil {
			t.Errorf("finding %+v: %v", f, err)
		}
	}
	// Not committed (the report was not stored): the next run reports it
	// again, with what is new.
	res = l.Run(context.Background())
	if len(res.Findings) != 3 {
		t.Fatalf("uncommitted run: %d findings, want 3", len(res.Findings))
	}
	if err := l.Commit(); err != nil {
		t.Fatal(err)
	}
	var saved map[string]Position
	if ok, err := state.Load(stateKey, &saved); !ok || err != nil || saved["fake"].Offset != 3 {
		t.Fatalf("saved %v %v %v", saved, ok, err)
	}
	res = l.Run(context.Background())
	if res.Status != protocol.StatusOK || len(res.Findings) != 0 {
		t.Errorf("run after commit: %s %+v", res.Status, res.Findings)
	}

	// A new check on the same state resumes from the saved position.
	l2 := newTestLogs(t, state, &fakeReader{})
	if p, ok := l2.agg.position("fake"); !ok || p.Offset != 3 {
		t.Errorf("restart position %v %v, want offset 3", p, ok)
	}
	b, _ := json.Marshal(res)
	if len(b) > 200<<10 {
		t.Errorf("result is %d bytes", len(b))
	}
}

func TestLogsWatchTriggers(t *testing.T) {
	fake := &fakeReader{steps: [][]entry{{testEntry("journald", "a.service", "boom", priErr, time.Now())}}}
	l := newTestLogs(t, nil, fake)
	ctx, cancel := context.WithCancel(context.Background())
	triggered := make(chan struct{}, 1)
	done := make(chan error)
	go func() { done <- l.Watch(ctx, func() { triggered <- struct{}{} }) }()
	select {
	case <-triggered:
	case <-time.After(5 * time.Second):
		t.Fatal("no trigger")
	}
	res := l.Run(ctx)
	if len(res.Findings) != 1 || res.Data.(Data).Mode != "follow" {
		t.Errorf("run while watching: %+v", res)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestLogsNoSourceIsUnknown(t *testing.T) {
	cfg, _ := DefaultConfig().withDefaults()
	f, _ := newFilter(cfg)
	l := newCheck(cfg, f, checks.Env{})
	l.notes = []string{"journald: not running"}
	if res := l.Run(context.Background()); res.Status != protocol.StatusUnknown {
		t.Errorf("status %s, want unknown", res.Status)
	}
	if err := l.Watch(context.Background(), func() {}); err == nil {
		t.Error("Watch without sources returned nil")
	}
}
