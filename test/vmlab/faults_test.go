//go:build linux

package vmlab_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/guestdiag/guestdiag/protocol"
	"github.com/guestdiag/guestdiag/test/vmlab"
)

// faultsAgentConfig turns every check on with lab-sized thresholds; the
// software check waits only half a second for dpkg to settle (5 s by
// default), since one package is installed at a time here. The
// "internet" target is QEMU's DNS address, which answers ping on the
// restricted user network; nothing leaves this machine.
const faultsAgentConfig = `{"checks": {
	"network":   {"interval": "30s", "config": {"internet_targets": ["10.0.2.3"], "dns_name": ""}},
	"processes": {"interval": "2s", "config": {"stopped_after": "2s"}},
	"firewall":  {"interval": "60s"},
	"logs":      {"interval": "60s"},
	"resources": {"interval": "3s", "config": {"cpu": {"warn": 80, "crit": 99}, "cpu_samples": 2}},
	"software":  {"interval": "60s", "config": {"settle": "500ms"}}
}}`

// reportWatch records every finding the relay publishes for one VM, with
// the time it arrived on NATS.
type reportWatch struct {
	mu      sync.Mutex
	seen    []seenFinding
	results map[string]protocol.Status // latest status per check
	added   chan struct{}
}

type seenFinding struct {
	at      time.Time
	check   string
	status  protocol.Status
	finding protocol.Finding
	data    json.RawMessage
}

func watchReports(t *testing.T, nc *nats.Conn, vm string) *reportWatch {
	t.Helper()
	w := &reportWatch{added: make(chan struct{}, 1), results: map[string]protocol.Status{}}
	subject := protocol.SubjectPrefix + ".report." + protocol.EscapeToken(labHost) + "." + protocol.EscapeToken(vm) + ".*"
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		at := time.Now()
		var rep protocol.Report
		if json.Unmarshal(m.Data, &rep) != nil || rep.Guest == nil {
			return
		}
		e, err := protocol.Decode(rep.Guest)
		if err != nil {
			return
		}
		w.mu.Lock()
		if e.Kind == protocol.KindResult {
			w.results[e.Check] = e.Status
		}
		for _, f := range e.Findings {
			w.seen = append(w.seen, seenFinding{at: at, check: e.Check, status: e.Status, finding: f, data: e.Data})
		}
		w.mu.Unlock()
		select {
		case w.added <- struct{}{}:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	return w
}

// await returns the first finding with code that arrived after since and
// satisfies match, waiting up to within.
func (w *reportWatch) await(t *testing.T, ctx context.Context, code string, since time.Time, within time.Duration, match func(seenFinding) bool) seenFinding {
	t.Helper()
	return awaitFirst(t, ctx, &w.mu, &w.seen, w.added, within, func(s seenFinding) bool {
		return s.finding.Code == code && s.at.After(since) && (match == nil || match(s))
	}, func(seen []seenFinding) string {
		var codes []string
		for _, s := range seen {
			if s.at.After(since) {
				codes = append(codes, s.check+":"+s.finding.Code)
			}
		}
		return fmt.Sprintf("no %s within %v of the injection; findings since: %v", code, within, codes)
	})
}

// awaitFirst returns the first item of *items (guarded by mu) that match
// accepts, waking on added, and fails the test with what describe says of
// the items when within passes first.
func awaitFirst[T any](t *testing.T, ctx context.Context, mu *sync.Mutex, items *[]T, added <-chan struct{}, within time.Duration, match func(T) bool, describe func([]T) string) T {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		mu.Lock()
		i := slices.IndexFunc(*items, match)
		var got T
		if i >= 0 {
			got = (*items)[i]
		}
		mu.Unlock()
		if i >= 0 {
			return got
		}
		select {
		case <-added:
		case <-deadline.C:
			mu.Lock()
			msg := describe(*items)
			mu.Unlock()
			t.Fatal(msg)
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
	}
}

func exec1(t *testing.T, ctx context.Context, vm *vmlab.VM, cmd string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	r, err := vm.Exec(ctx, cmd)
	if err != nil {
		t.Fatal(err)
	}
	if r.Exit != 0 {
		t.Fatalf("guest: %s: exit %d: %s", cmd, r.Exit, r.Output)
	}
	return r.Output
}

// TestIntegrationFaults injects real faults into a running guest and checks
// that each one reaches NATS, through virtio-serial and the relay, as the
// finding an administrator would look for.
func TestIntegrationFaults(t *testing.T) {
	ctx := t.Context()
	l, srv, nc := faultLab(t)
	reports := watchReports(t, nc, "gamma")

	vm := bootAgent(t, ctx, l, vmlab.AgentGuest{
		Name: "gamma", ID: 3, Network: true, Modules: vmlab.NFTablesModules,
		AgentConfig: faultsAgentConfig,
		Files:       []vmlab.File{{HostPath: "testdata/guest/dpkg-status", GuestPath: "/var/lib/dpkg/status", Mode: 0o644}, {HostPath: "testdata/guest/dpkg-install-nginx.sh", GuestPath: "/etc/vmlab/dpkg-install-nginx.sh", Mode: 0o644}},
	})
	startRelayProcess(t, buildRelay(t), srv.ClientURL(), l.ChannelGlob())
	api := startCollector(t, nc)

	// Every check has reported once, so baselines (packages, ruleset) and
	// log positions are committed before anything is injected.
	allChecks := []string{"firewall", "logs", "network", "processes", "resources", "software"}
	eventually(t, ctx, 3*time.Minute, "a result from every check", func(context.Context) error {
		reports.mu.Lock()
		defer reports.mu.Unlock()
		for _, c := range allChecks {
			if _, ok := reports.results[c]; !ok {
				return fmt.Errorf("no %s result yet (have %v)", c, reports.results)
			}
		}
		return nil
	})
	reports.mu.Lock()
	t.Logf("first statuses: %v", reports.results)
	reports.mu.Unlock()

	latency := map[string]time.Duration{}
	// event runs a fault whose check watches for it: the report must reach
	// NATS within 2 s of the injection, the target, plus 3 s of
	// slack for the software-emulated CPU of the lab.
	event := func(t *testing.T, code, cmd string, match func(seenFinding) bool) seenFinding {
		t.Helper()
		at := time.Now()
		exec1(t, ctx, vm, cmd)
		got := reports.await(t, ctx, code, at, 5*time.Second, match)
		latency[code] = got.at.Sub(at)
		t.Logf("%s reached NATS %v after the injection: %s", code, got.at.Sub(at).Round(time.Millisecond), got.finding.Message)
		return got
	}

	t.Run("a package installed by dpkg is sw.installed", func(t *testing.T) {
		event(t, "sw.installed", "sh /etc/vmlab/dpkg-install-nginx.sh", func(s seenFinding) bool {
			return strings.Contains(s.finding.Message, "nginx") && strings.Contains(s.finding.Message, "1.22.1-9+deb12u3")
		})
	})
	t.Run("an nftables rule added over netlink is fw.changed", func(t *testing.T) {
		got := event(t, "fw.changed", "vmlab-guest nft-drop 2222", nil)
		if !strings.Contains(string(got.data), "tcp dport 2222 drop") {
			t.Errorf("fw.changed data does not list the rule added: %s", got.data)
		}
	})
	t.Run("an error written to /dev/kmsg is log.error", func(t *testing.T) {
		event(t, "log.error", "echo '<3>vmlab-disk: I/O error, dev vdb, sector 2048' > /dev/kmsg", func(s seenFinding) bool {
			return strings.Contains(s.finding.Message, "I/O error")
		})
	})
	t.Run("a stopped process is proc.stopped", func(t *testing.T) {
		at := time.Now()
		pid := strings.TrimSpace(exec1(t, ctx, vm, "sleep 100000 & sleep 0.2; kill -STOP $!; echo $!"))
		got := reports.await(t, ctx, "proc.stopped", at, 30*time.Second, func(s seenFinding) bool {
			return strings.Contains(s.finding.Source, "["+pid+"]")
		})
		t.Logf("proc.stopped %v after SIGSTOP (stopped_after 2s, polled every 2s): %s", got.at.Sub(at).Round(time.Millisecond), got.finding.Message)
		exec1(t, ctx, vm, "kill -9 "+pid)
	})
	t.Run("a CPU hog is res.cpu_high with the hog among the top processes", func(t *testing.T) {
		at := time.Now()
		pid := strings.TrimSpace(exec1(t, ctx, vm, "vmlab-guest hog & echo $!"))
		defer exec1(t, ctx, vm, "kill "+pid)
		got := reports.await(t, ctx, "res.cpu_high", at, 60*time.Second, nil)
		var data struct {
			TopCPU []struct {
				PID  int    `json:"pid"`
				Name string `json:"name"`
			} `json:"top_cpu"`
		}
		if err := json.Unmarshal(got.data, &data); err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(data.TopCPU, func(p struct {
			PID  int    `json:"pid"`
			Name string `json:"name"`
		}) bool {
			return fmt.Sprint(p.PID) == pid
		}) {
			t.Errorf("top_cpu %+v does not hold the hog, pid %s", data.TopCPU, pid)
		}
		t.Logf("res.cpu_high %v after the hog started: %s", got.at.Sub(at).Round(time.Millisecond), got.finding.Message)
	})
	t.Run("a link cut with set_link is net.gateway_unreachable, reported without the network", func(t *testing.T) {
		at := time.Now()
		if err := vm.SetLink(ctx, vmlab.NetdevID, false); err != nil {
			t.Fatal(err)
		}
		got := reports.await(t, ctx, "net.gateway_unreachable", at, 5*time.Second, nil)
		latency["net.gateway_unreachable"] = got.at.Sub(at)
		t.Logf("net.gateway_unreachable reached NATS %v after set_link down: %s", got.at.Sub(at).Round(time.Millisecond), got.finding.Message)
		eventually(t, ctx, 30*time.Second, "the collector shows gamma's network failure", func(ctx context.Context) error {
			vms, err := fetchVMs(ctx, api)
			if err != nil {
				return err
			}
			for _, v := range vms {
				if c := v.Checks["network"]; v.Name == "gamma" && c != nil && c.Status == protocol.StatusCrit &&
					slices.ContainsFunc(c.Findings, func(f protocol.Finding) bool { return f.Code == "net.gateway_unreachable" }) {
					return nil
				}
			}
			return fmt.Errorf("gamma's network check is not crit with net.gateway_unreachable in %d VMs", len(vms))
		})
		if err := vm.SetLink(ctx, vmlab.NetdevID, true); err != nil {
			t.Fatal(err)
		}
	})

	hwm := exec1(t, ctx, vm, "grep -E 'VmHWM|VmRSS' /proc/$(pidof guestdiag-agent)/status")
	t.Logf("agent memory with all six checks on, after the faults: %s", strings.Join(strings.Fields(hwm), " "))
	t.Logf("detection latency (injection to NATS): %v", latency)
}
