package collector_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/protocol"
)

// published is one alert message seen on guestdiag.alert.>.
type published struct {
	subject string
	alert   collector.Alert
}

// alertSub collects every alert message published on core NATS.
type alertSub struct {
	mu  sync.Mutex
	got []published
}

func (e *env) subscribeAlerts(t *testing.T) *alertSub {
	t.Helper()
	s := &alertSub{}
	sub, err := e.nc.Subscribe("guestdiag.alert.>", func(m *nats.Msg) {
		var a collector.Alert
		if err := json.Unmarshal(m.Data, &a); err != nil {
			t.Errorf("alert on %s does not decode: %v", m.Subject, err)
			return
		}
		s.mu.Lock()
		s.got = append(s.got, published{m.Subject, a})
		s.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *alertSub) all() []published {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]published(nil), s.got...)
}

// waitN polls until at least n alerts of code were published and returns
// those.
func (s *alertSub) waitN(t *testing.T, code string, n int, within time.Duration) []published {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var of []published
		for _, p := range s.all() {
			if p.alert.Key.Code == code {
				of = append(of, p)
			}
		}
		if len(of) >= n {
			return of
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %d %s alerts; got %d: %s", n, code, len(of), states(of))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func withFindings(e protocol.Envelope, fs ...protocol.Finding) protocol.Envelope {
	e.Findings = fs
	return e
}

func states(ps []published) string {
	var s string
	for _, p := range ps {
		s += string(p.alert.State)
		if p.alert.Flapping {
			s += "(flapping)"
		}
		s += " "
	}
	return s
}

var gatewayDown = protocol.Finding{Code: "net.gateway_unreachable", Severity: protocol.SeverityCrit, Message: "gateway 10.0.2.2 on eth0 answered 0 of 3 pings", Source: "eth0"}

func TestAlertFiresOnceWithItsResolutionAndResolves(t *testing.T) {
	e := newEnv(t)
	sub := e.subscribeAlerts(t)
	col := e.startCollector(t)
	h1 := e.relay(t, "h1")

	h1.guest("web1", "u1", hello("r1", 1, "web1", t0), t0)
	h1.guest("web1", "u1", withFindings(result("r1", 2, "network", protocol.StatusCrit, t0), gatewayDown), t0.Add(time.Second))
	h1.guest("web1", "u1", withFindings(result("r1", 3, "network", protocol.StatusCrit, t0), gatewayDown), t0.Add(2*time.Second))
	fired := sub.waitN(t, "net.gateway_unreachable", 1, 5*time.Second)[0]

	a := fired.alert
	if want := protocol.AlertSubject("crit", "h1", "web1"); fired.subject != want {
		t.Errorf("subject: got %s, want %s", fired.subject, want)
	}
	if a.State != collector.AlertFiring || a.Severity != "crit" || a.Key.Source != "eth0" || a.Key.Check != "network" {
		t.Errorf("fired alert: got %s %s key %+v, want firing crit on network/eth0", a.State, a.Severity, a.Key)
	}
	if len(a.KB) == 0 || a.KB[0].ID != "guestdiag.net.gateway_unreachable" || len(a.KB[0].Resolution) == 0 {
		t.Fatalf("KB matches: got %+v, want guestdiag.net.gateway_unreachable with its resolution", a.KB)
	}
	if want := a.KB[0].Title + " on web1 (h1)"; a.Summary != want {
		t.Errorf("summary: got %q, want %q", a.Summary, want)
	}
	wantLabels := map[string]string{"alertname": "net.gateway_unreachable", "host": "h1", "vm": "web1", "check": "network", "severity": "crit", "source": "eth0", "kb_id": "guestdiag.net.gateway_unreachable"}
	if fmt.Sprint(a.Labels) != fmt.Sprint(wantLabels) {
		t.Errorf("labels: got %v, want %v", a.Labels, wantLabels)
	}
	if a.Evidence.Finding.Message != gatewayDown.Message || a.Pending {
		t.Errorf("evidence: got %+v (pending %v), want the finding, not pending", a.Evidence.Finding, a.Pending)
	}

	h1.guest("web1", "u1", result("r1", 4, "network", protocol.StatusOK, t0), t0.Add(3*time.Second))
	both := sub.waitN(t, "net.gateway_unreachable", 2, 5*time.Second)
	r := both[1].alert
	if r.State != collector.AlertResolved || r.Fingerprint != a.Fingerprint || r.EndsAt.IsZero() || !r.StartsAt.Equal(a.StartsAt) {
		t.Errorf("resolution: got %s fingerprint %s ends %v starts %v, want resolved, same fingerprint and start", r.State, r.Fingerprint, r.EndsAt, r.StartsAt)
	}
	e.waitConsumerIdle(t)
	if got := states(sub.waitN(t, "net.gateway_unreachable", 2, 0)); got != "firing resolved " {
		t.Errorf("published: got %q, want one firing and one resolved (the repeated finding is no news)", got)
	}

	resp, err := http.Get(col.api + "/api/alerts?state=resolved&host=h1")
	if err != nil {
		t.Fatal(err)
	}
	var list []collector.Alert
	err = json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if err != nil || len(list) != 1 || list[0].Fingerprint != a.Fingerprint {
		t.Errorf("GET /api/alerts?state=resolved: got %+v (%v), want the resolved alert", list, err)
	}
	tl := col.c.Timeline("h1", "web1")
	var kinds string
	for _, ev := range tl {
		kinds += ev.Kind + " "
	}
	if want := "alert status alert status hello "; kinds != want {
		t.Errorf("timeline kinds, newest first: got %q, want %q (%+v)", kinds, want, tl)
	}
}

func TestFlappingConditionStaysOneAlert(t *testing.T) {
	e := newEnv(t)
	sub := e.subscribeAlerts(t)
	col := e.startCollectorWith(t, collector.Config{Policy: collector.Policy{FlapCount: 4, FlapWindow: 2 * time.Second}})
	h1 := e.relay(t, "h1")

	seq := uint64(0)
	for i := range 6 {
		seq++
		r := result("r1", seq, "network", protocol.StatusOK, t0)
		if i%2 == 0 {
			r = withFindings(result("r1", seq, "network", protocol.StatusCrit, t0), gatewayDown)
		}
		h1.guest("web1", "u1", r, t0.Add(time.Duration(seq)*time.Second))
	}
	e.waitConsumerIdle(t)
	got := sub.waitN(t, "net.gateway_unreachable", 4, 5*time.Second)
	if s := states(got); s != "firing resolved firing firing(flapping) " {
		t.Errorf("published while toggling: got %q, want fire, resolve, fire, then flapping", s)
	}
	if as := col.c.Alerts(collector.AlertFilter{Code: "net.gateway_unreachable"}); len(as) != 1 || as[0].State != collector.AlertFiring || !as[0].Flapping {
		t.Errorf("alerts: got %+v, want one firing flapping alert", as)
	}
	got = sub.waitN(t, "net.gateway_unreachable", 5, 6*time.Second)
	if last := got[4].alert; last.State != collector.AlertResolved || last.Flapping {
		t.Errorf("after a clear window: got %s flapping %v, want resolved", last.State, last.Flapping)
	}
	// The VM's messages carry old relay times, so the sweep also finds
	// its agent silent; only the gateway alert is counted here.
	if all := sub.waitN(t, "net.gateway_unreachable", 5, 0); len(all) != 5 {
		t.Errorf("gateway alert messages: got %d (%s), want 5", len(all), states(all))
	}
}

func TestLongFiringAlertIsNotifiedAgain(t *testing.T) {
	e := newEnv(t)
	sub := e.subscribeAlerts(t)
	e.startCollectorWith(t, collector.Config{Policy: collector.Policy{Renotify: time.Second}})
	h1 := e.relay(t, "h1")

	h1.guest("web1", "u1", withFindings(result("r1", 1, "network", protocol.StatusCrit, t0), gatewayDown), t0)
	got := sub.waitN(t, "net.gateway_unreachable", 3, 6*time.Second)
	for i, p := range got[:3] {
		if p.alert.State != collector.AlertFiring || p.alert.Seq != uint64(i+1) || p.alert.Fingerprint != got[0].alert.Fingerprint {
			t.Errorf("notification %d: got %s seq %d, want firing seq %d of the same alert", i, p.alert.State, p.alert.Seq, i+1)
		}
	}
	if gap := got[2].alert.Notified.Sub(got[1].alert.Notified); gap < time.Second {
		t.Errorf("re-notifications %v apart, want at least the 1s interval", gap)
	}
}

// liveHello is a hello of an agent that heartbeats every second and runs
// network every second, as the collector's silence and staleness
// detection read it.
func liveHello(run string, seq uint64, ts time.Time) protocol.Envelope {
	data, _ := json.Marshal(protocol.Hello{Hostname: "web1", OS: "linux", AgentVersion: "0.1.0", Checks: []string{"network"},
		HeartbeatS: 1, Intervals: map[string]uint32{"network": 1}})
	return protocol.Envelope{V: 1, Kind: protocol.KindHello, Run: run, Seq: seq, TS: ts, Data: data}
}

func TestSilentAgentRaisesAgentSilentUntilItSpeaks(t *testing.T) {
	e := newEnv(t)
	sub := e.subscribeAlerts(t)
	e.startCollector(t)
	h1 := e.relay(t, "h1")

	now := time.Now().UTC()
	h1.channel("web1", "u1", protocol.ChannelConnected, now)
	h1.guest("web1", "u1", liveHello("r1", 1, now), now)
	h1.guest("web1", "u1", result("r1", 2, "network", protocol.StatusOK, now), now)
	fired := sub.waitN(t, collector.CodeAgentSilent, 1, 8*time.Second)[0].alert
	if fired.State != collector.AlertFiring || fired.Severity != "crit" {
		t.Errorf("agent_silent: got %s %s, want firing crit", fired.State, fired.Severity)
	}
	if since := time.Since(now); since < 3*time.Second {
		t.Errorf("agent_silent fired %v after the last message, want at least 3 heartbeats (3s)", since)
	}
	h1.guest("web1", "u1", heartbeat("r1", 3, time.Now()), time.Now().UTC())
	if got := sub.waitN(t, collector.CodeAgentSilent, 2, 5*time.Second)[1].alert; got.State != collector.AlertResolved {
		t.Errorf("after a heartbeat: got %s, want resolved", got.State)
	}
	for _, p := range sub.all() {
		if p.alert.Key.Code == collector.CodeAgentSilent && p.alert.State == collector.AlertResolved {
			break
		}
		if p.alert.Key.Code == collector.CodeCheckStale {
			t.Errorf("check.stale raised while the agent was silent: %+v", p.alert)
		}
	}
}

func TestChannelDownFiresAfterTheGraceAndResolvesOnConnect(t *testing.T) {
	e := newEnv(t)
	sub := e.subscribeAlerts(t)
	e.startCollectorWith(t, collector.Config{ChannelGrace: time.Second})
	h1 := e.relay(t, "h1")

	now := time.Now().UTC()
	h1.channel("web1", "u1", protocol.ChannelConnected, now)
	h1.guest("web1", "u1", liveHello("r1", 1, now), now)
	h1.channel("web1", "u1", protocol.ChannelDisconnected, now.Add(time.Millisecond))
	fired := sub.waitN(t, collector.CodeChannelDown, 1, 5*time.Second)[0].alert
	if since := time.Since(now); since < time.Second {
		t.Errorf("channel_down fired %v after the disconnect, before the 1s grace", since)
	}
	if fired.Severity != "warn" || fired.Key.Check != "" {
		t.Errorf("channel_down: got %s on check %q, want warn on the VM", fired.Severity, fired.Key.Check)
	}
	h1.channel("web1", "u1", protocol.ChannelConnected, time.Now().UTC())
	h1.guest("web1", "u1", heartbeat("r1", 2, time.Now()), time.Now().UTC())
	if got := sub.waitN(t, collector.CodeChannelDown, 2, 5*time.Second)[1].alert; got.State != collector.AlertResolved {
		t.Errorf("after connect: got %s, want resolved", got.State)
	}
	for _, p := range sub.all() {
		if c := p.alert.Key.Code; c == collector.CodeAgentSilent || c == collector.CodeCheckStale {
			t.Errorf("%s raised while the channel was down: %+v", c, p.alert)
		}
	}
}

func TestStaleCheckFiresWhileHeartbeatsArrive(t *testing.T) {
	e := newEnv(t)
	sub := e.subscribeAlerts(t)
	e.startCollector(t)
	h1 := e.relay(t, "h1")

	now := time.Now().UTC()
	h1.channel("web1", "u1", protocol.ChannelConnected, now)
	h1.guest("web1", "u1", liveHello("r1", 1, now), now)
	h1.guest("web1", "u1", result("r1", 2, "network", protocol.StatusOK, now), now)
	ctx, cancel := context.WithCancel(context.Background())
	beating := make(chan struct{})
	seq := uint64(2)
	go func() {
		defer close(beating)
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				seq++
				h1.guest("web1", "u1", heartbeat("r1", seq, time.Now()), time.Now().UTC())
			}
		}
	}()
	fired := sub.waitN(t, collector.CodeCheckStale, 1, 8*time.Second)[0].alert
	cancel()
	<-beating
	if fired.Key.Check != "network" || fired.State != collector.AlertFiring {
		t.Errorf("stale: got %s on %q, want firing on network", fired.State, fired.Key.Check)
	}
	seq++
	h1.guest("web1", "u1", result("r1", seq, "network", protocol.StatusOK, time.Now()), time.Now().UTC())
	if got := sub.waitN(t, collector.CodeCheckStale, 2, 5*time.Second)[1].alert; got.State != collector.AlertResolved {
		t.Errorf("after the check reported: got %s, want resolved", got.State)
	}
	for _, p := range sub.all() {
		if p.alert.Key.Code == collector.CodeAgentSilent {
			t.Errorf("agent_silent raised while heartbeats arrived: %+v", p.alert)
		}
	}
}

func TestHeartbeatsTakenByAnotherCollectorKeepAnAgentFromGoingSilent(t *testing.T) {
	e := newEnv(t)
	sub := e.subscribeAlerts(t)
	viewer := e.startCollectorWith(t, collector.Config{Durable: "viewer"})
	h1 := e.relay(t, "h1")

	now := time.Now().UTC()
	h1.channel("web1", "u1", protocol.ChannelConnected, now)
	h1.guest("web1", "u1", liveHello("r1", 1, now), now)
	h1.guest("web1", "u1", result("r1", 2, "network", protocol.StatusOK, now), now)
	viewer.waitFor(t, "the viewer to hold web1's result", func(vms map[string]collector.VM) bool {
		return checkSeq(vms, "h1/web1", "network") == 2
	})
	// From here on only the other collector reads the stream: whatever the
	// viewer knows of web1's heartbeats it learns from the liveness bucket.
	if _, err := e.js.PauseConsumer(t.Context(), "GUESTDIAG", "viewer", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	e.startCollectorWith(t, collector.Config{Durable: "taker"})

	seq := uint64(2)
	var worst time.Duration
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); {
		seq++
		sent := time.Now().UTC()
		h1.guest("web1", "u1", heartbeat("r1", seq, sent), sent)
		time.Sleep(300 * time.Millisecond) // the agent's pace, not a wait for state
		for _, v := range viewer.vms(t) {
			if v.Name == "web1" && v.Heartbeat != nil {
				worst = max(worst, time.Since(v.LastSeen))
			}
		}
	}
	if worst == 0 || worst > 2*time.Second {
		t.Errorf("last_seen in the viewer's API: at worst %v behind the newest heartbeat, want at most 2s", worst)
	}
	for _, p := range sub.all() {
		if p.alert.Key.Code == collector.CodeAgentSilent {
			t.Errorf("agent_silent %s (seq %d) while another collector took the heartbeats", p.alert.State, p.alert.Seq)
		}
	}
	if got := viewer.c.Stats().Applied; got != 3 {
		t.Fatalf("the viewer applied %d messages, want 3 (channel, hello, result): it read heartbeats itself, so this test proves nothing", got)
	}
	fired := sub.waitN(t, collector.CodeAgentSilent, 1, 8*time.Second)[0].alert
	if fired.State != collector.AlertFiring {
		t.Errorf("once the heartbeats stopped: got %s, want agent_silent firing", fired.State)
	}
}
