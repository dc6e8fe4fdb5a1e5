//go:build linux

package vmlab_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/protocol"
	"github.com/guestdiag/guestdiag/scheduler/daemon"
	"github.com/guestdiag/guestdiag/scheduler/executor"
)

// placementLog keeps the hints, plans and move outcomes published, each
// with when this test received it, for the hint→plan→done latencies.
type placementLog struct {
	mu       sync.Mutex
	hints    []received[protocol.Hint]
	plans    []received[protocol.Plan]
	outcomes []received[protocol.MoveOutcome]
}

type received[T any] struct {
	at  time.Time
	msg T
}

func subscribePlacement(t *testing.T, nc *nats.Conn) *placementLog {
	t.Helper()
	l := &placementLog{}
	hints, err := nc.Subscribe(protocol.SubjectPrefix+".hint.*", func(m *nats.Msg) {
		var h protocol.Hint
		if json.Unmarshal(m.Data, &h) == nil {
			l.mu.Lock()
			l.hints = append(l.hints, received[protocol.Hint]{time.Now(), h})
			l.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	onPlan := func(m *nats.Msg) {
		var kind struct {
			Kind string `json:"kind"`
		}
		if json.Unmarshal(m.Data, &kind) != nil {
			return
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		switch kind.Kind {
		case protocol.PlanKindPlan:
			var p protocol.Plan
			if json.Unmarshal(m.Data, &p) == nil {
				l.plans = append(l.plans, received[protocol.Plan]{time.Now(), p})
			}
		case protocol.PlanKindMove:
			var o protocol.MoveOutcome
			if json.Unmarshal(m.Data, &o) == nil {
				l.outcomes = append(l.outcomes, received[protocol.MoveOutcome]{time.Now(), o})
			}
		}
	}
	// Plans and each move's outcomes have subjects of their own.
	plans, err := nc.Subscribe(protocol.PlanSubject, onPlan)
	if err != nil {
		t.Fatal(err)
	}
	outcomes, err := nc.Subscribe(protocol.OutcomeSubjects, onPlan)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hints.Unsubscribe(); plans.Unsubscribe(); outcomes.Unsubscribe() })
	return l
}

// hint returns the first hint of kind for host in state (raised or
// cleared) received after since.
func (l *placementLog) hint(host string, kind protocol.HintKind, state string, since time.Time) (received[protocol.Hint], error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, h := range l.hints {
		if h.msg.Host == host && h.msg.Kind == kind && h.msg.State == state && h.at.After(since) {
			return h, nil
		}
	}
	return received[protocol.Hint]{}, fmt.Errorf("no %s hint %s for %s among %d hints", kind, state, host, len(l.hints))
}

// planMoving returns the first plan with a move from from to to.
func (l *placementLog) planMoving(from, to string) (received[protocol.Plan], protocol.PlanMove, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.plans {
		for _, mv := range p.msg.Moves {
			if mv.From == from && mv.To == to {
				return p, mv, nil
			}
		}
	}
	return received[protocol.Plan]{}, protocol.PlanMove{}, fmt.Errorf("no plan moving %s→%s among %d plans", from, to, len(l.plans))
}

// outcome returns the first outcome of move in state.
func (l *placementLog) outcome(move, state string) (received[protocol.MoveOutcome], error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, o := range l.outcomes {
		if o.msg.Move == move && o.msg.State == state {
			return o, nil
		}
		if o.msg.Move == move && o.msg.State == protocol.MoveFailed && state != protocol.MoveFailed {
			return o, fmt.Errorf("move %s failed: %s", move, o.msg.Error)
		}
	}
	return received[protocol.MoveOutcome]{}, fmt.Errorf("no %s outcome of move %s among %d outcomes", state, move, len(l.outcomes))
}

// movesAfter lists the moves of plans received after t.
func (l *placementLog) movesAfter(t time.Time) []protocol.PlanMove {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []protocol.PlanMove
	for _, p := range l.plans {
		if p.at.After(t) {
			out = append(out, p.msg.Moves...)
		}
	}
	return out
}

// plansAfter counts the plans received after t.
func (l *placementLog) plansAfter(t time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(slices.DeleteFunc(slices.Clone(l.plans), func(p received[protocol.Plan]) bool { return !p.at.After(t) }))
}

// startPlacementScheduler runs the scheduler daemon in execute mode with
// ex until the test ends, with the lab's hosts' band (low 10 %, high
// 70 %), cycles every 3 s and a demand window of 15 s of the relays' 1 s
// samples, and returns its state bucket. The cool-down is short (10 s), so
// that nothing moving back later is the load's doing, not the
// cool-down's.
func startPlacementScheduler(t *testing.T, nc *nats.Conn, ex executor.Executor) jetstream.KeyValue {
	t.Helper()
	f := daemon.Defaults()
	f.HintDelay = daemon.Duration(2 * time.Second)
	f.Demand.Window = daemon.Duration(15 * time.Second)
	f.Defaults.CPU = &daemon.BandSpec{Low: 10, High: placementHighPct}
	f.Planner.Cooldown = daemon.Duration(10 * time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- daemon.Run(ctx, nc, daemon.Config{Name: "lab", Mode: protocol.ModeExecute, Interval: 3 * time.Second, File: f, Executor: ex, Logger: testLogger(t, "scheduler")})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("scheduler: %v", err)
		}
	})
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var kv jetstream.KeyValue
	eventually(t, t.Context(), 30*time.Second, "the scheduler's state bucket", func(ctx context.Context) error {
		kv, err = js.KeyValue(ctx, daemon.StateBucket)
		return err
	})
	return kv
}

// waitCycles waits for n scheduler cycles from now, counted by the plan id
// in its status, and returns how many it saw.
func waitCycles(t *testing.T, ctx context.Context, kv jetstream.KeyValue, n int) int {
	t.Helper()
	seen := map[string]bool{}
	first := ""
	eventually(t, ctx, time.Minute, fmt.Sprintf("%d scheduler cycles", n), func(ctx context.Context) error {
		e, err := kv.Get(ctx, daemon.StatusKey)
		if err != nil {
			return err
		}
		var st daemon.Status
		if err := json.Unmarshal(e.Value(), &st); err != nil {
			return err
		}
		if first == "" {
			first = st.Plan // the cycle already under way
		} else if st.Plan != first {
			seen[st.Plan] = true
		}
		if len(seen) < n {
			return fmt.Errorf("%d cycles so far", len(seen))
		}
		return nil
	})
	return len(seen)
}

// fetchPage reads a dashboard page.
func fetchPage(t *testing.T, ctx context.Context, url string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v", url, resp.Status, err)
	}
	return string(b)
}
