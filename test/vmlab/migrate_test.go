//go:build linux

package vmlab_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/hostrelay"
	"github.com/guestdiag/guestdiag/protocol"
	"github.com/guestdiag/guestdiag/test/vmlab"
)

// startCollectorWith is startCollector with cfg.
func startCollectorWith(t *testing.T, nc *nats.Conn, cfg collector.Config) (api string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := collector.New(cfg, nc, testLogger(t, "collector"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("collector: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// allAlerts records every alert published.
type allAlerts struct {
	mu  sync.Mutex
	got []collector.Alert
}

func subscribeAllAlerts(t *testing.T, nc *nats.Conn) *allAlerts {
	t.Helper()
	a := &allAlerts{}
	sub, err := nc.Subscribe(protocol.SubjectPrefix+".alert.>", func(m *nats.Msg) {
		var al collector.Alert
		if json.Unmarshal(m.Data, &al) == nil {
			a.mu.Lock()
			a.got = append(a.got, al)
			a.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	return a
}

// TestIntegrationLiveMigration moves a running guest from hostA to hostB
// with QEMU's own live migration, each host with its relay, and checks
// that the agent's stream goes on through hostB's relay without a seq
// missing or doubled, and that the collector shows the VM on hostB and
// raises nothing for the record it left on hostA.
func TestIntegrationLiveMigration(t *testing.T) {
	l, _, nc := faultLab(t)
	ctx := t.Context()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	const name, uuid = "mover", "5a0c7e4e-2b1d-4c3e-9f8a-1b2c3d4e5f60"
	lb := *l
	lb.ChannelRoot = shortTempDir(t)
	guest := vmlab.AgentGuest{Name: name, ID: 3, AgentArgs: []string{"--heartbeat", "1s"}}

	qmpA, argsA := relayQMP(l.ChannelRoot, name)
	ga := guest
	ga.QEMUArgs = argsA
	src := bootAgent(t, ctx, l, ga)

	relay := func(host string, root, qmp string) {
		ch := hostrelay.Channel{Name: name, Path: vmlab.LibvirtChannelPath(root, guest.ID, name), UUID: uuid}
		startLabRelayWith(t, nc, hostrelay.Config{
			Host: host, Globs: []string{}, Static: []hostrelay.Channel{ch}, RescanInterval: 100 * time.Millisecond,
			Lifecycle: hostrelay.LifecycleConfig{QMP: []hostrelay.Channel{{Name: name, Path: qmp, UUID: uuid}}, Virsh: hostrelay.VirshOff},
		})
	}
	relay("hostA", l.ChannelRoot, qmpA)
	alerts := subscribeAllAlerts(t, nc)
	api := startCollectorWith(t, nc, collector.Config{ChannelGrace: 2 * time.Second})

	vmOn := func(ctx context.Context, host string) (collector.VM, error) {
		vms, err := fetchVMs(ctx, api)
		if err != nil {
			return collector.VM{}, err
		}
		for _, v := range vms {
			if v.Name == name && v.Host == host {
				return v, nil
			}
		}
		return collector.VM{}, fmt.Errorf("no %s on %s in %d VMs", name, host, len(vms))
	}
	eventually(t, ctx, 2*time.Minute, "the VM on hostA with heartbeats", func(ctx context.Context) error {
		v, err := vmOn(ctx, "hostA")
		if err == nil && (v.Heartbeat == nil || v.Heartbeat.Seq < 5) {
			err = fmt.Errorf("hostA record has no fifth heartbeat yet")
		}
		return err
	})

	// The destination: the same devices, its own channel and QMP sockets,
	// waiting for the state on a unix socket.
	incoming := filepath.Join(lb.ChannelRoot, "incoming")
	qmpB, argsB := relayQMP(lb.ChannelRoot, name)
	gb := guest
	gb.QEMUArgs = append(argsB, "-incoming", "unix:"+incoming)
	dst := bootAgent(t, ctx, &lb, gb)
	relay("hostB", lb.ChannelRoot, qmpB)

	// QEMU listens for the state only once its machine is set up, after
	// the sockets Boot waits for.
	eventually(t, ctx, 30*time.Second, "the destination listening", func(context.Context) error {
		_, err := os.Stat(incoming)
		return err
	})
	started := time.Now()
	if _, err := src.QMP(ctx, "migrate", map[string]any{"uri": "unix:" + incoming}); err != nil {
		t.Fatal(err)
	}
	var mig struct {
		Status    string `json:"status"`
		TotalTime int64  `json:"total-time"`
		Downtime  int64  `json:"downtime"`
		ErrorDesc string `json:"error-desc"`
	}
	eventually(t, ctx, time.Minute, "the migration completed", func(ctx context.Context) error {
		ret, err := src.QMP(ctx, "query-migrate", nil)
		if err == nil {
			err = json.Unmarshal(ret, &mig)
		}
		switch {
		case err != nil:
			return err
		case mig.Status == "failed" || mig.Status == "cancelled":
			t.Fatalf("migration %s: %s; destination console: %s", mig.Status, mig.ErrorDesc, dst.Console())
		case mig.Status != "completed":
			return fmt.Errorf("migration %s", mig.Status)
		}
		return nil
	})
	completed := time.Now()
	// The source's manager ends it, as libvirt does after a migration.
	if _, err := src.QMP(ctx, "quit", nil); err != nil && !errors.Is(err, net.ErrClosed) {
		t.Logf("quit: %v", err)
	}

	eventually(t, ctx, time.Minute, "the VM on hostB with heartbeats made after the migration", func(ctx context.Context) error {
		v, err := vmOn(ctx, "hostB")
		if err == nil && (v.Heartbeat == nil || !v.Heartbeat.Received.After(completed.Add(3*time.Second))) {
			err = fmt.Errorf("hostB has no heartbeat from 3 s after the migration yet")
		}
		return err
	})
	old, err := vmOn(ctx, "hostA")
	if err != nil {
		t.Fatal(err)
	}
	if old.Lifecycle == nil || old.Lifecycle.State != protocol.VMMigrated {
		t.Errorf("hostA's record has lifecycle %+v, want migrated", old.Lifecycle)
	}
	cur, err := vmOn(ctx, "hostB")
	if err != nil {
		t.Fatal(err)
	}
	if cur.Lifecycle == nil || cur.Lifecycle.State != protocol.VMRunning || cur.Channel.State != protocol.ChannelConnected {
		t.Errorf("hostB's record has lifecycle %+v and channel %s, want running and connected", cur.Lifecycle, cur.Channel.State)
	}

	all, err := storedGuestMessages(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []storedMessage
	for _, m := range all {
		if m.vm == name {
			msgs = append(msgs, m)
		}
	}
	runs := map[string][]uint64{}
	ids := map[string]int{}
	var lastA, firstB storedMessage
	for _, m := range msgs {
		runs[m.run] = append(runs[m.run], m.seq)
		ids[m.msgID]++
		if m.host == "hostA" && m.seq > lastA.seq {
			lastA = m
		}
		if m.host == "hostB" && (firstB.seq == 0 || m.seq < firstB.seq) {
			firstB = m
		}
	}
	if len(runs) != 1 {
		t.Errorf("stream holds runs %v, want the one run of the migrated agent", runs)
	}
	for run, seqs := range runs {
		slices.Sort(seqs)
		for i, s := range seqs {
			if s != uint64(i+1) {
				t.Errorf("run %s: stored seqs %v are not 1..%d without gaps or doubles", run, seqs, len(seqs))
				break
			}
		}
	}
	for id, n := range ids {
		if n > 1 {
			t.Errorf("message id %s stored %d times", id, n)
		}
	}
	if firstB.seq == 0 || lastA.seq == 0 {
		t.Fatalf("messages through hostA up to %d, through hostB from %d: want both", lastA.seq, firstB.seq)
	}
	t.Logf("migration: %v wall, query-migrate total-time %d ms, downtime %d ms; stream: %d messages, seqs 1..%d via hostA, %d.. via hostB; gap between the last via hostA and the first via hostB %v (relay receive times)",
		completed.Sub(started).Round(time.Millisecond), mig.TotalTime, mig.Downtime, len(msgs), lastA.seq, firstB.seq, firstB.received.Sub(lastA.received).Round(time.Millisecond))

	// Past the 2 s channel grace of the record hostA keeps.
	<-time.After(4 * time.Second)
	alerts.mu.Lock()
	defer alerts.mu.Unlock()
	// The guest's own findings (it has no network) are not the
	// migration's; the collector's codes would be.
	own := []string{collector.CodeChannelDown, collector.CodeAgentSilent, collector.CodeCheckStale, collector.CodeVMStopped, collector.CodeGuestPanicked}
	for _, a := range alerts.got {
		if a.Key.VM == name && slices.Contains(own, a.Key.Code) {
			t.Errorf("alert %s %s on %s during the migration", a.State, a.Key.Code, a.Key.Host)
		}
	}
}
