package collector_test

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/protocol"
)

// firingOf returns the firing alerts of code in the collector's view.
func firingOf(c *collector.Collector, code string) []collector.Alert {
	return c.Alerts(collector.AlertFilter{State: collector.AlertFiring, Code: code})
}

func TestDeletedVMIsForgottenWithItsAlerts(t *testing.T) {
	for _, tc := range []struct {
		name     string
		buckets  []string
		liveness bool
	}{
		{name: "deleting the VM record forgets the VM", buckets: []string{collector.DefaultBucket}},
		{name: "deleting the VM and liveness records forgets the VM", buckets: []string{collector.DefaultBucket, collector.DefaultLivenessBucket}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			sub := e.subscribeAlerts(t)
			col := e.startCollector(t)
			h1 := e.relay(t, "h1")

			now := time.Now().UTC()
			h1.channel("web1", "u1", protocol.ChannelConnected, now)
			h1.guest("web1", "u1", liveHello("r1", 1, now), now)
			h1.guest("web1", "u1", heartbeat("r1", 2, now), now)
			sub.waitN(t, collector.CodeAgentSilent, 1, 8*time.Second)
			live, err := e.js.KeyValue(t.Context(), collector.DefaultLivenessBucket)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := live.Get(t.Context(), collector.Key("h1", "web1")); err != nil {
				t.Fatalf("liveness record before the delete: %v", err)
			}

			for _, bucket := range tc.buckets {
				kv, err := e.js.KeyValue(t.Context(), bucket)
				if err != nil {
					t.Fatal(err)
				}
				if err := kv.Delete(t.Context(), collector.Key("h1", "web1")); err != nil {
					t.Fatalf("delete from %s: %v", bucket, err)
				}
			}
			col.waitFor(t, "web1 to leave the API", func(vms map[string]collector.VM) bool {
				_, ok := vms["h1/web1"]
				return !ok
			})
			deadline := time.Now().Add(5 * time.Second)
			for len(col.c.Alerts(collector.AlertFilter{VM: "web1"})) > 0 {
				if time.Now().After(deadline) {
					t.Fatalf("alerts of web1 5s after its removal: %+v", col.c.Alerts(collector.AlertFilter{VM: "web1"}))
				}
				time.Sleep(20 * time.Millisecond)
			}
			silent := sub.waitN(t, collector.CodeAgentSilent, 2, 5*time.Second)
			if last := silent[len(silent)-1].alert; last.State != collector.AlertResolved {
				t.Errorf("last agent_silent published: got %s, want resolved", last.State)
			}

			// Several sweeps and flushes later the VM must still be gone:
			// nothing writes its liveness record back or raises its alerts.
			for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
				time.Sleep(100 * time.Millisecond) // watching for a resurrection, not waiting for state
				if _, err := live.Get(t.Context(), collector.Key("h1", "web1")); !errors.Is(err, jetstream.ErrKeyNotFound) {
					t.Fatalf("liveness record after the delete: got err %v, want not found", err)
				}
				for _, v := range col.vms(t) {
					if v.Name == "web1" {
						t.Fatalf("web1 back in the API: %+v", v)
					}
				}
				if got := firingOf(col.c, collector.CodeAgentSilent); len(got) > 0 {
					t.Fatalf("agent_silent firing again: %+v", got)
				}
			}
			alerts, err := e.js.KeyValue(t.Context(), collector.DefaultAlertBucket)
			if err != nil {
				t.Fatal(err)
			}
			if keys, err := alerts.ListKeys(t.Context()); err != nil {
				t.Fatal(err)
			} else {
				for k := range keys.Keys() {
					t.Errorf("alert record %s left in the bucket", k)
				}
			}

			// A newer heartbeat brings it back: the agent still runs.
			later := time.Now().UTC()
			h1.guest("web1", "u1", heartbeat("r1", 3, later), later)
			col.waitFor(t, "a newer heartbeat to bring web1 back", func(vms map[string]collector.VM) bool {
				return vms["h1/web1"].Heartbeat != nil && vms["h1/web1"].Heartbeat.Seq == 3
			})
		})
	}
}

func TestAlertsOfACheckDroppedFromTheHelloResolve(t *testing.T) {
	e := newEnv(t)
	sub := e.subscribeAlerts(t)
	e.startCollector(t)
	h1 := e.relay(t, "h1")

	h1.guest("web1", "u1", hello("r1", 1, "web1", t0), t0)
	h1.guest("web1", "u1", withFindings(result("r1", 2, "network", protocol.StatusCrit, t0), gatewayDown), t0.Add(time.Second))
	if got := sub.waitN(t, "net.gateway_unreachable", 1, 5*time.Second)[0].alert; got.State != collector.AlertFiring {
		t.Fatalf("before the new hello: got %s, want firing", got.State)
	}
	// The agent restarts with a configuration without the network check.
	h := hello("r2", 1, "web1", t0.Add(time.Minute))
	h.Data = []byte(`{"hostname":"web1","os":"linux","agent_version":"0.2.0","checks":["resources"]}`)
	h1.guest("web1", "u1", h, t0.Add(time.Minute))
	got := sub.waitN(t, "net.gateway_unreachable", 2, 5*time.Second)[1].alert
	if got.State != collector.AlertResolved {
		t.Errorf("after a hello without network: got %s, want resolved", got.State)
	}
}

func TestAlertsOfACheckStillInTheHelloStayFiring(t *testing.T) {
	e := newEnv(t)
	sub := e.subscribeAlerts(t)
	col := e.startCollector(t)
	h1 := e.relay(t, "h1")

	h1.guest("web1", "u1", hello("r1", 1, "web1", t0), t0)
	h1.guest("web1", "u1", withFindings(result("r1", 2, "network", protocol.StatusCrit, t0), gatewayDown), t0.Add(time.Second))
	sub.waitN(t, "net.gateway_unreachable", 1, 5*time.Second)
	h1.guest("web1", "u1", hello("r2", 1, "web1", t0.Add(time.Minute)), t0.Add(time.Minute))
	col.waitFor(t, "the new hello", func(vms map[string]collector.VM) bool {
		return vms["h1/web1"].Hello != nil && vms["h1/web1"].Hello.Run == "r2"
	})
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
		time.Sleep(100 * time.Millisecond) // two sweeps must not resolve it
	}
	if got := firingOf(col.c, "net.gateway_unreachable"); len(got) != 1 {
		t.Errorf("firing gateway alerts after a hello that lists network: got %d, want 1", len(got))
	}
}
