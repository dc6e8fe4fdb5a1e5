package guestagent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/guestdiag/guestdiag/checks"
	"github.com/guestdiag/guestdiag/checks/resources"
	"github.com/guestdiag/guestdiag/internal/version"
	"github.com/guestdiag/guestdiag/protocol"
)

// fakeCheck reports a warning with one finding.
type fakeCheck struct{ runs int }

func (c *fakeCheck) Name() string { return "fake" }

func (c *fakeCheck) Run(context.Context) checks.Result {
	c.runs++
	return checks.Result{
		Status:   protocol.StatusWarn,
		Summary:  "fake summary",
		Findings: []protocol.Finding{{Code: "fake.thing", Severity: protocol.SeverityWarn, Message: "a thing"}},
		Data:     map[string]int{"runs": c.runs},
	}
}

// startAgent runs an agent with the fake check until stop is called; stop
// fails the test unless run returns nil.
func startAgent(t *testing.T, stateDir string, tr Transport) (a *agent, stop func()) {
	t.Helper()
	cfg := Config{StateDir: stateDir, HeartbeatInterval: 10 * time.Second}.withDefaults()
	a = newAgent(cfg, tr, []checks.Runner{{Check: &fakeCheck{}, Interval: 30 * time.Second, Timeout: time.Minute}}, discardLogger())
	a.hello = func(context.Context) protocol.Hello {
		return protocol.Hello{Hostname: "guest1", OS: runtime.GOOS, AgentVersion: version.Version, Checks: []string{"fake"}}
	}
	a.systemUptime = func(context.Context) uint64 { return 42 }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.run(ctx) }()
	return a, func() {
		t.Helper()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run returned %v after cancel, want nil", err)
		}
	}
}

var runIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func TestAgentSendsHelloResultsAndHeartbeats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newPipeTransport()
		a, stop := startAgent(t, t.TempDir(), tr)
		defer stop()
		start := time.Now()
		h := tr.connect(t, time.Minute)
		h.expectNewline(t)

		hello := h.envelope(t)
		if hello.Kind != protocol.KindHello || hello.Seq != 1 || !runIDRE.MatchString(hello.Run) {
			t.Fatalf("first message = %s seq %d run %q, want hello seq 1 with a run id", hello.Kind, hello.Seq, hello.Run)
		}
		var hd protocol.Hello
		if err := json.Unmarshal(hello.Data, &hd); err != nil {
			t.Fatal(err)
		}
		if hd.OS != runtime.GOOS || hd.AgentVersion != "dev" || !slices.Equal(hd.Checks, []string{"fake"}) {
			t.Errorf("hello data = %+v", hd)
		}

		res := h.envelope(t)
		if res.Kind != protocol.KindResult || res.Seq != 2 || res.Run != hello.Run || res.Check != "fake" ||
			res.Status != protocol.StatusWarn || len(res.Findings) != 1 || string(res.Data) != `{"runs":1}` {
			t.Errorf("second message = %+v, want the fake check's result as seq 2", res)
		}

		hb := h.envelope(t)
		if hb.Kind != protocol.KindHeartbeat || hb.Seq != 3 {
			t.Fatalf("third message = %s seq %d, want heartbeat seq 3", hb.Kind, hb.Seq)
		}
		if got := time.Since(start); got != 10*time.Second {
			t.Errorf("first heartbeat after %v, want 10s", got)
		}
		var hbd protocol.Heartbeat
		if err := json.Unmarshal(hb.Data, &hbd); err != nil {
			t.Fatal(err)
		}
		if hbd.UptimeSec != 42 || hbd.Spooled != 2 {
			t.Errorf("heartbeat data = %+v, want uptime 42 and the 2 unacked messages", hbd)
		}

		h.ack(t, hello.Run, 3)
		synctest.Wait()
		if got := a.spool.waiting(); got != 0 {
			t.Errorf("%d messages spooled after the ack of seq 3, want 0", got)
		}
		if hb := h.envelope(t); hb.Kind != protocol.KindHeartbeat || hb.Seq != 4 || time.Since(start) != 20*time.Second {
			t.Errorf("next = %s seq %d at %v, want heartbeat seq 4 at 20s", hb.Kind, hb.Seq, time.Since(start))
		}
	})
}

func TestAgentRestartSendsPreviousRunFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		tr := newPipeTransport()
		_, stop := startAgent(t, dir, tr)
		h := tr.connect(t, time.Minute)
		h.expectNewline(t)
		hello1 := h.envelope(t)
		res1 := h.envelope(t)
		h.ack(t, hello1.Run, 1) // the result stays unacknowledged
		synctest.Wait()
		stop()

		_, stop = startAgent(t, dir, tr)
		defer stop()
		h = tr.connect(t, time.Minute)
		h.expectNewline(t)
		old := h.envelope(t)
		if old.Run != res1.Run || old.Seq != 2 || old.Kind != protocol.KindResult {
			t.Errorf("first after restart = %s %s/%d, want the old run's unacked result %s/2", old.Kind, old.Run, old.Seq, res1.Run)
		}
		hello2 := h.envelope(t)
		if hello2.Kind != protocol.KindHello || hello2.Seq != 1 || hello2.Run == hello1.Run || !runIDRE.MatchString(hello2.Run) {
			t.Errorf("then %s %s/%d, want a hello of a new run at seq 1", hello2.Kind, hello2.Run, hello2.Seq)
		}
	})
}

func TestAgentReportsSpoolDrops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newPipeTransport()
		cfg := Config{StateDir: t.TempDir(), HeartbeatInterval: 10 * time.Second, SpoolMaxBytes: minSegBytes * 2}.withDefaults()
		a := newAgent(cfg, tr, nil, discardLogger())
		a.hello = func(context.Context) protocol.Hello {
			return protocol.Hello{OS: runtime.GOOS, AgentVersion: version.Version, Checks: []string{}}
		}
		a.systemUptime = func(context.Context) uint64 { return 1 }
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.run(ctx) }()
		// No host: heartbeats pile up until the 8 KiB spool drops the oldest.
		synctest.Wait()
		for a.spool.droppedCount() == 0 {
			time.Sleep(10 * time.Second)
			synctest.Wait()
		}
		h := tr.connect(t, time.Minute)
		h.expectNewline(t)
		found := false
		for range 200 {
			e := h.envelope(t)
			if e.Kind == protocol.KindEvent {
				found = e.Check == "agent" && len(e.Findings) == 1 && e.Findings[0].Code == "agent.spool_dropped" && e.Findings[0].Count > 0
				break
			}
		}
		if !found {
			t.Error("no agent.spool_dropped event after the spool dropped messages")
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run returned %v", err)
		}
	})
}

func TestRunWithRealChecks(t *testing.T) {
	tr := newPipeTransport()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	// Only resources: the network check would ping this machine's real
	// gateway and the internet.
	off := false
	only := map[string]CheckSettings{}
	for _, r := range checks.All() {
		if r.Name != resources.Name {
			only[r.Name] = CheckSettings{Enabled: &off}
		}
	}
	cfg := Config{StateDir: t.TempDir(), Transport: tr, HeartbeatInterval: time.Hour, Checks: only}
	go func() { done <- Run(ctx, cfg, discardLogger()) }()

	h := tr.connect(t, hostTimeout)
	h.expectNewline(t)
	hello := h.envelope(t)
	var hd protocol.Hello
	if err := json.Unmarshal(hello.Data, &hd); err != nil {
		t.Fatal(err)
	}
	if hello.Kind != protocol.KindHello || hd.OS != runtime.GOOS || hd.Kernel == "" || !slices.Contains(hd.Checks, resources.Name) {
		t.Errorf("hello = %s %+v, want os, kernel and the resources check", hello.Kind, hd)
	}
	res := h.envelope(t)
	if res.Kind != protocol.KindResult || res.Check != resources.Name || res.Seq != 2 {
		t.Fatalf("second = %s %s seq %d, want the resources result", res.Kind, res.Check, res.Seq)
	}
	var d resources.Data
	if err := json.Unmarshal(res.Data, &d); err != nil || d.Memory == nil || d.CPU == nil {
		t.Errorf("resources data %s: %v", res.Data, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run returned %v after cancel, want nil", err)
		}
	case <-time.After(hostTimeout):
		t.Fatal("Run did not return after cancel")
	}
}

func TestRunRejectsUnknownChecks(t *testing.T) {
	cfg := Config{StateDir: t.TempDir(), Transport: newPipeTransport(), Checks: map[string]CheckSettings{"nope": {}}}
	if err := Run(context.Background(), cfg, discardLogger()); err == nil {
		t.Error("Run with an unknown check: got nil, want an error")
	}
}

// badCheck returns a finding whose code breaks the protocol's rules.
type badCheck struct{}

func (badCheck) Name() string { return "bad" }

func (badCheck) Run(context.Context) checks.Result {
	return checks.Result{Status: protocol.StatusWarn, Summary: "s",
		Findings: []protocol.Finding{{Code: "Not A Code", Severity: protocol.SeverityWarn, Message: "m"}}}
}

// hugeCheck returns a warning whose data is over the protocol's line limit.
type hugeCheck struct{}

func (hugeCheck) Name() string { return "huge" }

func (hugeCheck) Run(context.Context) checks.Result {
	return checks.Result{Status: protocol.StatusWarn, Summary: "many changes",
		Findings: []protocol.Finding{{Code: "sw.installed", Severity: protocol.SeverityWarn, Message: "9000 packages installed"}},
		Data:     map[string]string{"list": strings.Repeat("x", protocol.MaxLineLen)}}
}

// firstResult runs an agent with the one check c and returns the first
// result the host receives.
func firstResult(t *testing.T, c checks.Check) protocol.Envelope {
	t.Helper()
	tr := newPipeTransport()
	cfg := Config{StateDir: t.TempDir()}.withDefaults()
	a := newAgent(cfg, tr, []checks.Runner{{Check: c, Interval: time.Minute, Timeout: time.Minute}}, discardLogger())
	a.hello = func(context.Context) protocol.Hello {
		return protocol.Hello{OS: runtime.GOOS, AgentVersion: version.Version, Checks: []string{c.Name()}}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.run(ctx) }()
	h := tr.connect(t, time.Minute)
	h.expectNewline(t)
	h.envelope(t) // hello
	res := h.envelope(t)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run returned %v", err)
	}
	return res
}

func TestAgentKeepsTheFindingsOfAResultWhoseDataIsTooLong(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		res := firstResult(t, hugeCheck{})
		if res.Check != "huge" || res.Status != protocol.StatusWarn || len(res.Findings) != 1 || res.Data != nil ||
			!strings.Contains(res.Summary, "left out: over the") {
			t.Errorf("got %s %s findings %v data %d bytes summary %q; want the warning and its finding, without data, saying why",
				res.Check, res.Status, res.Findings, len(res.Data), res.Summary)
		}
	})
}

func TestAgentReplacesAnInvalidResult(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		res := firstResult(t, badCheck{})
		if res.Check != "bad" || res.Seq != 2 || res.Status != protocol.StatusUnknown || !strings.HasPrefix(res.Summary, "check produced an invalid result") {
			t.Errorf("got %s seq %d %s %q, want an unknown result saying the check misbehaved", res.Check, res.Seq, res.Status, res.Summary)
		}
	})
}

// testAgent returns an agent of run "R" on a fresh spool, without starting
// it.
func testAgent(t *testing.T) *agent {
	t.Helper()
	a := newAgent(Config{}.withDefaults(), nil, nil, discardLogger())
	a.spool = openTestSpool(t, t.TempDir(), 1<<20)
	a.runID = "R"
	return a
}

// spooled decodes every envelope waiting in sp, in spool order.
func spooled(t *testing.T, sp *spool) []protocol.Envelope {
	t.Helper()
	var out []protocol.Envelope
	_, lines := spoolLines(t, sp)
	for _, b := range lines {
		e, err := protocol.Decode(bytes.TrimSuffix(b, []byte("\n")))
		if err != nil {
			t.Fatalf("spooled line %q: %v", b, err)
		}
		out = append(out, e)
	}
	return out
}

func TestEmitWaitsForTheDiskOutsideTheAgentLock(t *testing.T) {
	a := testAgent(t)
	entered, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	a.spool.fsync = func(f *os.File) error {
		if calls.Add(1) == 1 {
			close(entered)
			<-release // a disk that does not answer
		}
		return f.Sync()
	}
	var releaseOnce sync.Once
	unstick := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(unstick)

	result := protocol.Envelope{Kind: protocol.KindResult, Check: "fake", Status: protocol.StatusOK, Summary: "s"}
	resultDone := make(chan error, 1)
	go func() { resultDone <- a.emit(result) }()
	select {
	case <-entered:
	case <-time.After(hostTimeout):
		t.Fatal("emit of a result did not sync the spool")
	}

	heartbeatDone := make(chan error, 1)
	go func() { heartbeatDone <- a.emit(protocol.Envelope{Kind: protocol.KindHeartbeat}) }()
	select {
	case err := <-heartbeatDone:
		if err != nil {
			t.Fatalf("emit of a heartbeat: %v", err)
		}
	case <-time.After(hostTimeout):
		t.Fatal("a heartbeat waited for another message's fsync")
	}
	select {
	case <-resultDone:
		t.Fatal("emit of a result returned before its fsync did")
	default:
	}
	unstick()
	if err := <-resultDone; err != nil {
		t.Fatalf("emit of a result: %v", err)
	}

	var got []string
	for _, e := range spooled(t, a.spool) {
		got = append(got, fmt.Sprintf("%s %d", e.Kind, e.Seq))
	}
	if want := []string{"result 1", "heartbeat 2"}; !slices.Equal(got, want) {
		t.Errorf("spooled %v, want %v: seqs in spool order", got, want)
	}
}

func TestReportDropsSaysWhy(t *testing.T) {
	tests := []struct {
		name           string
		full, damaged  uint64 // dropped so far, by reason
		expired        uint64
		reportedBefore drops
		wantCodes      []string
		wantCounts     []uint64
		wantSources    []string // checked when set
		wantNoEvent    bool
	}{
		{name: "drops of a full spool are reported as agent.spool_dropped",
			full: 3, wantCodes: []string{"agent.spool_dropped"}, wantCounts: []uint64{3}},
		{name: "damaged records are reported as agent.spool_damaged",
			damaged: 2, wantCodes: []string{"agent.spool_damaged"}, wantCounts: []uint64{2}},
		{name: "both kinds since the last report give one finding each",
			full: 5, damaged: 1, reportedBefore: drops{full: 4},
			wantCodes: []string{"agent.spool_dropped", "agent.spool_damaged"}, wantCounts: []uint64{5, 1}},
		{name: "messages older than the age bound are reported as agent.spool_dropped from age",
			expired: 7, wantCodes: []string{"agent.spool_dropped"}, wantCounts: []uint64{7}, wantSources: []string{"age"}},
		{name: "nothing new is not reported again",
			full: 5, damaged: 1, reportedBefore: drops{full: 5, damaged: 1}, wantNoEvent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := testAgent(t)
			a.spool.dropped, a.spool.damaged, a.spool.expired = tt.full, tt.damaged, tt.expired
			a.reported = tt.reportedBefore
			a.reportDrops()
			got := spooled(t, a.spool)
			if tt.wantNoEvent {
				if len(got) != 0 {
					t.Errorf("spooled %+v, want no event", got)
				}
				return
			}
			if len(got) != 1 || got[0].Kind != protocol.KindEvent || got[0].Check != "agent" {
				t.Fatalf("spooled %+v, want one event of check agent", got)
			}
			var codes []string
			var counts []uint64
			var sources []string
			for _, f := range got[0].Findings {
				codes = append(codes, f.Code)
				counts = append(counts, f.Count)
				sources = append(sources, f.Source)
			}
			if tt.wantSources != nil && !slices.Equal(sources, tt.wantSources) {
				t.Errorf("finding sources %v, want %v", sources, tt.wantSources)
			}
			if !slices.Equal(codes, tt.wantCodes) || !slices.Equal(counts, tt.wantCounts) {
				t.Errorf("findings %v with counts %v, want %v with %v", codes, counts, tt.wantCodes, tt.wantCounts)
			}
		})
	}
}
