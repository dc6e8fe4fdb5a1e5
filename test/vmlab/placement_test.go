//go:build linux

package vmlab_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/hostrelay"
	"github.com/guestdiag/guestdiag/protocol"
	"github.com/guestdiag/guestdiag/scheduler/executor"
	"github.com/guestdiag/guestdiag/test/vmlab"
)

// The lab's hosts: each is declared with placementCPUs CPUs and a high
// CPU threshold of placementHighPct, XenGuard's 0.7. Each guest on hostA
// runs a hog of placementHogPct of one CPU: two put hostA near 90 %, one
// leaves a host near 50 %. One CPU and hogs under half a CPU, rather than
// two CPUs and full hogs, because this machine's two cores are shared:
// full hogs got half a core each here, which no threshold could tell from
// one hog.
const (
	placementHighPct = 70
	placementCPUs    = 1
	placementHogPct  = 45
)

// placementHost is one of the lab's two hosts: a relay of its own on this
// machine with --shared-machine, the stand-in for a second hypervisor,
// and its own folder of channel and QMP sockets.
type placementHost struct {
	name string
	lab  vmlab.AgentLab
}

// execSocket is the QMP socket the executor uses, apart from the one the
// relay watches (a QMP socket serves one client at a time) and outside
// the relay's *.qmp glob.
func (h placementHost) execSocket(vm string) string {
	return filepath.Join(h.lab.ChannelRoot, "exec", vm+".sock")
}

func (h placementHost) execTemplate() string { return h.execSocket("{vm}") }

// guestArgs are the QEMU arguments every guest of h gets: the relay's QMP
// socket and the executor's.
func (h placementHost) guestArgs(vm string) []string {
	_, relay := relayQMP(h.lab.ChannelRoot, vm)
	return append(relay, "-qmp", "unix:"+h.execSocket(vm)+",server=on,wait=off")
}

func newPlacementHost(t *testing.T, base *vmlab.AgentLab, name string) placementHost {
	t.Helper()
	h := placementHost{name: name, lab: *base}
	h.lab.ChannelRoot = shortTempDir(t)
	h.lab.WorkDir = t.TempDir()
	if err := os.Mkdir(filepath.Join(h.lab.ChannelRoot, "exec"), 0o755); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h placementHost) startRelay(t *testing.T, nc *nats.Conn) {
	t.Helper()
	startLabRelayWith(t, nc, hostrelay.Config{
		Host: h.name, Globs: []string{h.lab.ChannelGlob()}, RescanInterval: 100 * time.Millisecond,
		HostUsageInterval: time.Second,
		SharedMachine:     hostrelay.SharedMachine{CPUs: placementCPUs},
		Lifecycle: hostrelay.LifecycleConfig{
			QMPGlobs: []string{filepath.Join(h.lab.ChannelRoot, "*.qmp")}, Virsh: hostrelay.VirshOff,
		},
	})
}

// hostSamples keeps every host usage sample the relays publish.
type hostSamples struct {
	mu  sync.Mutex
	got map[string][]protocol.HostUsage
}

func subscribeHostUsage(t *testing.T, nc *nats.Conn) *hostSamples {
	t.Helper()
	s := &hostSamples{got: map[string][]protocol.HostUsage{}}
	sub, err := nc.Subscribe(protocol.SubjectPrefix+".host.*", func(m *nats.Msg) {
		var u protocol.HostUsage
		if json.Unmarshal(m.Data, &u) == nil {
			s.mu.Lock()
			s.got[u.Host] = append(s.got[u.Host], u)
			s.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	return s
}

// last returns host's newest n samples, oldest first, or fewer.
func (s *hostSamples) last(host string, n int) []protocol.HostUsage {
	s.mu.Lock()
	defer s.mu.Unlock()
	all := s.got[host]
	return append([]protocol.HostUsage(nil), all[max(0, len(all)-n):]...)
}

// since returns host's samples taken after t.
func (s *hostSamples) since(host string, t time.Time) []protocol.HostUsage {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []protocol.HostUsage
	for _, u := range s.got[host] {
		if u.TS.After(t) {
			out = append(out, u)
		}
	}
	return out
}

// overIn says whether at least k of us are over pct, as the collector's
// overloaded hint counts (k of the last n).
func overIn(us []protocol.HostUsage, pct float64, k int) bool {
	n := 0
	for _, u := range us {
		if u.CPU.UsedPct > pct {
			n++
		}
	}
	return n >= k
}

func cpuSeries(us []protocol.HostUsage) string {
	var b strings.Builder
	for _, u := range us {
		fmt.Fprintf(&b, " %.0f%%", u.CPU.UsedPct)
	}
	return strings.TrimSpace(b.String())
}

func vmNames(u protocol.HostUsage) []string {
	var out []string
	for _, v := range u.VMs {
		out = append(out, v.VM)
	}
	return out
}

// labDestination is the VM lab's prepare step for the QMP executor: it
// boots the destination on host to, with the same devices, its own
// sockets and -incoming on a unix socket, and returns once QEMU listens.
// It runs on whatever goroutine calls Migrate, so it reports errors and
// never fails the test itself.
func labDestination(t *testing.T, hosts map[string]placementHost, guests map[string]vmlab.AgentGuest) executor.PrepareFunc {
	return func(ctx context.Context, vm, from, to string) (executor.Destination, error) {
		h, ok := hosts[to]
		g, known := guests[vm]
		if !ok || !known {
			return executor.Destination{}, fmt.Errorf("lab has no host %q or no guest %q", to, vm)
		}
		incoming := filepath.Join(h.lab.ChannelRoot, vm+".incoming")
		g.QEMUArgs = append(h.guestArgs(vm), "-incoming", "unix:"+incoming)
		dst, err := h.lab.Boot(ctx, g)
		if err != nil {
			return executor.Destination{}, err
		}
		stopOnCleanup(t, dst, vm+"@"+to)
		// QEMU listens for the state only once its machine is set up,
		// after the sockets Boot waits for.
		tick := time.NewTicker(25 * time.Millisecond)
		defer tick.Stop()
		for {
			if _, err := os.Stat(incoming); err == nil {
				return executor.Destination{URI: "unix:" + incoming, QMP: h.execSocket(vm)}, nil
			}
			select {
			case <-ctx.Done():
				return executor.Destination{}, fmt.Errorf("destination of %s never listened on %s: %w", vm, incoming, ctx.Err())
			case <-tick.C:
			}
		}
	}
}

// TestIntegrationPlacement runs three guests on two hosts, hostA and
// hostB, each a relay of its own on this machine declared with one CPU
// (--shared-machine, the stand-in for a second hypervisor): web1 and web2
// on hostA, db1 on hostB. Bounded CPU hogs in web1 and web2 drive hostA
// over its 70 % threshold while hostB stays under it; the QMP executor then moves
// web2 to hostB with a real live migration, and the collector shows it
// there, with neither host over its threshold afterwards.
func TestIntegrationPlacement(t *testing.T) {
	base, _, nc := faultLab(t)
	ctx := t.Context()

	hosts := map[string]placementHost{
		"hostA": newPlacementHost(t, base, "hostA"),
		"hostB": newPlacementHost(t, base, "hostB"),
	}
	hostA, hostB := hosts["hostA"], hosts["hostB"]
	guests := map[string]vmlab.AgentGuest{
		"web1": {Name: "web1", ID: 1, AgentArgs: []string{"--heartbeat", "2s"}},
		"web2": {Name: "web2", ID: 2, AgentArgs: []string{"--heartbeat", "2s"}},
		"db1":  {Name: "db1", ID: 3, AgentArgs: []string{"--heartbeat", "2s"}},
	}
	start := map[string]placementHost{"web1": hostA, "web2": hostA, "db1": hostB}
	samples := subscribeHostUsage(t, nc)
	api := startCollectorWith(t, nc, collector.Config{ChannelGrace: 2 * time.Second})
	hostA.startRelay(t, nc)
	hostB.startRelay(t, nc)

	vms := map[string]*vmlab.VM{}
	for _, name := range []string{"web1", "web2", "db1"} {
		h, g := start[name], guests[name]
		g.QEMUArgs = h.guestArgs(name)
		vms[name] = bootAgent(t, ctx, &h.lab, g)
	}
	// vmOn finds vm's record on host with a heartbeat received after t.
	vmOn := func(ctx context.Context, vm, host string, after time.Time) (collector.VM, error) {
		all, err := fetchVMs(ctx, api)
		if err != nil {
			return collector.VM{}, err
		}
		for _, v := range all {
			if v.Name == vm && v.Host == host {
				if v.Heartbeat == nil || !v.Heartbeat.Received.After(after) {
					return v, fmt.Errorf("%s on %s has no heartbeat after %s", vm, host, after.Format(time.TimeOnly))
				}
				return v, nil
			}
		}
		return collector.VM{}, fmt.Errorf("no %s on %s among %d VMs", vm, host, len(all))
	}
	booted := time.Now()
	for name, h := range start {
		eventually(t, ctx, 2*time.Minute, name+" reporting on "+h.name, func(ctx context.Context) error {
			_, err := vmOn(ctx, name, h.name, time.Time{})
			return err
		})
	}
	t.Logf("three guests reporting %v after boot", time.Since(booted).Round(time.Millisecond))

	// Bounded hogs: 45 % of one CPU each (vmlab-guest hog paces itself
	// by the guest's clock, which follows the host's), ending by
	// themselves after 15 minutes if the test's cleanup never comes.
	for _, vm := range []string{"web1", "web2"} {
		exec1(t, ctx, vms[vm], fmt.Sprintf("timeout 900 vmlab-guest hog %d >/dev/null 2>&1 &", placementHogPct))
	}
	high := float64(placementHighPct)
	hogs := time.Now()
	eventually(t, ctx, 90*time.Second, "hostA over its threshold in 3 of 5 samples, with web1 and web2 only", func(context.Context) error {
		last := samples.last("hostA", 5)
		if len(last) < 5 || !last[0].TS.After(hogs.Add(-5*time.Second)) {
			return fmt.Errorf("hostA: %d samples", len(last))
		}
		for _, u := range last {
			if got := strings.Join(vmNames(u), ","); got != "web1,web2" || u.CPU.Count != placementCPUs {
				return fmt.Errorf("hostA lists VMs %s on %d CPUs, want web1,web2 on %d", got, u.CPU.Count, placementCPUs)
			}
		}
		if !overIn(last, high, 3) {
			return fmt.Errorf("hostA CPU %s, want 3 of 5 over %.0f%%", cpuSeries(last), high)
		}
		return nil
	})
	t.Logf("hostA over %.0f%%: CPU %s", high, cpuSeries(samples.last("hostA", 5)))
	for _, u := range samples.since("hostB", hogs) {
		if strings.Join(vmNames(u), ",") != "db1" {
			t.Errorf("hostB sample %s lists VMs %v, want db1 only", u.TS.Format(time.TimeOnly), vmNames(u))
		}
	}
	if b := samples.last("hostB", 5); overIn(b, high, 3) {
		t.Errorf("hostB CPU %s with db1 idle, want under %.0f%%", cpuSeries(b), high)
	}

	ex, err := executor.NewQMP(executor.QMPConfig{
		Sockets: map[string]string{"hostA": hostA.execTemplate(), "hostB": hostB.execTemplate()},
		Prepare: labDestination(t, hosts, guests),
	}, testLogger(t, "executor"))
	if err != nil {
		t.Fatal(err)
	}
	mover, moved := moveDirectly(t, ctx, ex, "web2")
	stays := map[string]string{"web1": "web2", "web2": "web1"}[mover]

	eventually(t, ctx, time.Minute, mover+" on hostB with heartbeats made after the move", func(ctx context.Context) error {
		_, err := vmOn(ctx, mover, "hostB", moved.Add(3*time.Second))
		return err
	})
	if old, err := vmOn(ctx, mover, "hostA", time.Time{}); err != nil || old.Lifecycle == nil || old.Lifecycle.State != protocol.VMMigrated {
		t.Errorf("hostA's %s record: lifecycle %+v (%v), want migrated", mover, old.Lifecycle, err)
	}
	eventually(t, ctx, time.Minute, "5 host samples of each host after the move, neither over its threshold", func(context.Context) error {
		wantVMs := map[string]string{"hostA": stays, "hostB": strings.Join(slices.Sorted(slices.Values([]string{"db1", mover})), ",")}
		for host, want := range wantVMs {
			after := samples.since(host, moved.Add(2*time.Second))
			if len(after) < 5 {
				return fmt.Errorf("%s: %d samples since the move", host, len(after))
			}
			for _, u := range after {
				if got := strings.Join(vmNames(u), ","); got != want {
					return fmt.Errorf("%s lists VMs %s after the move, want %s", host, got, want)
				}
			}
			for i := 0; i+5 <= len(after); i++ {
				if overIn(after[i:i+5], high, 3) {
					t.Fatalf("%s CPU %s after the move: 3 of 5 over %.0f%%", host, cpuSeries(after), high)
				}
			}
		}
		return nil
	})
	t.Logf("after the move: hostA CPU %s, hostB CPU %s", cpuSeries(samples.since("hostA", moved)), cpuSeries(samples.since("hostB", moved)))
}

// moveDirectly runs the QMP executor itself, with no scheduler, and
// returns the VM moved and when the move ended.
func moveDirectly(t *testing.T, ctx context.Context, ex *executor.QMP, vm string) (string, time.Time) {
	t.Helper()
	mctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	started := time.Now()
	res, err := ex.Migrate(mctx, vm, "hostA", "hostB")
	if err != nil {
		t.Fatal(err)
	}
	moved := time.Now()
	t.Logf("QMP executor moved %s hostA→hostB in %v wall (prepare included): QEMU total-time %v, downtime %v",
		vm, moved.Sub(started).Round(time.Millisecond), res.Duration, res.Downtime)
	if res.Duration <= 0 {
		t.Errorf("migration result %+v has no duration", res)
	}
	return vm, moved
}
