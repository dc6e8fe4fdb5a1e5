package collector_test

import (
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/protocol"
)

func (r *relay) lifecycle(vm string, state protocol.VMState, reason string, ts time.Time) {
	r.t.Helper()
	ev := protocol.LifecycleEvent{V: 1, Kind: protocol.KindVMLifecycle, Host: r.host, VM: vm, State: state, Reason: reason, Source: "qmp", TS: ts}
	r.publish(protocol.ChannelSubject(r.host, vm), ev)
}

// letTimePass waits d: long enough for the sweep to raise what it
// wrongly would.
func letTimePass(d time.Duration) { <-time.After(d) }

// noAlerts fails for every published alert of the codes.
func noAlerts(t *testing.T, sub *alertSub, why string, codes ...string) {
	t.Helper()
	for _, p := range sub.all() {
		for _, c := range codes {
			if p.alert.Key.Code == c {
				t.Errorf("%s raised %s: %+v", why, c, p.alert)
			}
		}
	}
}

func TestGuestPanicFiresAtOnceAndExplainsTheSilence(t *testing.T) {
	e := newEnv(t)
	sub := e.subscribeAlerts(t)
	e.startCollectorWith(t, collector.Config{ChannelGrace: time.Second})
	h1 := e.relay(t, "h1")

	now := time.Now().UTC()
	h1.channel("web1", "u1", protocol.ChannelConnected, now)
	h1.guest("web1", "u1", liveHello("r1", 1, now), now)
	h1.lifecycle("web1", protocol.VMRunning, "running", now)
	panicked := time.Now().UTC()
	h1.lifecycle("web1", protocol.VMPanicked, "guest-panicked: action poweroff", panicked)
	fired := sub.waitN(t, collector.CodeGuestPanicked, 1, 5*time.Second)[0].alert
	if fired.State != collector.AlertFiring || fired.Severity != "crit" {
		t.Errorf("guest_panicked: got %s %s, want firing crit", fired.State, fired.Severity)
	}
	if late := time.Since(panicked); late > time.Second {
		t.Errorf("guest_panicked fired %v after the event, want within 1s", late)
	}
	if len(fired.KB) == 0 || fired.KB[0].ID != "guestdiag.vm.guest_panicked" {
		t.Errorf("guest_panicked carries KB %+v, want guestdiag.vm.guest_panicked first", fired.KB)
	}
	// QEMU exits after the panic: the channel goes, heartbeats stop.
	h1.channel("web1", "u1", protocol.ChannelDisconnected, panicked.Add(time.Millisecond))

	// Three heartbeat intervals and the channel grace pass: the panic
	// explains both.
	letTimePass(4 * time.Second)
	noAlerts(t, sub, "a panicked VM", collector.CodeAgentSilent, collector.CodeChannelDown, collector.CodeVMStopped)

	restart := time.Now().UTC()
	h1.lifecycle("web1", protocol.VMRunning, "running", restart)
	if got := sub.waitN(t, collector.CodeGuestPanicked, 2, 5*time.Second)[1].alert; got.State != collector.AlertResolved {
		t.Errorf("after the VM runs again: got %s, want resolved", got.State)
	}
}

func TestStoppedVMFiresAfterTheGraceAndResolvesWhenItRuns(t *testing.T) {
	e := newEnv(t)
	sub := e.subscribeAlerts(t)
	r := e.startCollector(t)
	h1 := e.relay(t, "h1")

	now := time.Now().UTC()
	h1.guest("web1", "u1", liveHello("r1", 1, now), now)
	// Paused twelve seconds ago, by the host's clock: past the grace.
	h1.lifecycle("web1", protocol.VMPaused, "io-error", now.Add(-12*time.Second))
	fired := sub.waitN(t, collector.CodeVMStopped, 1, 5*time.Second)[0].alert
	if fired.Severity != "warn" || fired.Key.Check != "" {
		t.Errorf("vm.stopped: got %s on check %q, want warn on the VM", fired.Severity, fired.Key.Check)
	}
	vms := r.waitFor(t, "the VM's lifecycle", func(m map[string]collector.VM) bool {
		return m["h1/web1"].Lifecycle != nil && m["h1/web1"].Lifecycle.State == protocol.VMPaused
	})
	if got := vms["h1/web1"].Lifecycle.Reason; got != "io-error" {
		t.Errorf("lifecycle reason %q, want io-error", got)
	}
	h1.lifecycle("web1", protocol.VMRunning, "resumed", time.Now().UTC())
	if got := sub.waitN(t, collector.CodeVMStopped, 2, 5*time.Second)[1].alert; got.State != collector.AlertResolved {
		t.Errorf("after resume: got %s, want resolved", got.State)
	}
	noAlerts(t, sub, "a paused VM", collector.CodeAgentSilent)
}

func TestMigratedAwayVMRaisesNothingOnItsOldHost(t *testing.T) {
	e := newEnv(t)
	sub := e.subscribeAlerts(t)
	r := e.startCollectorWith(t, collector.Config{ChannelGrace: time.Second})
	h1, h2 := e.relay(t, "h1"), e.relay(t, "h2")

	now := time.Now().UTC()
	h1.channel("web1", "u1", protocol.ChannelConnected, now)
	h1.guest("web1", "u1", liveHello("r1", 1, now), now)
	h1.lifecycle("web1", protocol.VMMigrating, "finish-migrate", now.Add(time.Millisecond))
	h1.lifecycle("web1", protocol.VMMigrated, "postmigrate", now.Add(2*time.Millisecond))
	h1.channel("web1", "u1", protocol.ChannelDisconnected, now.Add(3*time.Millisecond))
	h2.lifecycle("web1", protocol.VMRunning, "resumed", now.Add(3*time.Millisecond))
	h2.channel("web1", "u1", protocol.ChannelConnected, now.Add(4*time.Millisecond))

	r.waitFor(t, "web1 migrated from h1 and running on h2", func(m map[string]collector.VM) bool {
		old, cur := m["h1/web1"], m["h2/web1"]
		return old.Lifecycle != nil && old.Lifecycle.State == protocol.VMMigrated &&
			old.Channel.State == protocol.ChannelDisconnected && cur.Channel.State == protocol.ChannelConnected
	})
	// Past the channel grace and a few sweeps.
	letTimePass(3 * time.Second)
	var live, moved []string
	for _, v := range r.vms(t) {
		if v.Lifecycle != nil && v.Lifecycle.State == protocol.VMMigrated {
			moved = append(moved, v.Host)
		} else {
			live = append(live, v.Host)
		}
	}
	if len(live) != 1 || live[0] != "h2" || len(moved) != 1 || moved[0] != "h1" {
		t.Errorf("web1 live on %v and migrated on %v, want live on [h2] and migrated on [h1]", live, moved)
	}
	noAlerts(t, sub, "a VM migrated away", collector.CodeChannelDown, collector.CodeAgentSilent, collector.CodeVMStopped)
}
