package collector_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/protocol"
)

// streamAlerts reads every alert message the GUESTDIAG stream kept.
func (e *env) streamAlerts(t *testing.T) []collector.Alert {
	return streamAll[collector.Alert](t, e, "guestdiag.alert.>")
}

// streamAll reads every message the GUESTDIAG stream kept on filter, as T.
func streamAll[T any](t *testing.T, e *env, filter string) []T {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, "GUESTDIAG")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		t.Fatal(err)
	}
	var want uint64
	for _, n := range info.State.Subjects {
		want += n
	}
	out := []T{}
	if want == 0 {
		return out
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		t.Fatal(err)
	}
	for uint64(len(out)) < want {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("reading message %d of %d on %s from the stream: %v", len(out)+1, want, filter, err)
		}
		var v T
		if err := json.Unmarshal(m.Data(), &v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

func TestTwoCollectorsOneKilledPublishEveryTransitionOnce(t *testing.T) {
	e := newEnv(t)
	sub := e.subscribeAlerts(t)
	first := e.startCollector(t)
	second := e.startCollector(t)
	h1 := e.relay(t, "h1")

	const vms = 200
	publish := func(from, to int, seq uint64, status protocol.Status) {
		for i := from; i < to; i++ {
			vm := fmt.Sprintf("vm%03d", i)
			r := result("r1", seq, "network", status, time.Now())
			if status == protocol.StatusCrit {
				r = withFindings(r, gatewayDown)
			}
			h1.guest(vm, "u-"+vm, r, time.Now().UTC())
		}
	}
	publish(0, vms, 1, protocol.StatusCrit)
	publish(0, vms/2, 2, protocol.StatusOK)
	// Kill one collector while both are busy with the stream.
	deadline := time.Now().Add(10 * time.Second)
	for len(sub.all()) < vms/3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	first.stop()
	killedAt := len(sub.all())
	publish(vms/2, vms, 2, protocol.StatusOK)
	e.waitConsumerIdle(t)
	// A transition whose record write landed while the killed collector
	// was stopping may wait for the survivor's sweep (20 s) to be
	// published: at least once, never lost.
	sub.waitN(t, "net.gateway_unreachable", 2*vms, 40*time.Second)
	t.Logf("killed one collector after %d alerts; survivor %+v", killedAt, second.c.Stats())

	type note struct {
		fp  string
		seq uint64
	}
	count := func(as []collector.Alert) map[note]int {
		n := map[note]int{}
		for _, a := range as {
			n[note{a.Fingerprint, a.Seq}]++
			if want := collector.AlertFiring; a.Seq == 1 && a.State != want || a.Seq == 2 && a.State != collector.AlertResolved || a.Seq > 2 {
				t.Errorf("alert %s notification %d: got %s", a.Key.VM, a.Seq, a.State)
			}
		}
		return n
	}
	var core []collector.Alert
	for _, p := range sub.all() {
		core = append(core, p.alert)
	}
	stored := count(e.streamAlerts(t))
	seen := count(core)
	if len(stored) != 2*vms || len(seen) != 2*vms {
		t.Errorf("distinct transitions: got %d in the stream and %d on NATS, want %d each", len(stored), len(seen), 2*vms)
	}
	for n, k := range stored {
		if k != 1 {
			t.Errorf("transition %+v kept %d times in the stream, want once", n, k)
		}
	}
	for n, k := range seen {
		if k != 1 {
			t.Errorf("transition %+v published %d times on NATS, want once", n, k)
		}
	}
	if got := len(second.c.Alerts(collector.AlertFilter{State: collector.AlertResolved})); got != vms {
		t.Errorf("resolved alerts in the survivor's view: got %d, want %d", got, vms)
	}
}
