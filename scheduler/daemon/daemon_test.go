package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/internal/natstest"
	"github.com/guestdiag/guestdiag/internal/natsutil"
	"github.com/guestdiag/guestdiag/protocol"
	"github.com/guestdiag/guestdiag/scheduler/executor"
)

const gib = 1 << 30

// standIn is a stand-in executor (there is no hypervisor in these tests):
// it records each call and fails the VMs it is told to.
type standIn struct {
	mu    sync.Mutex
	calls []string // "vm from->to"
	fail  map[string]error
}

func (s *standIn) Name() string { return "stand-in" }

func (s *standIn) Migrate(_ context.Context, vm, from, to string) (executor.Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, vm+" "+from+"->"+to)
	if err := s.fail[vm]; err != nil {
		return executor.Result{}, err
	}
	return executor.Result{Duration: 1500 * time.Millisecond, Downtime: 40 * time.Millisecond}, nil
}

func (s *standIn) Calls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// publishFleet publishes the hot fleet: host a (8 CPUs) busy at 7 with
// hog (5 CPUs) and small (2), host b (16 CPUs) at 5 % with nothing.
func publishFleet(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	a := protocol.HostUsage{V: 1, Host: "a", TS: time.Now(), IntervalS: 10,
		CPU:    protocol.HostCPU{Count: 8, UsedPct: 87.5},
		Memory: protocol.HostMemory{TotalBytes: 32 * gib, AvailableBytes: 27 * gib},
		VMs: []protocol.VMUsage{
			{VM: "hog", PID: 10, CPUPct: 500, RSSBytes: 2 * gib, MemoryBytes: 2 * gib, VCPUs: 6},
			{VM: "small", PID: 11, CPUPct: 200, RSSBytes: 2 * gib, MemoryBytes: 4 * gib, VCPUs: 2},
		}}
	b := protocol.HostUsage{V: 1, Host: "b", TS: time.Now(), IntervalS: 10,
		CPU:    protocol.HostCPU{Count: 16, UsedPct: 5},
		Memory: protocol.HostMemory{TotalBytes: 64 * gib, AvailableBytes: 63 * gib}}
	for _, u := range []protocol.HostUsage{a, b} {
		publishJSON(t, js, protocol.HostSubject(u.Host), u)
	}
}

func publishJSON(t *testing.T, js jetstream.JetStream, subject string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(t.Context(), subject, b); err != nil {
		t.Fatal(err)
	}
}

func setup(t *testing.T) (*server.Server, jetstream.JetStream) {
	t.Helper()
	s, _, js := natstest.JetStream(t)
	if _, err := natsutil.EnsureStream(t.Context(), js, natsutil.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	return s, js
}

// fastFile is the default configuration with short periods, for tests.
func fastFile() *File {
	f := Defaults()
	f.Interval = Duration(150 * time.Millisecond)
	f.HintDelay = Duration(50 * time.Millisecond)
	f.Lease.TTL = Duration(time.Second)
	return f
}

type running struct {
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan error
}

func startDaemon(t *testing.T, s *server.Server, cfg Config) *running {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if cfg.File == nil {
		cfg.File = fastFile()
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{nc: nc, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- Run(ctx, nc, cfg) }()
	t.Cleanup(r.stop)
	return r
}

func (r *running) stop() {
	r.cancel()
	if r.done != nil {
		<-r.done
		r.done = nil
	}
}

// planMessages follows plans and move outcomes from now on, in the order
// they were published: both subscriptions of one connection feed one
// channel.
type planMessages struct {
	msgs chan *nats.Msg
}

func watchPlans(t *testing.T, s *server.Server) *planMessages {
	t.Helper()
	nc := natstest.Connect(t, s)
	p := &planMessages{msgs: make(chan *nats.Msg, 4096)}
	for _, subj := range []string{protocol.PlanSubject, protocol.OutcomeSubjects} {
		if _, err := nc.ChanSubscribe(subj, p.msgs); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// next returns the next plan or move outcome within the deadline, and
// fails when it came on another subject than its own.
func (p *planMessages) next(t *testing.T, within time.Duration) (kind string, plan protocol.Plan, out protocol.MoveOutcome) {
	t.Helper()
	var m *nats.Msg
	select {
	case m = <-p.msgs:
	case <-time.After(within):
		t.Fatalf("no plan or outcome within %v", within)
	}
	var k struct{ Kind string }
	err := json.Unmarshal(m.Data, &k)
	if err != nil {
		t.Fatal(err)
	}
	switch k.Kind {
	case protocol.PlanKindPlan:
		err = json.Unmarshal(m.Data, &plan)
	case protocol.PlanKindMove:
		err = json.Unmarshal(m.Data, &out)
	default:
		t.Fatalf("message of kind %q on %s", k.Kind, m.Subject)
	}
	if err != nil {
		t.Fatal(err)
	}
	want := protocol.PlanSubject
	if k.Kind == protocol.PlanKindMove {
		want = protocol.OutcomeSubject(out.Plan, out.Move)
	}
	if m.Subject != want {
		t.Fatalf("%s message on %s, want %s", k.Kind, m.Subject, want)
	}
	return k.Kind, plan, out
}

func (p *planMessages) nextPlan(t *testing.T, within time.Duration) protocol.Plan {
	t.Helper()
	for end := time.Now().Add(within); time.Now().Before(end); {
		if kind, plan, _ := p.next(t, time.Until(end)); kind == protocol.PlanKindPlan {
			return plan
		}
	}
	t.Fatalf("no plan within %v", within)
	return protocol.Plan{}
}

// nextFailure returns the next outcome of a failed move.
func (p *planMessages) nextFailure(t *testing.T, within time.Duration) protocol.MoveOutcome {
	t.Helper()
	for end := time.Now().Add(within); time.Now().Before(end); {
		if kind, _, out := p.next(t, time.Until(end)); kind == protocol.PlanKindMove && out.State == protocol.MoveFailed {
			return out
		}
	}
	t.Fatalf("no failed move within %v", within)
	return protocol.MoveOutcome{}
}

// waitCycles waits until the status in KV has named n more plans.
func waitCycles(t *testing.T, js jetstream.JetStream, n int) Status {
	t.Helper()
	seen := map[string]bool{}
	var st Status
	for end := time.Now().Add(10 * time.Second); len(seen) <= n; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("saw %d cycles in 10 s, want %d", len(seen), n+1)
		}
		var err error
		if st, err = ReadStatus(t.Context(), js); err == nil {
			seen[st.Plan] = true
		}
	}
	return st
}

func TestPlanNowFromPublishedSamples(t *testing.T) {
	s, js := setup(t)
	publishFleet(t, js)
	// A sample whose body names another host than its subject is refused.
	publishJSON(t, js, protocol.HostSubject("c"), protocol.HostUsage{V: 1, Host: "b", CPU: protocol.HostCPU{Count: 1, UsedPct: 100}})
	p, err := PlanNow(t.Context(), natstest.Connect(t, s), Defaults(), "test")
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Moves) != 1 {
		t.Fatalf("got moves %+v, want one", p.Moves)
	}
	m := p.Moves[0]
	// hog leaves a with 2 of 8 CPUs busy; b gets 5 CPUs and keeps its own
	// 0.8 of 16.
	want := protocol.PlanMove{ID: m.ID, VMs: []string{"hog"}, From: "a", To: "b", Reason: m.Reason,
		FromCPUPct: 25, ToCPUPct: 36.3, FromMemPct: m.FromMemPct, ToMemPct: m.ToMemPct}
	if !slices.Equal(m.VMs, want.VMs) || m.From != want.From || m.To != want.To || m.FromCPUPct != want.FromCPUPct || m.ToCPUPct != want.ToCPUPct {
		t.Errorf("got move %+v, want %+v", m, want)
	}
	if m.Reason == "" {
		t.Error("the move has no reason")
	}
}

func TestAdvisoryPublishesThePlanAndNeverCallsTheExecutor(t *testing.T) {
	s, js := setup(t)
	publishFleet(t, js)
	plans := watchPlans(t, s)
	ex := &standIn{}
	startDaemon(t, s, Config{Name: "sched-a", Executor: ex})
	p := plans.nextPlan(t, 5*time.Second)
	if p.Mode != protocol.ModeAdvisory || p.Scheduler != "sched-a" || len(p.Moves) != 1 || p.Moves[0].VMs[0] != "hog" {
		t.Fatalf("got plan %+v, want an advisory plan from sched-a moving hog", p)
	}
	st := waitCycles(t, js, 3)
	if got := ex.Calls(); len(got) != 0 {
		t.Errorf("advisory mode called the executor: %v", got)
	}
	// The same plan again is not news: the status says the scheduler is
	// alive, guestdiag.plan stays quiet.
	if st.Published || st.Moves != 1 {
		t.Errorf("got status %+v, want the repeated plan with 1 move unpublished", st)
	}
	select {
	case m := <-plans.msgs:
		t.Errorf("a repeated advisory plan was published: %s", m.Data)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestExecuteCallsTheExecutorAndPublishesOutcomesInOrder(t *testing.T) {
	s, js := setup(t)
	publishFleet(t, js)
	plans := watchPlans(t, s)
	ex := &standIn{}
	startDaemon(t, s, Config{Name: "sched-a", Mode: protocol.ModeExecute, Executor: ex})

	p := plans.nextPlan(t, 5*time.Second)
	if len(p.Moves) != 1 {
		t.Fatalf("got plan %+v, want one move", p)
	}
	var states []string
	var done protocol.MoveOutcome
	for len(states) < 2 {
		kind, _, out := plans.next(t, 5*time.Second)
		if kind != protocol.PlanKindMove {
			t.Fatalf("a plan came between a move's start and end")
		}
		states = append(states, out.State)
		done = out
	}
	if want := []string{protocol.MoveStarted, protocol.MoveDone}; !slices.Equal(states, want) {
		t.Fatalf("got outcomes %v, want %v", states, want)
	}
	if done.Plan != p.ID || done.Move != p.Moves[0].ID || done.Executor != "stand-in" || done.DurationMS != 1500 || done.DowntimeMS != 40 {
		t.Errorf("got outcome %+v, want plan %s move %s by stand-in, 1500 ms, 40 ms down", done, p.ID, p.Moves[0].ID)
	}
	if got, want := ex.Calls(), []string{"hog a->b"}; !slices.Equal(got, want) {
		t.Errorf("got calls %v, want %v", got, want)
	}
	t.Run("later cycles before the relay reports do not relieve a again", func(t *testing.T) {
		waitCycles(t, js, 3)
		if got, want := ex.Calls(), []string{"hog a->b"}; !slices.Equal(got, want) {
			t.Errorf("got calls %v, want %v", got, want)
		}
	})
}

func TestAFailedMoveIsNotRetried(t *testing.T) {
	s, js := setup(t)
	publishFleet(t, js)
	plans := watchPlans(t, s)
	ex := &standIn{fail: map[string]error{"hog": errors.New("migration cancelled by the stand-in")}}
	startDaemon(t, s, Config{Name: "sched-a", Mode: protocol.ModeExecute, Executor: ex})
	if out := plans.nextFailure(t, 10*time.Second); !strings.Contains(out.Error, "cancelled by the stand-in") || !slices.Equal(out.VMs, []string{"hog"}) {
		t.Errorf("got failure %+v, want hog with the executor's error", out)
	}
	waitCycles(t, js, 4)
	n := 0
	for _, c := range ex.Calls() {
		if strings.HasPrefix(c, "hog ") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("hog was tried %d times, want once: %v", n, ex.Calls())
	}
}

func TestMovedTimesSurviveARestart(t *testing.T) {
	s, js := setup(t)
	publishFleet(t, js)
	ex := &standIn{}
	first := startDaemon(t, s, Config{Name: "sched-a", Mode: protocol.ModeExecute, Executor: ex})
	for deadline := time.Now().Add(5 * time.Second); len(ex.Calls()) == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first scheduler moved nothing")
		}
	}
	first.stop()

	// The relay has not reported since, so the samples still show hog on
	// a: only its record tells the next scheduler it is on b now.
	plans := watchPlans(t, s)
	ex2 := &standIn{}
	startDaemon(t, s, Config{Name: "sched-b", Mode: protocol.ModeExecute, Executor: ex2})
	p := plans.nextPlan(t, 5*time.Second)
	if p.Scheduler != "sched-b" {
		t.Fatalf("got a plan from %s, want sched-b", p.Scheduler)
	}
	if len(p.Moves) != 0 {
		t.Errorf("the restarted scheduler plans %+v, want nothing: hog is on b since its move", p.Moves)
	}
	waitCycles(t, js, 2)
	if got := ex2.Calls(); len(got) != 0 {
		t.Errorf("the restarted scheduler called the executor: %v", got)
	}
}

func TestOneSchedulerActsAndAnotherTakesOver(t *testing.T) {
	s, js := setup(t)
	publishFleet(t, js)
	plans := watchPlans(t, s)
	a := startDaemon(t, s, Config{Name: "sched-a"})
	first := plans.nextPlan(t, 5*time.Second)
	if first.Scheduler != "sched-a" {
		t.Fatalf("got the first plan from %s, want sched-a", first.Scheduler)
	}
	b := startDaemon(t, s, Config{Name: "sched-b"})
	waitCycles(t, js, 3)
	if st, _ := ReadStatus(t.Context(), js); st.Scheduler != "sched-a" {
		t.Fatalf("sched-b acted while sched-a held the lease: %+v", st)
	}

	// sched-a loses NATS without giving the lease up: sched-b must wait
	// for the lease to expire, then plan.
	a.nc.Close()
	lost := time.Now()
	p := plans.nextPlan(t, 5*time.Second)
	took := time.Since(lost)
	if p.Scheduler != "sched-b" {
		t.Fatalf("got a plan from %s, want sched-b", p.Scheduler)
	}
	ttl := time.Duration(fastFile().Lease.TTL)
	if limit := ttl + ttl/3 + 500*time.Millisecond; took > limit {
		t.Errorf("sched-b took over after %v, want at most %v", took, limit)
	}
	_ = b
}

func TestARaisedHintPlansSoon(t *testing.T) {
	s, js := setup(t)
	publishFleet(t, js)
	plans := watchPlans(t, s)
	f := fastFile()
	f.Interval = Duration(time.Hour)
	c := startCollector(t, s)
	startDaemon(t, s, Config{Name: "sched-a", File: f})
	if p := plans.nextPlan(t, 5*time.Second); len(p.Moves) != 1 {
		t.Fatalf("got the first plan %+v, want hog's move", p)
	}
	// The real collector marks the drain in its host bucket and raises
	// the evacuate hint, which prompts the cycle.
	drain(t, c, "a")
	p := plans.nextPlan(t, 3*time.Second)
	if vms, want := movedVMs(t, p, "a"), []string{"hog", "small"}; !slices.Equal(vms, want) {
		t.Errorf("draining a moves %v, want %v", vms, want)
	}
}

func TestAChunkWhoseVMFailsIsMovedBack(t *testing.T) {
	s, js := setup(t)
	publishFleet(t, js)
	plans := watchPlans(t, s)
	f := fastFile()
	f.Chunks = map[string][]string{"shop": {"hog", "small"}}
	ex := &standIn{fail: map[string]error{"small": errors.New("stand-in refuses small")}}
	startDaemon(t, s, Config{Name: "sched-a", Mode: protocol.ModeExecute, Executor: ex, File: f})
	out := plans.nextFailure(t, 10*time.Second)
	if !strings.Contains(out.Error, "small: stand-in refuses small") || !strings.Contains(out.Error, "hog moved back to a") {
		t.Errorf("got error %q, want small's failure and hog moved back", out.Error)
	}
	if got, want := ex.Calls(), []string{"hog a->b", "small a->b", "hog b->a"}; !slices.Equal(got, want) {
		t.Errorf("got calls %v, want %v", got, want)
	}
}

func TestChunksFromLibvirtMoveWhole(t *testing.T) {
	s, js := setup(t)
	publishFleet(t, js)
	plans := watchPlans(t, s)
	// A stand-in for virsh (libvirt is not installed here): hog and
	// small share host a's isolated network backend.
	var rounds atomic.Int32
	virsh := backendVirsh(func() bool { return true }, &rounds)
	startDaemon(t, s, Config{Name: "sched-a", Virsh: virsh})
	p := plans.nextPlan(t, 5*time.Second)
	if len(p.Moves) != 1 || p.Moves[0].Chunk != "a/net/backend" || !slices.Equal(p.Moves[0].VMs, []string{"hog", "small"}) {
		t.Errorf("got moves %+v, want hog and small as the chunk a/net/backend", p.Moves)
	}
}
