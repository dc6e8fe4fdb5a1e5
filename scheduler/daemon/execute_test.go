package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/protocol"
	"github.com/guestdiag/guestdiag/scheduler/executor"
)

// script is a stand-in executor (there is no hypervisor in these tests)
// that plays a part per VM: it records each call, noting one whose
// context had already ended, runs the VM's hook, then fails the VM, or
// blocks until its context ends.
type script struct {
	mu    sync.Mutex
	calls []string // "vm from->to", with " (context ended)" when it had
	hook  map[string]func()
	fail  map[string]error
	block map[string]bool
	ended chan string // gets each blocked VM whose context ended
}

func (s *script) Name() string { return "stand-in" }

func (s *script) Migrate(ctx context.Context, vm, from, to string) (executor.Result, error) {
	call := vm + " " + from + "->" + to
	if ctx.Err() != nil {
		call += " (context ended)"
	}
	s.mu.Lock()
	s.calls = append(s.calls, call)
	s.mu.Unlock()
	if ctx.Err() != nil {
		return executor.Result{}, ctx.Err()
	}
	if h := s.hook[vm]; h != nil {
		h()
	}
	if s.block[vm] {
		<-ctx.Done()
		s.ended <- vm
		return executor.Result{}, fmt.Errorf("stand-in stopped: %w", ctx.Err())
	}
	if err := s.fail[vm]; err != nil {
		return executor.Result{}, err
	}
	return executor.Result{Duration: time.Second}, nil
}

func (s *script) Calls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

func waitCalls(t *testing.T, ex *script, n int) []string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); len(ex.Calls()) < n; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the executor got calls %v in 10 s, want %d", ex.Calls(), n)
		}
	}
	return ex.Calls()
}

func readRecord(t *testing.T, js jetstream.JetStream, vm string) VMRecord {
	t.Helper()
	kv, err := js.KeyValue(t.Context(), StateBucket)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(t.Context(), vmKey(vm))
	if err != nil {
		t.Fatalf("record of %s: %v", vm, err)
	}
	var r VMRecord
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestAVMThatMayHaveMovedKeepsItsChunkWhereItIs(t *testing.T) {
	s, js := setup(t)
	publishFleet(t, js)
	plans := watchPlans(t, s)
	f := fastFile()
	f.Chunks = map[string][]string{"shop": {"hog", "small"}}
	ex := &script{fail: map[string]error{"small": fmt.Errorf("stand-in: completed, destination not confirmed: %w", executor.ErrMovedUnconfirmed)}}
	startDaemon(t, s, Config{Name: "sched-a", Mode: protocol.ModeExecute, Executor: ex, File: f})
	out := plans.nextFailure(t, 10*time.Second)
	if !strings.Contains(out.Error, "small may be on b") || !strings.Contains(out.Error, "nothing moved back") {
		t.Errorf("got error %q, want it to say small may be on b and nothing was moved back", out.Error)
	}
	if got, want := ex.Calls(), []string{"hog a->b", "small a->b"}; !slices.Equal(got, want) {
		t.Errorf("got calls %v, want %v: moving hog back would split the chunk", got, want)
	}
	for _, vm := range []string{"hog", "small"} {
		r := readRecord(t, js, vm)
		if r.To != "b" || !r.HoldUntil.After(time.Now()) || !r.InFlight.IsZero() {
			t.Errorf("record of %s is %+v, want it on b, held, no migration in flight", vm, r)
		}
	}
}

func TestAChunkIsMovedBackEvenWhenTheSchedulerStops(t *testing.T) {
	s, js := setup(t)
	publishFleet(t, js)
	f := fastFile()
	f.Chunks = map[string][]string{"shop": {"hog", "small"}}
	var r *running
	started := make(chan struct{})
	ex := &script{
		// The scheduler is told to stop while small fails.
		hook: map[string]func(){"small": func() { <-started; r.cancel() }},
		fail: map[string]error{"small": fmt.Errorf("stand-in refuses small")},
	}
	r = startDaemon(t, s, Config{Name: "sched-a", Mode: protocol.ModeExecute, Executor: ex, File: f})
	close(started)
	<-r.done
	r.done = nil
	if got, want := ex.Calls(), []string{"hog a->b", "small a->b", "hog b->a"}; !slices.Equal(got, want) {
		t.Errorf("got calls %v, want %v: hog moved back with a live context", got, want)
	}
	if rec := readRecord(t, js, "hog"); rec.To != "a" || !rec.HoldUntil.After(time.Now()) {
		t.Errorf("hog's record is %+v, want it back on a and held", rec)
	}
}

func TestAHolderThatLosesTheLeaseMidMoveStops(t *testing.T) {
	s, js := setup(t)
	publishFleet(t, js)
	plans := watchPlans(t, s)
	exA := &script{block: map[string]bool{"hog": true}, ended: make(chan string, 1)}
	a := startDaemon(t, s, Config{Name: "sched-a", Mode: protocol.ModeExecute, Executor: exA})
	waitCalls(t, exA, 1)
	exB := &script{}
	startDaemon(t, s, Config{Name: "sched-b", Mode: protocol.ModeExecute, Executor: exB})

	// sched-a is cut off from NATS while hog migrates: its lease ends,
	// and so must the migration, though MigrateTimeout is 30 minutes.
	a.nc.Close()
	ttl := time.Duration(fastFile().Lease.TTL)
	select {
	case <-exA.ended:
	case <-time.After(3 * ttl):
		t.Fatalf("sched-a's migration of hog still runs %v after it lost NATS, want it stopped once the lease is lost", 3*ttl)
	}
	var p protocol.Plan
	for p.Scheduler != "sched-b" {
		p = plans.nextPlan(t, 5*time.Second)
	}
	for _, m := range p.Moves {
		if slices.Contains(m.VMs, "hog") {
			t.Errorf("sched-b plans %+v, want hog left alone: sched-a's migration of it did not settle", m)
		}
	}
	waitCycles(t, js, 3)
	for _, c := range exB.Calls() {
		if strings.HasPrefix(c, "hog ") {
			t.Errorf("sched-b migrated hog (%s), want it left alone", c)
		}
	}
	if rec := readRecord(t, js, "hog"); rec.InFlightBy != "sched-a" || rec.InFlightTo != "b" {
		t.Errorf("hog's record is %+v, want sched-a's migration to b in flight", rec)
	}
}
