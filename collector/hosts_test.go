package collector_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/protocol"
)

// sample publishes a host usage sample as a relay would.
func (r *relay) sample(ts time.Time, cpuPct, memPct float64, errs ...string) {
	r.t.Helper()
	u := protocol.HostUsage{V: protocol.Version, Host: r.host, TS: ts, IntervalS: 10,
		CPU: protocol.HostCPU{Count: 8, UsedPct: cpuPct}, Memory: protocol.HostMemory{TotalBytes: 16 << 30, UsedPct: memPct},
		VMs: []protocol.VMUsage{}, Errors: errs}
	r.publish(protocol.HostSubject(r.host), u)
}

// hostOf returns host's placement in c's view, if c has one.
func hostOf(c *collector.Collector, host string) (collector.HostPlacement, bool) {
	for _, hp := range c.Placement().Hosts {
		if hp.Host == host {
			return hp, true
		}
	}
	return collector.HostPlacement{}, false
}

// waitPlacement polls c.Placement until cond holds.
func waitPlacement(t *testing.T, c *collector.Collector, what string, cond func(collector.Placement) bool) collector.Placement {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p := c.Placement()
		if cond(p) {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; placement: %+v", what, p)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not a wait for state
	}
}

// feed publishes samples of (cpu, mem) a second apart from start and waits
// for c to have applied each before the next, so that two collectors
// sharing the durable take them in order.
func feed(t *testing.T, c *collector.Collector, r *relay, start time.Time, samples [][2]float64, errs ...string) time.Time {
	t.Helper()
	ts := start
	for _, s := range samples {
		ts = ts.Add(time.Second)
		r.sample(ts, s[0], s[1], errs...)
		waitPlacement(t, c, "sample "+ts.String(), func(p collector.Placement) bool {
			hp, ok := hostOf(c, r.host)
			return ok && hp.Usage != nil && hp.Usage.TS.Equal(ts)
		})
	}
	return ts
}

// streamHints reads every hint the GUESTDIAG stream kept.
func (e *env) streamHints(t *testing.T) []protocol.Hint {
	return streamAll[protocol.Hint](t, e, "guestdiag.hint.>")
}

// transitions is hints as "kind/resource state" lines.
func transitions(hints []protocol.Hint) string {
	var b strings.Builder
	for _, h := range hints {
		fmt.Fprintf(&b, "%s %s/%s %s\n", h.Host, h.Kind, h.Resource, h.State)
	}
	return b.String()
}

// waitHints polls the stream until it holds want transitions.
func (e *env) waitHints(t *testing.T, want string) []protocol.Hint {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		hints := e.streamHints(t)
		got := transitions(hints)
		if got == want {
			return hints
		}
		if time.Now().After(deadline) {
			t.Fatalf("hints in the stream:\ngot\n%swant\n%s", got, want)
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
}

func TestOverloadIsRaisedAtKOfNAndClearedOnceByTwoCollectors(t *testing.T) {
	e := newEnv(t)
	first := e.startCollector(t)
	e.startCollector(t)
	h1 := e.relay(t, "h1")

	// 90 90 50 90: the third sample above 85 % of four raises; then 50 50
	// leave 90 50 90 50 50 in the window of five, two hits: cleared.
	last := feed(t, first.c, h1, t0, [][2]float64{{90, 40}, {90, 40}, {50, 40}, {90, 40}})
	hp, _ := hostOf(first.c, "h1")
	if len(hp.Hints) != 1 || hp.Hints[0].Kind != protocol.HintOverloaded || hp.Hints[0].Resource != "cpu" {
		t.Fatalf("hints after the third busy sample: got %+v, want overloaded cpu", hp.Hints)
	}
	ev := hp.Hints[0].Evidence
	if ev.Hits != 3 || ev.Window != 5 || ev.ThresholdPct != collector.DefaultCPUHighPct || len(ev.Samples) != 4 {
		t.Errorf("evidence: got hits %d window %d threshold %g samples %d, want 3 of 5 over 85 with 4 samples", ev.Hits, ev.Window, ev.ThresholdPct, len(ev.Samples))
	}
	last = feed(t, first.c, h1, last, [][2]float64{{50, 40}, {50, 40}, {50, 40}, {60, 40}})
	hints := e.waitHints(t, "h1 overloaded/cpu raised\nh1 overloaded/cpu cleared\n")
	if !hints[0].Since.Equal(t0.Add(4 * time.Second)) {
		t.Errorf("since: got %v, want the fourth sample's time", hints[0].Since)
	}
	// A redelivered old sample changes nothing.
	h1.sample(t0.Add(time.Second), 99, 99)
	feed(t, first.c, h1, last, [][2]float64{{60, 40}})
	e.waitHints(t, "h1 overloaded/cpu raised\nh1 overloaded/cpu cleared\n")
}

func TestSampleThatLacksAFigureNeitherRaisesNorClears(t *testing.T) {
	e := newEnv(t)
	r := e.startCollector(t)
	h1 := e.relay(t, "h1")

	last := feed(t, r.c, h1, t0, [][2]float64{{95, 95}, {95, 95}})
	// The relay could not read the CPU: its figure is 0, which must not
	// count as below 20 % (underloaded) nor as a third busy sample.
	last = feed(t, r.c, h1, last, [][2]float64{{0, 95}, {0, 95}, {0, 95}}, "cpu times: open /proc/stat: permission denied")
	e.waitHints(t, "h1 overloaded/memory raised\n")
	last = feed(t, r.c, h1, last, [][2]float64{{95, 95}})
	e.waitHints(t, "h1 overloaded/memory raised\nh1 overloaded/cpu raised\n")
	// Five samples without either figure clear nothing.
	last = feed(t, r.c, h1, last, [][2]float64{{0, 0}, {0, 0}, {0, 0}, {0, 0}, {0, 0}}, "cpu times: gone", "memory: gone")
	hp, _ := hostOf(r.c, "h1")
	if len(hp.Hints) != 2 {
		t.Errorf("hints after samples without figures: got %+v, want both overloads still raised", hp.Hints)
	}
	feed(t, r.c, h1, last, [][2]float64{{50, 50}, {50, 50}, {50, 50}})
	e.waitHints(t, "h1 overloaded/memory raised\nh1 overloaded/cpu raised\nh1 overloaded/cpu cleared\nh1 overloaded/memory cleared\n")
}

func TestUnderloadedHostIsAConsolidationCandidate(t *testing.T) {
	e := newEnv(t)
	r := e.startCollectorWith(t, collector.Config{Hints: collector.HintConfig{Hosts: map[string]collector.Thresholds{"h2": {CPULowPct: 5}}}})
	h1, h2 := e.relay(t, "h1"), e.relay(t, "h2")
	feed(t, r.c, h1, t0, [][2]float64{{10, 30}, {10, 30}, {10, 30}})
	// h2's own low threshold of 5 % keeps 10 % from counting.
	feed(t, r.c, h2, t0, [][2]float64{{10, 30}, {10, 30}, {10, 30}})
	hints := e.waitHints(t, "h1 underloaded/cpu raised\n")
	if got := hints[0].Evidence.ThresholdPct; got != collector.DefaultCPULowPct {
		t.Errorf("threshold: got %g, want %d", got, collector.DefaultCPULowPct)
	}
}

func stealResult(run string, seq uint64, ts time.Time, steal bool) protocol.Envelope {
	e := result(run, seq, "resources", protocol.StatusOK, ts)
	if steal {
		e.Status = protocol.StatusWarn
		e.Findings = []protocol.Finding{{Code: "res.steal_high", Severity: protocol.SeverityWarn, Message: "steal 20 %"}}
	}
	return e
}

func TestTwoGuestsReportingStealMakeTheirHostContended(t *testing.T) {
	e := newEnv(t)
	r := e.startCollector(t)
	h1 := e.relay(t, "h1")
	h1.guest("a", "u-a", stealResult("ra", 1, t0, true), t0)
	h1.guest("b", "u-b", stealResult("rb", 1, t0, true), t0)
	h1.guest("c", "u-c", stealResult("rc", 1, t0, false), t0)
	r.waitFor(t, "three guests", func(m map[string]collector.VM) bool {
		return m["h1/a"].Checks["resources"] != nil && m["h1/b"].Checks["resources"] != nil && m["h1/c"].Checks["resources"] != nil
	})
	last := feed(t, r.c, h1, t0, [][2]float64{{50, 50}})
	hints := e.waitHints(t, "h1 contention/ raised\n")
	var vms []string
	for _, v := range hints[0].Evidence.VMs {
		vms = append(vms, v.VM+":"+v.Code)
	}
	if got, want := strings.Join(vms, " "), "a:res.steal_high b:res.steal_high"; got != want {
		t.Errorf("evidence: got %q, want %q", got, want)
	}
	h1.guest("b", "u-b", stealResult("rb", 2, t0.Add(time.Minute), false), t0.Add(time.Minute))
	r.waitFor(t, "b without steal", func(m map[string]collector.VM) bool { return m["h1/b"].Checks["resources"].Seq == 2 })
	// The guests' summary is rebuilt at most once a second: samples
	// keep coming until it is.
	deadline := time.Now().Add(10 * time.Second)
	for len(e.streamHints(t)) < 2 && time.Now().Before(deadline) {
		last = feed(t, r.c, h1, last, [][2]float64{{50, 50}})
		time.Sleep(100 * time.Millisecond) // the relay's interval, shortened
	}
	hints = e.waitHints(t, "h1 contention/ raised\nh1 contention/ cleared\n")
	if ev := hints[1].Evidence.VMs; len(ev) != 1 || ev[0].VM != "a" {
		t.Errorf("evidence of the clear: got %+v, want a alone", ev)
	}
}

func TestATransitionLeftUnpublishedIsPublishedOnceByTheNextWriter(t *testing.T) {
	e := newEnv(t)
	r := e.startCollector(t)
	h1 := e.relay(t, "h1")
	last := feed(t, r.c, h1, t0, [][2]float64{{90, 40}, {90, 40}, {90, 40}})
	hints := e.waitHints(t, "h1 overloaded/cpu raised\n")

	// As a collector killed between its write and its publication leaves
	// the record: the transition still in the outbox, whether or not its
	// publication reached the stream (here it did).
	ctx := context.Background()
	kv, err := e.js.KeyValue(ctx, collector.DefaultHostBucket)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := kv.Get(ctx, "h1")
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(entry.Value(), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["outbox"] != nil {
		t.Fatalf("outbox after publishing: got %v, want none", rec["outbox"])
	}
	rec["outbox"] = []any{map[string]any{"seq": rec["seq"], "hint": hints[0]}}
	b, _ := json.Marshal(rec)
	if _, err := kv.Update(ctx, "h1", b, entry.Revision()); err != nil {
		t.Fatal(err)
	}
	feed(t, r.c, h1, last, [][2]float64{{90, 40}})
	deadline := time.Now().Add(10 * time.Second)
	for {
		entry, err := kv.Get(ctx, "h1")
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		_ = json.Unmarshal(entry.Value(), &got)
		if got["outbox"] == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("outbox never emptied: %v", got["outbox"])
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
	if got := transitions(e.streamHints(t)); got != "h1 overloaded/cpu raised\n" {
		t.Errorf("hints in the stream: got\n%swant the raise once", got)
	}
	if st := r.c.Stats(); st.Hints != 2 {
		t.Errorf("publications: got %d, want 2 (the raise, and its repeat the stream dropped)", st.Hints)
	}
}

func post(t *testing.T, url, body string) (int, collector.APIError) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e collector.APIError
	_ = json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e
}

func TestDrainAndUndrainThroughTheAPI(t *testing.T) {
	e := newEnv(t)
	admin := func(r *http.Request) (string, error) {
		if r.Header.Get("X-Test-User") == "" {
			return "", errors.New("user nobody is not an admin")
		}
		return r.Header.Get("X-Test-User"), nil
	}
	open := e.startCollector(t)
	guarded := e.startCollectorWith(t, collector.Config{Admin: admin})

	tests := []struct {
		name     string
		url      string
		body     string
		wantCode int
		wantErr  string
	}{
		{"a refusing admin hook gives 403", guarded.api + "/api/hosts/h1/drain", `{"reason":"x"}`, 403, "needs an admin: user nobody is not an admin"},
		{"a control character in the host is refused", open.api + "/api/hosts/h%01x/drain", `{}`, 400, "control"},
		{"an overlong host is refused", open.api + "/api/hosts/" + strings.Repeat("h", 300) + "/drain", `{}`, 400, "at most 253"},
		{"a body that is not a reason is refused", open.api + "/api/hosts/h1/drain", `{"why":"x"}`, 400, "reason"},
		{"a reason with an escape is refused", open.api + "/api/hosts/h1/drain", `{"reason":"a\u001b[2Jb"}`, 400, "control"},
	}
	t.Run("a write that is not JSON is refused", func(t *testing.T) {
		resp, err := http.Post(open.api+"/api/hosts/h1/drain", "application/x-www-form-urlencoded", strings.NewReader("reason=x"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnsupportedMediaType {
			t.Errorf("status: got %d, want 415", resp.StatusCode)
		}
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := post(t, tt.url, tt.body)
			if code != tt.wantCode || !strings.Contains(body.Error, tt.wantErr) {
				t.Errorf("got %d %q, want %d with %q", code, body.Error, tt.wantCode, tt.wantErr)
			}
		})
	}

	subCtx, unsubscribe := context.WithCancel(context.Background())
	defer unsubscribe()
	changes := guarded.c.Subscribe(subCtx)
	// A host no relay has reported yet may be drained.
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := post(t, open.api+"/api/hosts/h1/drain", `{"reason":"kernel update"}`)
		if code == 200 {
			break
		}
		if code != 503 || time.Now().After(deadline) {
			t.Fatalf("drain: got %d %q, want 200", code, body.Error)
		}
		time.Sleep(20 * time.Millisecond) // polling interval while JetStream is set up
	}
	hints := e.waitHints(t, "h1 evacuate/ raised\n")
	if ev := hints[0].Evidence; ev.By != "anonymous" || ev.Reason != "kernel update" {
		t.Errorf("evidence: got by %q reason %q, want anonymous and the reason", ev.By, ev.Reason)
	}
	p := waitPlacement(t, guarded.c, "the drain on the other collector", func(collector.Placement) bool {
		hp, ok := hostOf(guarded.c, "h1")
		return ok && hp.Drain != nil
	})
	if d := p.Hosts[0].Drain; d.By != "anonymous" || d.Reason != "kernel update" {
		t.Errorf("drain mark: got %+v", d)
	}
	select {
	case ch := <-changes:
		if ch != (collector.Change{Host: "h1", What: "host"}) {
			t.Errorf("change: got %+v, want host h1", ch)
		}
	case <-time.After(10 * time.Second):
		t.Error("the other collector's subscribers heard nothing of the drain")
	}
	// Draining again keeps the first mark and raises nothing more.
	if code, body := post(t, open.api+"/api/hosts/h1/drain", `{"reason":"again"}`); code != 200 {
		t.Fatalf("second drain: got %d %q", code, body.Error)
	}
	req, _ := http.NewRequest("POST", guarded.api+"/api/hosts/h1/undrain", nil)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Test-User", "alice")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("undrain by alice: got %d", resp.StatusCode)
	}
	hints = e.waitHints(t, "h1 evacuate/ raised\nh1 evacuate/ cleared\n")
	if hints[1].Evidence.By != "alice" {
		t.Errorf("cleared by: got %q, want alice", hints[1].Evidence.By)
	}
	waitPlacement(t, open.c, "the mark gone", func(collector.Placement) bool {
		hp, ok := hostOf(open.c, "h1")
		return ok && hp.Drain == nil && len(hp.Hints) == 0
	})
}

func TestACollectorStartedLaterServesTheNewestPlansAndOutcomes(t *testing.T) {
	e := newEnv(t)
	first := e.startCollectorWith(t, collector.Config{Plans: 2})
	r := e.relay(t, "s")
	waitPlacement(t, first.c, "the first collector set up", func(collector.Placement) bool {
		_, err := e.js.Stream(context.Background(), "GUESTDIAG")
		return err == nil
	})
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("p%d", i)
		r.publish(protocol.PlanSubject, protocol.Plan{V: 1, Kind: protocol.PlanKindPlan, ID: id, TS: t0.Add(time.Duration(i) * time.Minute), Scheduler: "s1", Mode: protocol.ModeExecute,
			Moves: []protocol.PlanMove{{ID: id + "/1", VMs: []string{"web1"}, From: "h1", To: "h2", Reason: "h1 overloaded"}}})
	}
	started := protocol.MoveOutcome{V: 1, Kind: protocol.PlanKindMove, Plan: "p3", Move: "p3/1", VMs: []string{"web1"}, From: "h1", To: "h2", State: protocol.MoveStarted, TS: t0.Add(4 * time.Minute), Executor: "qmp"}
	done := started
	done.State, done.TS, done.DurationMS, done.DowntimeMS = protocol.MoveDone, t0.Add(5*time.Minute), 1200, 40
	r.publish(protocol.OutcomeSubject("p3", "p3/1"), started)
	r.publish(protocol.OutcomeSubject("p3", "p3/1"), done)
	r.publish(protocol.PlanSubject, []byte(`{"v":1,"kind":"gossip"}`))

	later := e.startCollectorWith(t, collector.Config{Plans: 2})
	for _, c := range []*collector.Collector{first.c, later.c} {
		p := waitPlacement(t, c, "two plans", func(p collector.Placement) bool {
			return len(p.Plans) == 2 && p.Plans[0].Outcomes["p3/1"].State == protocol.MoveDone
		})
		if p.Plans[0].Plan.ID != "p3" || p.Plans[1].Plan.ID != "p2" {
			t.Errorf("plans: got %s, %s; want p3, p2 (newest first, p1 dropped)", p.Plans[0].Plan.ID, p.Plans[1].Plan.ID)
		}
		if o := p.Plans[0].Outcomes["p3/1"]; o.DurationMS != 1200 || o.DowntimeMS != 40 {
			t.Errorf("outcome: got %+v", o)
		}
	}
}

func TestTwoCollectorsRacingOverOneHostPublishEachTransitionOnce(t *testing.T) {
	e := newEnv(t)
	first := e.startCollector(t)
	second := e.startCollector(t)
	h1 := e.relay(t, "h1")
	ts := t0
	for range 10 {
		for _, cpu := range []float64{90, 90, 90, 90, 90, 40, 40, 40, 40, 40} {
			ts = ts.Add(time.Second)
			h1.sample(ts, cpu, 30)
		}
	}
	e.waitConsumerIdle(t)
	hints := e.streamHints(t)
	if len(hints) == 0 {
		t.Fatal("no hints for ten busy spells")
	}
	for i, h := range hints {
		want := protocol.HintRaised
		if i%2 == 1 {
			want = protocol.HintCleared
		}
		if h.Kind != protocol.HintOverloaded || h.State != want {
			t.Fatalf("hint %d: got %s %s, want overloaded %s; all:\n%s", i, h.Kind, h.State, want, transitions(hints))
		}
	}
	for _, r := range []*running{first, second} {
		waitPlacement(t, r.c, "the newest sample", func(collector.Placement) bool {
			hp, ok := hostOf(r.c, "h1")
			return ok && hp.Usage != nil && hp.Usage.TS.Equal(ts)
		})
		hp, _ := hostOf(r.c, "h1")
		if raised := len(hints)%2 == 1; raised != (len(hp.Hints) == 1) {
			t.Errorf("raised hints in the record: got %+v; the stream's last is %s", hp.Hints, hints[len(hints)-1].State)
		}
	}
}

func TestABadHostSampleIsSetAsideAndLaterOnesApply(t *testing.T) {
	e := newEnv(t)
	r := e.startCollector(t)
	h1 := e.relay(t, "h1")
	bad := []struct {
		name string
		body any
	}{
		{"not JSON", []byte("{")},
		{"another host's sample on h1's subject", protocol.HostUsage{V: 1, Host: "h2", TS: t0}},
		{"a host name with an escape", protocol.HostUsage{V: 1, Host: "h1\x1b[2J", TS: t0}},
		{"no time", protocol.HostUsage{V: 1, Host: "h1"}},
	}
	for _, b := range bad {
		h1.publish(protocol.HostSubject("h1"), b.body)
	}
	h1.publish(protocol.HostSubject("h1"), protocol.HostUsage{V: 2, Host: "h1", TS: t0})
	feed(t, r.c, h1, t0, [][2]float64{{50, 50}})
	deadline := time.Now().Add(10 * time.Second)
	for r.c.Stats().Poison < uint64(len(bad)) || r.c.Stats().Deferred < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("stats: got %+v, want %d poison and 1 deferred", r.c.Stats(), len(bad))
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
	if hosts := r.c.Placement().Hosts; len(hosts) != 1 || hosts[0].Host != "h1" {
		t.Errorf("hosts: got %+v, want h1 alone", hosts)
	}
}
