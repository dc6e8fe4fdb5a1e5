package collector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/protocol"
)

func TestCASDelayGrowsUpToItsCapWithJitter(t *testing.T) {
	tests := []struct {
		attempt int
		want    time.Duration // the delay before jitter
	}{
		{1, casBackoffMin},
		{2, 2 * casBackoffMin},
		{3, 4 * casBackoffMin},
		{7, casBackoffMax},
		{maxAttempts, casBackoffMax},
		{1 << 20, casBackoffMax},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("attempt %d waits between half and all of %v", tt.attempt, tt.want), func(t *testing.T) {
			seen := map[time.Duration]bool{}
			for range 200 {
				d := casDelay(tt.attempt)
				if d < tt.want/2 || d > tt.want {
					t.Fatalf("casDelay(%d): got %v, want within [%v, %v]", tt.attempt, d, tt.want/2, tt.want)
				}
				seen[d] = true
			}
			if len(seen) < 2 {
				t.Errorf("casDelay(%d): got %v every time, want jitter", tt.attempt, slices.Collect(maps.Keys(seen)))
			}
		})
	}
}

func TestStorePausesBetweenConflictingWrites(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(Config{}, nil, slog.New(slog.DiscardHandler))
		kv := newFakeKV()
		kv.conflict = true
		m := resultMsg(t, "resources", 1)
		u, err := decodeMessage(m.subject, m.data)
		if err != nil {
			t.Fatal(err)
		}

		_, err = c.store(t.Context(), fakeBackend(kv), u)
		if !errors.Is(err, jetstream.ErrKeyExists) {
			t.Errorf("store with every write conflicting: got %v, want ErrKeyExists", err)
		}
		if got := len(kv.writes); got != maxAttempts {
			t.Fatalf("writes: got %d, want %d", got, maxAttempts)
		}
		if got := c.Stats().Conflicts; got != maxAttempts {
			t.Errorf("conflicts counted: got %d, want %d", got, maxAttempts)
		}
		gaps := map[time.Duration]bool{}
		for i := 1; i < len(kv.writes); i++ {
			gap := kv.writes[i].Sub(kv.writes[i-1])
			full := min(casBackoffMin<<min(i-1, 16), casBackoffMax)
			if gap < full/2 || gap > full {
				t.Errorf("pause after conflict %d: got %v, want within [%v, %v]", i, gap, full/2, full)
			}
			if full == casBackoffMax {
				gaps[gap] = true
			}
		}
		if len(gaps) < 2 {
			t.Errorf("pauses at the cap: got only %v, want jitter", slices.Collect(maps.Keys(gaps)))
		}
	})
}

func TestStoreStopsPausingWhenCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(Config{}, nil, slog.New(slog.DiscardHandler))
		ctx, cancel := context.WithCancel(t.Context())
		kv := newFakeKV()
		kv.conflict = true
		kv.onWrite = func(n int) {
			if n == 3 {
				cancel()
			}
		}
		m := resultMsg(t, "resources", 1)
		u, err := decodeMessage(m.subject, m.data)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err = c.store(ctx, fakeBackend(kv), u)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("store cancelled while pausing: got %v, want context.Canceled", err)
		}
		if got := len(kv.writes); got != 3 {
			t.Errorf("writes: got %d, want 3 (none after the cancel)", got)
		}
		if got, want := time.Since(start), casBackoffMin+2*casBackoffMin; got > want {
			t.Errorf("store took %v, want at most the two pauses before the cancel, %v", got, want)
		}
	})
}

func TestRetryBacksOffAndStartsOverAfterALongRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs bytes.Buffer
		c := New(Config{}, nil, slog.New(slog.NewJSONHandler(&logs, nil)))
		ctx, cancel := context.WithCancel(t.Context())
		// How long each run lasts before it fails; the fourth ran well.
		runs := []time.Duration{0, 0, 0, setupBackoffMax + time.Second, 0, 0}
		var starts, ends []time.Time
		c.retry(ctx, "consumer_failed", func(ctx context.Context) error {
			starts = append(starts, time.Now())
			time.Sleep(runs[len(starts)-1]) // the run's work, on the bubble's clock
			ends = append(ends, time.Now())
			if len(starts) == len(runs) {
				cancel()
				return ctx.Err()
			}
			return errors.New("consumer deleted")
		})

		if len(starts) != len(runs) {
			t.Fatalf("runs: got %d, want %d", len(starts), len(runs))
		}
		want := []time.Duration{setupBackoffMin, 2 * setupBackoffMin, 4 * setupBackoffMin, setupBackoffMin, 2 * setupBackoffMin}
		var got []time.Duration
		for i := 1; i < len(starts); i++ {
			got = append(got, starts[i].Sub(ends[i-1]))
		}
		if !slices.Equal(got, want) {
			t.Errorf("waits between runs: got %v, want %v", got, want)
		}
		if n := bytes.Count(logs.Bytes(), []byte(`"msg":"consumer_failed"`)); n != len(runs)-1 {
			t.Errorf("consumer_failed lines: got %d, want %d (none for the cancelled run)\n%s", n, len(runs)-1, logs.String())
		}
	})
}

func TestRetryCapsItsWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(Config{}, nil, slog.New(slog.DiscardHandler))
		ctx, cancel := context.WithCancel(t.Context())
		var starts []time.Time
		c.retry(ctx, "consumer_failed", func(ctx context.Context) error {
			starts = append(starts, time.Now())
			if len(starts) == 12 {
				cancel()
			}
			return errors.New("no NATS")
		})
		if got := starts[11].Sub(starts[10]); got != setupBackoffMax {
			t.Errorf("wait after 10 failures: got %v, want %v", got, setupBackoffMax)
		}
	})
}

func TestRetryReturnsWhenCancelledWhileWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(Config{}, nil, slog.New(slog.DiscardHandler))
		ctx, cancel := context.WithTimeout(t.Context(), setupBackoffMin/2)
		defer cancel()
		start := time.Now()
		runs := 0
		c.retry(ctx, "consumer_failed", func(ctx context.Context) error {
			runs++
			return errors.New("no NATS")
		})
		if got := time.Since(start); got != setupBackoffMin/2 || runs != 1 {
			t.Errorf("retry cancelled in its first wait: returned after %v and %d runs, want %v and 1", got, runs, setupBackoffMin/2)
		}
	})
}

func TestWatchStartedAgainDropsRecordsDeletedMeanwhile(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(Config{}, nil, slog.New(slog.DiscardHandler))
		kv := newFakeKV()
		entry := func(name, uuid string, op jetstream.KeyValueOp) jetstream.KeyValueEntry {
			b, _ := json.Marshal(VM{Name: name, Host: "h1", UUID: uuid})
			return &fakeEntry{key: Key("h1", name), value: b, op: op}
		}
		first := &fakeWatcher{updates: make(chan jetstream.KeyValueEntry, 3)}
		first.updates <- entry("a", "u1", jetstream.KeyValuePut)
		first.updates <- entry("b", "u1", jetstream.KeyValuePut)
		first.updates <- nil
		close(first.updates)
		second := &fakeWatcher{updates: make(chan jetstream.KeyValueEntry)}
		kv.watchers = []*fakeWatcher{first, second}
		state := func() string {
			c.mu.RLock()
			defer c.mu.RUnlock()
			var s []string
			for _, k := range slices.Sorted(maps.Keys(c.vms)) {
				s = append(s, c.vms[k].Name+"="+c.vms[k].UUID)
			}
			return fmt.Sprintf("ready=%v %v", c.ready, s)
		}

		if err := c.watch(t.Context(), kv); err == nil {
			t.Fatal("watch of a watcher that closed: got nil, want an error")
		}
		if got, want := state(), "ready=true [a=u1 b=u1]"; got != want {
			t.Fatalf("after the first watch: got %s, want %s", got, want)
		}

		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- c.watch(ctx, kv) }()
		steps := []struct {
			name string
			send jetstream.KeyValueEntry
			want string
		}{
			{"the old view is served while the bucket is read again", entry("a", "u2", jetstream.KeyValuePut), "ready=true [a=u1 b=u1]"},
			{"the new view replaces it once read, without b", nil, "ready=true [a=u2]"},
			{"a later delete removes a record", entry("a", "", jetstream.KeyValueDelete), "ready=true []"},
			{"a later put adds one", entry("c", "u3", jetstream.KeyValuePut), "ready=true [c=u3]"},
		}
		for _, s := range steps {
			second.updates <- s.send
			synctest.Wait()
			if got := state(); got != s.want {
				t.Errorf("%s: got %s, want %s", s.name, got, s.want)
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watch after cancel: got %v, want nil", err)
		}
	})
}

func TestRefusedMessagesAreLoggedAtAMeasuredRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs bytes.Buffer
		c := New(Config{}, nil, slog.New(slog.NewJSONHandler(&logs, nil)))
		kv := newFakeKV()
		full := VM{Name: "web1", Host: "h1", Checks: map[string]*Check{}}
		for i := range maxChecksPerVM {
			full.Checks[fmt.Sprintf("check_%d", i)] = &Check{Status: "ok", Origin: Origin{Run: "run1", Seq: 1}}
		}
		kv.put(t, Key("h1", "web1"), full)
		lines := func(msg string) []map[string]any {
			var out []map[string]any
			for l := range bytes.Lines(logs.Bytes()) {
				var m map[string]any
				if err := json.Unmarshal(l, &m); err != nil {
					t.Fatalf("log line %q: %v", l, err)
				}
				if m["msg"] == msg {
					out = append(out, m)
				}
			}
			return out
		}

		const flood = 50
		for i := range flood {
			m := resultMsg(t, fmt.Sprintf("invented_%d", i), uint64(2+i))
			c.handle(t.Context(), fakeBackend(kv), m)
			if m.settled != "ack" {
				t.Fatalf("rejected message %d: settled %q, want ack", i, m.settled)
			}
		}
		if got := c.Stats().Rejected; got != flood {
			t.Errorf("rejected: got %d, want %d", got, flood)
		}
		if got := len(lines("message_rejected")); got != warnBurst {
			t.Errorf("message_rejected lines for %d refused messages at once: got %d, want %d", flood, got, warnBurst)
		}

		poison := &fakeMsg{subject: protocol.ReportSubject("h1", "web1", "resources"), data: []byte("not json")}
		c.handle(t.Context(), fakeBackend(kv), poison)
		if got := len(lines("poison_message")); got != 1 {
			t.Errorf("poison_message lines during a flood of rejections: got %d, want 1", got)
		}

		time.Sleep(warnEvery) // let the limiter refill, on the bubble's clock
		c.handle(t.Context(), fakeBackend(kv), resultMsg(t, "invented_late", 100))
		c.handle(t.Context(), fakeBackend(kv), resultMsg(t, "invented_later", 101))
		got := lines("message_rejected")
		if len(got) != warnBurst+1 {
			t.Fatalf("message_rejected lines a second later: got %d, want %d", len(got), warnBurst+1)
		}
		if n := got[warnBurst]["suppressed"]; n != float64(flood-warnBurst) {
			t.Errorf("suppressed in the next line: got %v, want %d", n, flood-warnBurst)
		}
		if _, ok := got[warnBurst-1]["suppressed"]; ok {
			t.Errorf("a line of the first burst says %v were suppressed, want no suppressed key", got[warnBurst-1]["suppressed"])
		}
	})
}

func TestStoreFromAWatchedCopyThatIsBehindReadsTheRecord(t *testing.T) {
	c := New(Config{}, nil, slog.New(slog.DiscardHandler))
	kv := newFakeKV()
	key := Key("h1", "web1")
	behind := VM{Name: "web1", Host: "h1"}
	kv.put(t, key, behind)
	c.vms[key], c.revs[key] = behind, 1
	// Another collector applied seq 5 since; the watcher has not said so.
	kv.put(t, key, VM{Name: "web1", Host: "h1", Checks: map[string]*Check{
		"resources": {Kind: protocol.KindResult, Status: protocol.StatusOK, Origin: Origin{Run: "run1", Seq: 5, Received: t0}},
	}})
	m := resultMsg(t, "resources", 3)
	u, err := decodeMessage(m.subject, m.data)
	if err != nil {
		t.Fatal(err)
	}

	out, err := c.store(t.Context(), fakeBackend(kv), u)
	if err != nil {
		t.Fatal(err)
	}
	if out != stale {
		t.Errorf("seq 3 after seq 5: got outcome %d, want stale (%d)", out, stale)
	}
	e, _ := kv.Get(t.Context(), key)
	var got VM
	if err := json.Unmarshal(e.Value(), &got); err != nil {
		t.Fatal(err)
	}
	if seq := got.Checks["resources"].Seq; seq != 5 || e.Revision() != 2 {
		t.Errorf("record: got seq %d at revision %d, want seq 5 at revision 2", seq, e.Revision())
	}
	// The copy made the result look like a status change, which is judged
	// on the record itself: it was read before anything was written.
	if got := len(kv.writes); got != 0 {
		t.Errorf("writes: got %d, want 0", got)
	}
}

func TestStoreFromACurrentWatchedCopyWritesOnceAndRemembers(t *testing.T) {
	c := New(Config{}, nil, slog.New(slog.DiscardHandler))
	kv := newFakeKV()
	key := Key("h1", "web1")
	cur := VM{Name: "web1", Host: "h1"}
	kv.put(t, key, cur)
	c.vms[key], c.revs[key] = cur, 1
	m := resultMsg(t, "resources", 3)
	u, err := decodeMessage(m.subject, m.data)
	if err != nil {
		t.Fatal(err)
	}

	if out, err := c.store(t.Context(), fakeBackend(kv), u); err != nil || out != applied {
		t.Fatalf("store: got %d, %v, want applied", out, err)
	}
	if got := len(kv.writes); got != 1 {
		t.Errorf("writes: got %d, want 1", got)
	}
	v, rev, ok := c.cached(key)
	if !ok || rev != 2 || v.Checks["resources"] == nil || v.Checks["resources"].Seq != 3 {
		t.Errorf("watched copy after the write: got rev %d, ok %v, checks %v; want rev 2 holding seq 3", rev, ok, v.Checks)
	}
	if cur.Checks != nil {
		t.Errorf("the copy the write started from was changed: %v", cur.Checks)
	}
}

func TestStoreFromAWatchedCopyThatIsBehindRetriesOnTheRecord(t *testing.T) {
	c := New(Config{}, nil, slog.New(slog.DiscardHandler))
	kv := newFakeKV()
	key := Key("h1", "web1")
	at := func(seq uint64) VM {
		return VM{Name: "web1", Host: "h1", Checks: map[string]*Check{
			"resources": {Kind: protocol.KindResult, Status: protocol.StatusOK, Origin: Origin{Run: "run1", Seq: seq, Received: t0}},
		}}
	}
	kv.put(t, key, at(1))
	c.vms[key], c.revs[key] = at(1), 1
	kv.put(t, key, at(2))
	m := resultMsg(t, "resources", 3)
	u, err := decodeMessage(m.subject, m.data)
	if err != nil {
		t.Fatal(err)
	}

	if out, err := c.store(t.Context(), fakeBackend(kv), u); err != nil || out != applied {
		t.Fatalf("store: got %d, %v, want applied", out, err)
	}
	e, _ := kv.Get(t.Context(), key)
	if got := e.Revision(); got != 3 {
		t.Errorf("record revision: got %d, want 3 (the write on revision 1 refused, the one on 2 taken)", got)
	}
	if got := c.Stats().Conflicts; got != 1 {
		t.Errorf("conflicts counted: got %d, want 1", got)
	}
}
