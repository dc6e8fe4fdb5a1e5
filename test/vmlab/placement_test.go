//go:build linux

package vmlab_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
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
	"github.com/guestdiag/guestdiag/internal/collectord"
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
// over its 70 % threshold while hostB stays under it; the collector
// raises an overloaded hint, the scheduler in execute mode plans a move
// to hostB and the QMP executor carries it out with a real live
// migration; the collector and its placement page then show the VM on
// hostB, neither host is over its threshold, and later cycles move
// nothing.
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
	events := subscribePlacement(t, nc)
	api := startControlPlane(t, nc, collectord.Config{Collector: collector.Config{
		ChannelGrace: 2 * time.Second,
		// Low at 10 %: an idle host is no consolidation candidate here,
		// the lab is about the hotspot.
		Hints: collector.HintConfig{Thresholds: collector.Thresholds{CPUHighPct: placementHighPct, CPULowPct: 10}},
	}})
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
	// Booting a TCG guest loads its host too; the hotspot under test is
	// the hogs', so wait for the boot's to pass.
	eventually(t, ctx, time.Minute, "neither host with an overloaded hint after the boot", func(ctx context.Context) error {
		p, err := fetchPlacement(ctx, api)
		if err != nil {
			return err
		}
		for _, h := range p.Hosts {
			if slices.ContainsFunc(h.Hints, func(x protocol.Hint) bool { return x.Kind == protocol.HintOverloaded }) {
				return fmt.Errorf("%s is still hinted overloaded", h.Host)
			}
		}
		return nil
	})
	// Hints raised from here on are the hogs'.
	calm := time.Now()

	ex, err := executor.NewQMP(executor.QMPConfig{
		Sockets: map[string]string{"hostA": hostA.execTemplate(), "hostB": hostB.execTemplate()},
		Prepare: labDestination(t, hosts, guests),
	}, testLogger(t, "executor"))
	if err != nil {
		t.Fatal(err)
	}
	kv := startPlacementScheduler(t, nc, ex)

	// Bounded hogs: 45 % of one CPU each (vmlab-guest hog paces itself
	// by the guest's clock, which follows the host's), ending by
	// themselves after 15 minutes if the test's cleanup never comes.
	for _, vm := range []string{"web1", "web2"} {
		exec1(t, ctx, vms[vm], fmt.Sprintf("timeout 900 vmlab-guest hog %d >/dev/null 2>&1 &", placementHogPct))
	}
	high := float64(placementHighPct)
	hogs := time.Now()
	hint := waitHint(t, ctx, events, samples, "hostA", calm)
	last := samples.last("hostA", 5)
	if !overIn(last, high, 3) {
		t.Errorf("hostA hinted overloaded with CPU %s, want 3 of 5 over %.0f%%", cpuSeries(last), high)
	}
	for _, u := range last {
		if got := strings.Join(vmNames(u), ","); got != "web1,web2" || u.CPU.Count != placementCPUs {
			t.Errorf("hostA lists VMs %s on %d CPUs, want web1,web2 on %d", got, u.CPU.Count, placementCPUs)
		}
	}
	t.Logf("overloaded hint for hostA %v after the hogs started: %s; hostA CPU %s", hint.at.Sub(hogs).Round(time.Millisecond), hint.msg.Summary, cpuSeries(last))
	for _, u := range samples.since("hostB", hogs) {
		if strings.Join(vmNames(u), ",") != "db1" {
			t.Errorf("hostB sample %s lists VMs %v, want db1 only", u.TS.Format(time.TimeOnly), vmNames(u))
		}
	}
	if b := samples.last("hostB", 5); overIn(b, high, 3) {
		t.Errorf("hostB CPU %s with db1 idle, want under %.0f%%", cpuSeries(b), high)
	}
	if h, err := events.hint("hostB", protocol.HintOverloaded, protocol.HintRaised, calm); err == nil {
		t.Errorf("hostB was hinted overloaded with db1 idle: %s", h.msg.Summary)
	}

	var plan received[protocol.Plan]
	var move protocol.PlanMove
	eventually(t, ctx, time.Minute, "a plan moving a VM hostA→hostB", func(context.Context) error {
		var err error
		plan, move, err = events.planMoving("hostA", "hostB")
		return err
	})
	if len(move.VMs) != 1 || (move.VMs[0] != "web1" && move.VMs[0] != "web2") || len(plan.msg.Moves) != 1 {
		t.Fatalf("plan %s moves %+v, want one move of web1 or web2", plan.msg.ID, plan.msg.Moves)
	}
	mover := move.VMs[0]
	var done received[protocol.MoveOutcome]
	eventually(t, ctx, 3*time.Minute, "move "+move.ID+" done", func(context.Context) error {
		var err error
		done, err = events.outcome(move.ID, protocol.MoveDone)
		return err
	})
	moved := done.at
	t.Logf("plan %s: %s %s→%s (%s; predicted hostA %.0f%%, hostB %.0f%%) %v after the hint; done %v after the plan: QEMU total-time %d ms, downtime %d ms",
		plan.msg.ID, mover, move.From, move.To, move.Reason, move.FromCPUPct, move.ToCPUPct,
		plan.at.Sub(hint.at).Round(time.Millisecond), done.at.Sub(plan.at).Round(time.Millisecond), done.msg.DurationMS, done.msg.DowntimeMS)
	if done.msg.Executor != "qmp" || done.msg.DurationMS <= 0 {
		t.Errorf("outcome %+v, want the qmp executor's with a duration", done.msg)
	}
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

	// The collector's placement view: the usage it shows for hostB lists
	// the moved VM, hostA's overloaded hint has cleared, and the plan is
	// there with its move done.
	eventually(t, ctx, time.Minute, "/api/placement with "+mover+" on hostB, hostA no longer overloaded and the move done", func(ctx context.Context) error {
		p, err := fetchPlacement(ctx, api)
		if err != nil {
			return err
		}
		for _, h := range p.Hosts {
			switch {
			case h.Host == "hostB" && (h.Usage == nil || !slices.Contains(vmNames(*h.Usage), mover)):
				return fmt.Errorf("hostB's usage in the placement view lists no %s", mover)
			case h.Host == "hostA" && slices.ContainsFunc(h.Hints, func(x protocol.Hint) bool { return x.Kind == protocol.HintOverloaded }):
				return fmt.Errorf("hostA still has its overloaded hint")
			}
		}
		for _, pr := range p.Plans {
			if pr.Plan.ID == plan.msg.ID && pr.Outcomes[move.ID].State == protocol.MoveDone {
				return nil
			}
		}
		return fmt.Errorf("the placement view has no plan %s with move %s done", plan.msg.ID, move.ID)
	})
	if cleared, err := events.hint("hostA", protocol.HintOverloaded, protocol.HintCleared, moved); err == nil {
		t.Logf("hostA's overloaded hint cleared %v after the move", cleared.at.Sub(moved).Round(time.Millisecond))
	}
	page := fetchPage(t, ctx, api+"/placement")
	for _, want := range []string{"hostA", "hostB", mover, move.ID} {
		if !strings.Contains(page, want) {
			t.Errorf("the dashboard's placement page does not show %q", want)
		}
	}

	// Later cycles: the scheduler keeps planning, and moves nothing.
	cycles := waitCycles(t, ctx, kv, 3)
	if later := events.movesAfter(moved); len(later) > 0 {
		t.Errorf("cycles after the move planned %+v, want no move", later)
	}
	t.Logf("%d scheduler cycles after the move, %d plans published, no move", cycles, events.plansAfter(moved))
}

// fetchPlacement reads GET /api/placement.
func fetchPlacement(ctx context.Context, api string) (collector.Placement, error) {
	var p collector.Placement
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api+"/api/placement", nil)
	if err != nil {
		return p, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return p, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return p, fmt.Errorf("GET /api/placement: %s", resp.Status)
	}
	return p, json.NewDecoder(resp.Body).Decode(&p)
}

// waitHint waits for an overloaded hint for host on guestdiag.hint.<host>
// received after since.
func waitHint(t *testing.T, ctx context.Context, events *placementLog, samples *hostSamples, host string, since time.Time) received[protocol.Hint] {
	t.Helper()
	var h received[protocol.Hint]
	eventually(t, ctx, 2*time.Minute, "an overloaded hint for "+host, func(context.Context) error {
		var err error
		h, err = events.hint(host, protocol.HintOverloaded, protocol.HintRaised, since)
		if err != nil {
			return fmt.Errorf("%w; %s CPU %s", err, host, cpuSeries(samples.last(host, 5)))
		}
		if h.msg.Resource != "cpu" {
			return fmt.Errorf("%s overloaded on %s, want cpu", host, h.msg.Resource)
		}
		return nil
	})
	return h
}
