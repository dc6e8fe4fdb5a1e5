//go:build linux

package vmlab_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/internal/browsertest"
	"github.com/guestdiag/guestdiag/internal/collectord"
	"github.com/guestdiag/guestdiag/internal/webauth"
	"github.com/guestdiag/guestdiag/protocol"
	"github.com/guestdiag/guestdiag/test/vmlab"
)

// alertsAgentConfig runs the checks the faults below touch at short
// intervals, so that a fault that is cleared resolves within seconds.
const alertsAgentConfig = `{"checks": {
	"network":   {"interval": "30s", "config": {"internet_targets": ["10.0.2.3"], "dns_name": ""}},
	"processes": {"interval": "2s", "config": {"stopped_after": "2s"}},
	"firewall":  {"enabled": false},
	"logs":      {"interval": "3s"},
	"resources": {"interval": "3s", "config": {"cpu": {"warn": 80, "crit": 99}, "cpu_samples": 2}},
	"software":  {"enabled": false}
}}`

// alertWatch records every alert the collector publishes for one VM, and
// every finding the relay publishes for it, with their arrival times.
type alertWatch struct {
	mu       sync.Mutex
	alerts   []seenAlert
	findings []seenFinding
	added    chan struct{}
}

type seenAlert struct {
	at    time.Time
	alert collector.Alert
}

func watchAlerts(t *testing.T, nc *nats.Conn, vm string) *alertWatch {
	t.Helper()
	w := &alertWatch{added: make(chan struct{}, 1)}
	notify := func() {
		select {
		case w.added <- struct{}{}:
		default:
		}
	}
	alerts, err := nc.Subscribe(protocol.SubjectPrefix+".alert.*."+protocol.EscapeToken(labHost)+"."+protocol.EscapeToken(vm), func(m *nats.Msg) {
		at := time.Now()
		var a collector.Alert
		if err := json.Unmarshal(m.Data, &a); err != nil {
			t.Errorf("alert on %s does not decode: %v", m.Subject, err)
			return
		}
		w.mu.Lock()
		w.alerts = append(w.alerts, seenAlert{at: at, alert: a})
		w.mu.Unlock()
		notify()
	})
	if err != nil {
		t.Fatal(err)
	}
	reports, err := nc.Subscribe(protocol.SubjectPrefix+".report."+protocol.EscapeToken(labHost)+"."+protocol.EscapeToken(vm)+".*", func(m *nats.Msg) {
		at := time.Now()
		var rep protocol.Report
		if json.Unmarshal(m.Data, &rep) != nil {
			return
		}
		e, err := protocol.Decode(rep.Guest)
		if err != nil {
			return
		}
		w.mu.Lock()
		for _, f := range e.Findings {
			w.findings = append(w.findings, seenFinding{at: at, check: e.Check, status: e.Status, finding: f})
		}
		w.mu.Unlock()
		notify()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { alerts.Unsubscribe(); reports.Unsubscribe() })
	return w
}

// await returns the first alert published after since in state with code
// that satisfies match, waiting up to within.
func (w *alertWatch) await(t *testing.T, ctx context.Context, state collector.AlertState, code string, since time.Time, within time.Duration, match func(collector.Alert) bool) seenAlert {
	t.Helper()
	return awaitFirst(t, ctx, &w.mu, &w.alerts, w.added, within, func(s seenAlert) bool {
		return s.at.After(since) && s.alert.State == state && s.alert.Key.Code == code && (match == nil || match(s.alert))
	}, func(alerts []seenAlert) string {
		var seen []string
		for _, s := range alerts {
			if s.at.After(since) {
				seen = append(seen, fmt.Sprintf("%s %s", s.alert.State, s.alert.Key.Code))
			}
		}
		return fmt.Sprintf("no %s alert %s within %v; alerts since: %v", state, code, within, seen)
	})
}

// findingAt is when the finding with code first reached NATS after since,
// or the zero time.
func (w *alertWatch) findingAt(code string, since time.Time) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range w.findings {
		if s.finding.Code == code && s.at.After(since) {
			return s.at
		}
	}
	return time.Time{}
}

// latencies collects, per fault kind, the time from the injection to the
// alert on NATS, and from the finding on NATS to the alert (the collector's
// share).
type latencies map[string][][2]time.Duration

func (l latencies) add(kind string, fault, pipeline time.Duration) {
	l[kind] = append(l[kind], [2]time.Duration{fault, pipeline})
}

func (l latencies) report(t *testing.T) {
	kinds := make([]string, 0, len(l))
	for k := range l {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		var fault, pipe []time.Duration
		for _, d := range l[k] {
			fault, pipe = append(fault, d[0]), append(pipe, d[1])
		}
		slices.Sort(fault)
		slices.Sort(pipe)
		t.Logf("fault→alert %-24s runs %d  p50 %6v  max %6v   finding→alert p50 %6v  max %6v", k, len(fault),
			fault[len(fault)/2].Round(time.Millisecond), fault[len(fault)-1].Round(time.Millisecond),
			pipe[len(pipe)/2].Round(time.Millisecond), pipe[len(pipe)-1].Round(time.Millisecond))
	}
}

// TestIntegrationAlerts injects real faults into a running guest, several
// times each, and checks that each ends as one alert on NATS carrying the
// knowledge-base resolution an administrator would follow, and that the
// alert resolves once the fault is removed. It also stops the agent with
// SIGSTOP, which only the collector's silence detection can notice.
func TestIntegrationAlerts(t *testing.T) {
	const runs = 3
	ctx := t.Context()
	l, srv, nc := faultLab(t)
	w := watchAlerts(t, nc, "delta")

	vm := bootAgent(t, ctx, l, vmlab.AgentGuest{
		Name: "delta", ID: 4, Network: true, AgentConfig: alertsAgentConfig,
		AgentArgs: []string{"--heartbeat", "2s"},
	})
	startRelayProcess(t, buildRelay(t), srv.ClientURL(), l.ChannelGlob())
	// The same injection runs several times within minutes, which flap
	// damping would rightly hold as one flapping alert; the collector's own
	// tests cover that. Here every run must fire and resolve.
	api := startControlPlane(t, nc, collectord.Config{
		Collector: collector.Config{Policy: collector.Policy{FlapCount: 1000}},
		Auth:      webauth.Config{UsersFile: labUsersFile(t)},
	})

	eventually(t, ctx, 3*time.Minute, "delta's resources, processes and logs report", func(ctx context.Context) error {
		vms, err := fetchVMsAs(ctx, api, labUser, labPassword)
		if err != nil {
			return err
		}
		for _, v := range vms {
			if v.Name != "delta" {
				continue
			}
			for _, c := range []string{"resources", "processes", "logs", "network"} {
				if v.Checks[c] == nil {
					return fmt.Errorf("no %s result yet", c)
				}
			}
			return nil
		}
		return fmt.Errorf("delta not in the collector's %d VMs", len(vms))
	})

	lat := latencies{}
	// cycle injects a fault, waits for its alert, checks it, clears the
	// fault and waits for the alert to resolve.
	cycle := func(t *testing.T, kind, code string, fireWithin time.Duration, inject func(run int) (clear func()), check func(collector.Alert)) {
		t.Helper()
		for i := range runs {
			at := time.Now()
			clear := inject(i)
			fired := w.await(t, ctx, collector.AlertFiring, code, at, fireWithin, nil)
			pipeline := time.Duration(0)
			if f := w.findingAt(code, at); !f.IsZero() {
				pipeline = fired.at.Sub(f)
			}
			lat.add(kind, fired.at.Sub(at), pipeline)
			if i == 0 {
				t.Logf("%s fired %v after the injection: %s", code, fired.at.Sub(at).Round(time.Millisecond), fired.alert.Summary)
				check(fired.alert)
			}
			cleared := time.Now()
			clear()
			res := w.await(t, ctx, collector.AlertResolved, code, cleared, 60*time.Second, func(a collector.Alert) bool {
				return a.Fingerprint == fired.alert.Fingerprint
			})
			if i == 0 {
				t.Logf("%s resolved %v after the fault was removed", code, res.at.Sub(cleared).Round(time.Millisecond))
			}
		}
	}
	hasResolution := func(t *testing.T, a collector.Alert, kbID func(string) bool) {
		t.Helper()
		if a.Key.Host != labHost || a.Key.VM != "delta" {
			t.Errorf("alert is for %s/%s, want %s/delta", a.Key.Host, a.Key.VM, labHost)
		}
		i := slices.IndexFunc(a.KB, func(m collector.KBMatch) bool { return kbID(m.ID) })
		if i < 0 {
			ids := make([]string, len(a.KB))
			for j, m := range a.KB {
				ids[j] = m.ID
			}
			t.Fatalf("alert %s carries KB entries %v, not the expected one", a.Key.Code, ids)
		}
		if len(a.KB[i].Resolution) == 0 || a.KB[i].Cause == "" {
			t.Errorf("KB entry %s has no cause or resolution in the alert", a.KB[i].ID)
		}
		t.Logf("KB %s: %s; first step: %s", a.KB[i].ID, a.KB[i].Title, a.KB[i].Resolution[0])
	}

	t.Run("an OOM kill in the kernel log is one alert with the OOM resolution, resolved by the next clean run", func(t *testing.T) {
		// The logs check holds back repeats of one message for its
		// aggregate window, so each run kills another process.
		victims := []string{"java", "postgres", "mysqld"}
		cycle(t, "log: OOM killer", "log.critical", 10*time.Second, func(run int) func() {
			exec1(t, ctx, vm, `echo '<2>kernel: Out of memory: Killed process 4242 (`+victims[run]+`) total-vm:6410828kB, anon-rss:3926448kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:8120kB oom_score_adj:0' > /dev/kmsg`)
			return func() {}
		}, func(a collector.Alert) {
			hasResolution(t, a, func(id string) bool { return strings.Contains(id, "oom") })
			if !strings.Contains(a.Evidence.Finding.Message, "Killed process 4242 (java)") {
				t.Errorf("evidence %q is not the guest's log line", a.Evidence.Finding.Message)
			}
		})
	})
	t.Run("the dashboard shows the VM's alerts with their resolution, and a new one arrives without a reload", func(t *testing.T) {
		b := browsertest.Start(t, 2*time.Minute)
		browsertest.Login(t, b, api, labUser, labPassword)
		if err := chromedp.Do(b, chromedp.Navigate(api+"/vm/"+url.PathEscape(labHost)+"/delta")); err != nil {
			t.Fatal(err)
		}
		// The OOM alert above has resolved; its history keeps the entry.
		browsertest.WaitText(t, b, "main", "Alert history")
		if err := chromedp.Do(b, chromedp.Evaluate[chromedp.Void](`window.__marker = "still-here"`)); err != nil {
			t.Fatal(err)
		}
		pid := strings.TrimSpace(exec1(t, ctx, vm, "sleep 100000 & sleep 0.2; kill -STOP $!; echo $!"))
		defer exec1(t, ctx, vm, "kill -9 "+pid)
		browsertest.WaitText(t, b, "main", "proc.stopped")
		browsertest.WaitText(t, b, "main", "A process has been stopped for a long time")
		browsertest.WaitText(t, b, "main", "Resolution")
		marker, err := chromedp.Run(b, chromedp.Evaluate[string](`window.__marker`))
		if err != nil || marker != "still-here" {
			t.Errorf("window.__marker = %q (%v): the page reloaded instead of updating", marker, err)
		}
		browsertest.Screenshot(t, b, "vm-delta-proc-stopped")
	})
	t.Run("a stopped process is proc.stopped until it runs again", func(t *testing.T) {
		cycle(t, "process stopped", "proc.stopped", 20*time.Second, func(int) func() {
			pid := strings.TrimSpace(exec1(t, ctx, vm, "sleep 100000 & sleep 0.2; kill -STOP $!; echo $!"))
			return func() { exec1(t, ctx, vm, "kill -9 "+pid) }
		}, func(a collector.Alert) {
			hasResolution(t, a, func(id string) bool { return id == "guestdiag.proc.stopped" })
		})
	})
	t.Run("a cut link is net.gateway_unreachable until the link is back", func(t *testing.T) {
		cycle(t, "network: link cut", "net.gateway_unreachable", 10*time.Second, func(int) func() {
			if err := vm.SetLink(ctx, vmlab.NetdevID, false); err != nil {
				t.Fatal(err)
			}
			return func() {
				if err := vm.SetLink(ctx, vmlab.NetdevID, true); err != nil {
					t.Fatal(err)
				}
			}
		}, func(a collector.Alert) {
			hasResolution(t, a, func(id string) bool { return id == "guestdiag.net.gateway_unreachable" })
			if a.Severity != string(protocol.SeverityCrit) {
				t.Errorf("severity %s, want crit", a.Severity)
			}
		})
	})
	t.Run("a CPU hog is res.cpu_high until it is killed", func(t *testing.T) {
		cycle(t, "resources: CPU hog", "res.cpu_high", 60*time.Second, func(int) func() {
			pid := strings.TrimSpace(exec1(t, ctx, vm, "vmlab-guest hog & echo $!"))
			return func() { exec1(t, ctx, vm, "kill "+pid) }
		}, func(a collector.Alert) {
			hasResolution(t, a, func(id string) bool { return id == "guestdiag.res.cpu_high" })
		})
	})
	t.Run("an agent stopped with SIGSTOP is vm.agent_silent until it is continued", func(t *testing.T) {
		// Heartbeats every 2 s: silent after 3 missed ones.
		cycle(t, "agent stopped", "vm.agent_silent", 30*time.Second, func(int) func() {
			pid := strings.TrimSpace(exec1(t, ctx, vm, "pidof guestdiag-agent"))
			exec1(t, ctx, vm, "kill -STOP "+pid)
			return func() { exec1(t, ctx, vm, "kill -CONT "+pid) }
		}, func(a collector.Alert) {
			hasResolution(t, a, func(id string) bool { return id == "guestdiag.vm.agent_silent" })
		})
	})
	lat.report(t)

	// Each injection is one alert: the same alert (fingerprint and start)
	// is published firing again only when its severity changes, since the
	// re-notify interval is hours.
	w.mu.Lock()
	defer w.mu.Unlock()
	type instance struct {
		fingerprint, severity string
		starts                time.Time
	}
	published := map[instance]int{}
	for _, s := range w.alerts {
		if s.alert.State == collector.AlertFiring {
			published[instance{s.alert.Fingerprint, s.alert.Severity, s.alert.StartsAt}]++
		}
	}
	for in, n := range published {
		if n > 1 {
			t.Errorf("alert %s (%s, since %v) published firing %d times", in.fingerprint, in.severity, in.starts, n)
		}
	}
}
