//go:build linux

package vmlab_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/hostrelay"
	"github.com/guestdiag/guestdiag/protocol"
	"github.com/guestdiag/guestdiag/test/vmlab"
)

// pvpanicModules let the guest kernel drive QEMU's ISA pvpanic device,
// which ACPI presents to the pvpanic-mmio driver.
var pvpanicModules = []string{"drivers/misc/pvpanic/pvpanic", "drivers/misc/pvpanic/pvpanic-mmio"}

// relayQMP is a second QMP monitor for the relay: QEMU serves one client
// per monitor, and the lab's own (VM.QMP) must stay free.
func relayQMP(dir, name string) (path string, args []string) {
	path = filepath.Join(dir, name+".qmp")
	return path, []string{"-qmp", "unix:" + path + ",server=on,wait=off"}
}

// startLabRelay runs a relay in this process for host, watching glob and
// the given QMP sockets.
func startLabRelay(t *testing.T, nc *nats.Conn, host, glob string, qmp ...hostrelay.Channel) *hostrelay.Relay {
	t.Helper()
	return startLabRelayWith(t, nc, hostrelay.Config{
		Host: host, Globs: []string{glob}, RescanInterval: 100 * time.Millisecond,
		Lifecycle: hostrelay.LifecycleConfig{QMP: qmp, Virsh: hostrelay.VirshOff},
	})
}

func startLabRelayWith(t *testing.T, nc *nats.Conn, cfg hostrelay.Config) *hostrelay.Relay {
	t.Helper()
	host := cfg.Host
	r, err := hostrelay.New(cfg, nc, testLogger(t, "relay "+host))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay %s: %v", host, err)
		}
	})
	return r
}

// lifecycleEventOf returns the first vm_lifecycle event of host/vm in state
// in the stream, or false.
func lifecycleEventOf(ctx context.Context, js jetstream.JetStream, host, vm string, state protocol.VMState) (protocol.LifecycleEvent, bool, error) {
	st, err := js.Stream(ctx, "GUESTDIAG")
	if err != nil {
		return protocol.LifecycleEvent{}, false, err
	}
	m, err := st.GetLastMsgForSubject(ctx, protocol.ChannelSubject(host, vm))
	if err != nil {
		return protocol.LifecycleEvent{}, false, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return protocol.LifecycleEvent{}, false, err
	}
	for seq := info.State.FirstSeq; seq <= m.Sequence; seq++ {
		raw, err := st.GetMsg(ctx, seq)
		if err != nil || raw.Subject != protocol.ChannelSubject(host, vm) {
			continue
		}
		var ev protocol.LifecycleEvent
		if json.Unmarshal(raw.Data, &ev) == nil && ev.Kind == protocol.KindVMLifecycle && ev.State == state {
			return ev, true, nil
		}
	}
	return protocol.LifecycleEvent{}, false, nil
}

// TestIntegrationGuestPanic panics a real guest with a pvpanic device and
// checks that the collector raises vm.guest_panicked within a second of
// QEMU's GUEST_PANICKED event, from the host's view alone.
func TestIntegrationGuestPanic(t *testing.T) {
	l, srv, nc := faultLab(t)
	ctx := t.Context()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	qmpPath, qmpArgs := relayQMP(l.ChannelRoot, "panicky")
	vm := bootAgent(t, ctx, l, vmlab.AgentGuest{
		Name: "panicky", ID: 1, AgentArgs: []string{"--heartbeat", "1s"},
		Modules: pvpanicModules, QEMUArgs: append([]string{"-device", "pvpanic"}, qmpArgs...),
	})
	_ = srv
	w := watchAlerts(t, nc, "panicky")
	startLabRelay(t, nc, labHost, l.ChannelGlob(), hostrelay.Channel{Name: "panicky", Path: qmpPath})
	api := startCollector(t, nc)

	eventually(t, ctx, 2*time.Minute, "the VM running, with its agent's hello", func(ctx context.Context) error {
		vms, err := fetchVMs(ctx, api)
		if err != nil {
			return err
		}
		for _, v := range vms {
			if v.Name == "panicky" && v.Hello != nil && v.Lifecycle != nil && v.Lifecycle.State == protocol.VMRunning {
				return nil
			}
		}
		return fmt.Errorf("not yet: %+v", vms)
	})
	if out := exec1(t, ctx, vm, "grep -c pvpanic /proc/modules"); out == "0" {
		t.Fatalf("pvpanic modules not loaded in the guest")
	}

	trigger := time.Now()
	// In the background, so that the lab port answers before the guest dies.
	exec1(t, ctx, vm, "(sleep 0.2; echo c > /proc/sysrq-trigger) >/dev/null 2>&1 &")
	fired := w.await(t, ctx, collector.AlertFiring, collector.CodeGuestPanicked, trigger, 30*time.Second, nil)

	var ev protocol.LifecycleEvent
	eventually(t, ctx, 10*time.Second, "the panicked lifecycle event in the stream", func(ctx context.Context) error {
		var ok bool
		var err error
		if ev, ok, err = lifecycleEventOf(ctx, js, labHost, "panicky", protocol.VMPanicked); err == nil && !ok {
			err = fmt.Errorf("no panicked event yet")
		}
		return err
	})
	kv, err := js.KeyValue(ctx, collector.DefaultAlertBucket)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := kv.Get(ctx, collector.AlertKV(fired.alert.Key))
	if err != nil {
		t.Fatal(err)
	}
	toKV := entry.Created().Sub(ev.TS)
	toNATS := fired.at.Sub(ev.TS)
	t.Logf("QEMU GUEST_PANICKED at %s (reason %q); alert in KV %v later (KV write time), published %v later; %v after the test's trigger command",
		ev.TS.Format(time.RFC3339Nano), ev.Reason, toKV, toNATS, fired.at.Sub(trigger))
	if toKV > time.Second {
		t.Errorf("vm.guest_panicked reached KV %v after QEMU's GUEST_PANICKED, want within 1s", toKV)
	}
	if fired.alert.Severity != "crit" || len(fired.alert.KB) == 0 || fired.alert.KB[0].ID != "guestdiag.vm.guest_panicked" {
		t.Errorf("alert %s with KB %v, want crit with guestdiag.vm.guest_panicked", fired.alert.Severity, fired.alert.KB)
	}

	// QEMU powered the VM off: its channel is gone and the agent silent,
	// for longer than 3 heartbeats (3 s); the panic explains both.
	<-time.After(5 * time.Second)
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range w.alerts {
		if c := s.alert.Key.Code; c == collector.CodeAgentSilent || c == collector.CodeVMStopped {
			t.Errorf("%s raised for a panicked VM: %s", c, s.alert.Summary)
		}
	}
}
