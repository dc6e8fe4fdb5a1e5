package collector_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/protocol"
)

// A crit result that reaches the collector after the check's next result
// is what a message redelivered after AckWait looks like when the node its
// first delivery went through died (test/cluster's node-loss test): the
// stream holds it in order, but the VM's record already holds a newer
// result. The condition did hold between the two results, so its alert
// fires and resolves, once, however often the late result comes.
func TestCritResultDeliveredAfterANewerOneFiresAndResolvesOnce(t *testing.T) {
	e := newEnv(t)
	sub := e.subscribeAlerts(t)
	col := e.startCollector(t)
	h1 := e.relay(t, "h1")

	h1.guest("web1", "u1", hello("r1", 1, "web1", t0), t0)
	h1.guest("web1", "u1", result("r1", 3, "network", protocol.StatusOK, t0), t0.Add(2*time.Second))
	h1.guest("web1", "u1", withFindings(result("r1", 2, "network", protocol.StatusCrit, t0), gatewayDown), t0.Add(time.Second))
	sub.waitN(t, "net.gateway_unreachable", 2, 5*time.Second)
	// The same late result again, as a second redelivery would bring it
	// (another message id, so that the stream keeps it).
	h1.guest("web1", "u1-again", withFindings(result("r1", 2, "network", protocol.StatusCrit, t0), gatewayDown), t0.Add(time.Second))
	e.waitConsumerIdle(t)

	var got []string
	fingerprints := map[string]bool{}
	for _, a := range e.streamAlerts(t) {
		if a.Key.Code == "net.gateway_unreachable" {
			got = append(got, fmt.Sprintf("%s %d", a.State, a.Seq))
			fingerprints[a.Fingerprint] = true
		}
	}
	if fmt.Sprint(got) != "[firing 1 resolved 2]" || len(fingerprints) != 1 {
		t.Errorf("stored alert notifications: got %v of %d alerts, want one alert firing (seq 1) then resolved (seq 2)", got, len(fingerprints))
	}
	alerts := col.c.Alerts(collector.AlertFilter{Code: "net.gateway_unreachable"})
	if len(alerts) != 1 || alerts[0].State != collector.AlertResolved || alerts[0].Seq != 2 {
		t.Errorf("alert bucket: got %+v, want the one alert, resolved at notification 2", alerts)
	}
	vms := col.waitFor(t, "web1's network result", func(m map[string]collector.VM) bool {
		return checkSeq(m, "h1/web1", "network") == 3
	})
	if ch := vms["h1/web1"].Checks["network"]; ch.Status != protocol.StatusOK {
		t.Errorf("web1's network check: got %s, want ok (the newer result stays)", ch.Status)
	}
	if st := col.c.Stats(); st.Stale != 2 {
		t.Errorf("stale messages: got %d, want the late result's 2 deliveries", st.Stale)
	}
}
