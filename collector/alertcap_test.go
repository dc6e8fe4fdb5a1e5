package collector_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/protocol"
)

// fullFilesystems returns n warn findings of one code, each on its own
// mountpoint named prefix plus a number.
func fullFilesystems(prefix string, n int) []protocol.Finding {
	fs := make([]protocol.Finding, n)
	for i := range fs {
		src := fmt.Sprintf("%s%03d", prefix, i)
		fs[i] = protocol.Finding{Code: "fs.full", Severity: protocol.SeverityWarn, Source: src, Message: src + " is 97% full"}
	}
	return fs
}

// waitAlerts polls until the collector holds n alerts that f selects.
func waitAlerts(t *testing.T, c *collector.Collector, f collector.AlertFilter, n int, within time.Duration) []collector.Alert {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		as := c.Alerts(f)
		if len(as) == n {
			return as
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %d alerts (%+v); got %d", n, f, len(as))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestTruncatedResultDoesNotResolveFindingsItDropped(t *testing.T) {
	e := newEnv(t)
	sub := e.subscribeAlerts(t)
	col := e.startCollector(t)
	h1 := e.relay(t, "h1")

	fs := fullFilesystems("/mnt/", 40)
	h1.guest("web1", "u1", hello("r1", 1, "web1", t0), t0)
	h1.guest("web1", "u1", withFindings(result("r1", 2, "resources", protocol.StatusWarn, t0), fs...), t0.Add(time.Second))
	waitAlerts(t, col.c, collector.AlertFilter{Code: "fs.full", State: collector.AlertFiring}, 32, 5*time.Second)

	// The same 40 conditions in the opposite order: the 32 stored now
	// leave out 8 that fired, and raise 8 that did not.
	reversed := slices.Clone(fs)
	slices.Reverse(reversed)
	h1.guest("web1", "u1", withFindings(result("r1", 3, "resources", protocol.StatusWarn, t0), reversed...), t0.Add(2*time.Second))
	waitAlerts(t, col.c, collector.AlertFilter{Code: "fs.full", State: collector.AlertFiring}, 40, 5*time.Second)
	e.waitConsumerIdle(t)
	for _, p := range sub.all() {
		if p.alert.Key.Code == "fs.full" && p.alert.State == collector.AlertResolved {
			t.Errorf("alert of %s resolved while its condition still held", p.alert.Key.Source)
		}
	}

	// A complete result without the findings does resolve them.
	h1.guest("web1", "u1", result("r1", 4, "resources", protocol.StatusOK, t0), t0.Add(3*time.Second))
	waitAlerts(t, col.c, collector.AlertFilter{Code: "fs.full", State: collector.AlertResolved}, 40, 5*time.Second)
}

// flood sends rounds results of each check from vm, every result with
// 32 warn findings on sources no earlier result named, and returns the
// next seq.
func flood(r *relay, vm string, seq uint64, rounds int, checks ...string) uint64 {
	for i := range rounds {
		for _, check := range checks {
			fs := fullFilesystems(fmt.Sprintf("/round%d/%s/", i, check), 32)
			r.guest(vm, "u-"+vm, withFindings(result("r1", seq, check, protocol.StatusWarn, t0), fs...), time.Now())
			seq++
		}
	}
	return seq
}

// alertsOf returns the VM's alerts of the collector, split into the
// vm.too_many_alerts alerts, the other firing ones and the resolved ones.
func alertsOf(c *collector.Collector, vm string) (tooMany, firing, resolved []collector.Alert) {
	for _, a := range c.Alerts(collector.AlertFilter{Host: "h1", VM: vm}) {
		switch {
		case a.Key.Code == collector.CodeTooManyAlerts:
			tooMany = append(tooMany, a)
		case a.State == collector.AlertFiring:
			firing = append(firing, a)
		default:
			resolved = append(resolved, a)
		}
	}
	return tooMany, firing, resolved
}

// suppressed reads how many conditions a vm.too_many_alerts alert counts.
func suppressed(t *testing.T, a collector.Alert) int {
	t.Helper()
	var d struct {
		Suppressed int `json:"suppressed"`
	}
	if err := json.Unmarshal(a.Evidence.Data, &d); err != nil {
		t.Fatalf("vm.too_many_alerts evidence data %s: %v", a.Evidence.Data, err)
	}
	return d.Suppressed
}

func TestHostileVMFloodingFreshSourcesGetsOneAlertForTheRest(t *testing.T) {
	e := newEnv(t)
	// A short flap window makes only the firing alerts count, so that the
	// flood churns: every round resolves the last one's alerts.
	col := e.startCollectorWith(t, collector.Config{Policy: collector.Policy{FlapWindow: time.Millisecond}})
	h1 := e.relay(t, "h1")

	// An hour between heartbeats: on a loaded machine the flood may take
	// longer than the default silence, whose alert would be one more
	// condition over the limit.
	hi := hello("r1", 1, "evil", t0)
	hi.Data, _ = json.Marshal(protocol.Hello{Hostname: "evil", OS: "linux", AgentVersion: "0.1.0", Checks: []string{"resources", "logs"}, HeartbeatS: 3600})
	h1.guest("evil", "u-evil", hi, time.Now())
	// Per round: resources and logs fill the 64 places, services finds
	// none left.
	flood(h1, "evil", 2, 10, "resources", "logs", "services")
	e.waitConsumerIdle(t)

	tooMany, firing, resolved := alertsOf(col.c, "evil")
	if len(firing) != 64 {
		t.Errorf("evil's firing alerts: got %d, want the limit of 64", len(firing))
	}
	if len(tooMany) != 1 || tooMany[0].State != collector.AlertFiring || tooMany[0].Severity != "warn" {
		t.Fatalf("vm.too_many_alerts: got %+v, want one firing warn alert", tooMany)
	}
	if got := suppressed(t, tooMany[0]); got != 10*32 {
		t.Errorf("suppressed: got %d, want 320 (services' 32 findings in each of 10 rounds)", got)
	}
	if !strings.Contains(tooMany[0].Evidence.Finding.Message, "320 new conditions") {
		t.Errorf("vm.too_many_alerts message: got %q, want it to say 320 new conditions", tooMany[0].Evidence.Finding.Message)
	}
	if len(resolved) != 64 {
		t.Errorf("evil's resolved alerts: got %d, want the 64 newest kept", len(resolved))
	}
	for _, a := range resolved {
		if len(a.Evidence.Data) != 0 || a.Evidence.Finding.Code != "fs.full" {
			t.Errorf("resolved alert %s: got data %d bytes and finding %q, want the finding without data", a.Key.Source, len(a.Evidence.Data), a.Evidence.Finding.Code)
			break
		}
		if !strings.HasPrefix(a.Key.Source, "/round8/") {
			t.Errorf("resolved alert %s kept, want only round 8's (resolved last)", a.Key.Source)
			break
		}
	}
	kv, err := e.js.KeyValue(context.Background(), collector.DefaultAlertBucket)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.ListKeysFiltered(context.Background(), collector.Key("h1", "evil")+".*")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range keys.Keys() {
		n++
	}
	if n != 64+64+1 {
		t.Errorf("evil's records in the alert bucket: got %d, want 64 firing, 64 resolved and vm.too_many_alerts", n)
	}
}

func TestFreshSourcesInEveryResultAreLimitedAndOtherVMsStillAlertPromptly(t *testing.T) {
	e := newEnv(t)
	sub := e.subscribeAlerts(t)
	col := e.startCollector(t)
	h1 := e.relay(t, "h1")

	h1.guest("evil", "u-evil", hello("r1", 1, "evil", t0), time.Now())
	h1.guest("web2", "u-web2", hello("r1", 1, "web2", t0), time.Now())
	// A second of what the relay lets one VM send.
	flood(h1, "evil", 2, 50, "resources")
	sent := time.Now()
	h1.guest("web2", "u-web2", withFindings(result("r1", 2, "network", protocol.StatusCrit, t0), gatewayDown), time.Now())
	fired := sub.waitN(t, "net.gateway_unreachable", 1, 10*time.Second)[0]
	// How long is for benchmarks to judge; the bound on what the flood
	// leaves behind is asserted below.
	t.Logf("web2's alert fired %v after its result, behind a second's flood from evil", time.Since(sent))
	if fired.alert.Key.VM != "web2" {
		t.Errorf("gateway alert: got VM %q, want web2", fired.alert.Key.VM)
	}
	e.waitConsumerIdle(t)

	// Round 0 fires 32 alerts, round 1 resolves them and fires 32 more:
	// 64 began within the flap window, so rounds 2 to 49 raise none.
	tooMany, firing, resolved := alertsOf(col.c, "evil")
	if len(firing)+len(resolved) != 64 || len(tooMany) != 1 {
		t.Fatalf("evil's alerts: got %d firing, %d resolved, %d vm.too_many_alerts, want 64 in all and one vm.too_many_alerts", len(firing), len(resolved), len(tooMany))
	}
	if got := suppressed(t, tooMany[0]); got != 48*32 {
		t.Errorf("suppressed: got %d, want 1536 (rounds 2 to 49)", got)
	}
}
