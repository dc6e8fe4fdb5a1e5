package dashboard

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/kb"
	"github.com/guestdiag/guestdiag/protocol"
)

// fakeSource stands in for the collector in unit tests only: the
// collector's Source methods are built elsewhere, and these tests are about
// what the dashboard makes of the state, not how the state is kept. It
// holds VMs, alerts, timelines and KB entries in memory and lets a test
// fire Changes to subscribers.
type fakeSource struct {
	mu       sync.Mutex
	loaded   bool
	vms      []collector.VM
	alerts   []collector.Alert
	timeline map[[2]string][]collector.TimelineEvent
	entries  []*kb.Entry
	subs     map[chan collector.Change]struct{}
	place    collector.Placement
	marks    []markCall
}

func newFakeSource() *fakeSource {
	return &fakeSource{loaded: true, timeline: make(map[[2]string][]collector.TimelineEvent), subs: make(map[chan collector.Change]struct{})}
}

func (f *fakeSource) VMs() ([]collector.VM, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	vms := slices.Clone(f.vms)
	slices.SortFunc(vms, func(a, b collector.VM) int { return cmp.Or(cmp.Compare(a.Host, b.Host), cmp.Compare(a.Name, b.Name)) })
	return vms, f.loaded
}

func (f *fakeSource) Alerts(flt collector.AlertFilter) []collector.Alert {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []collector.Alert
	for _, a := range f.alerts {
		if flt.State != "" && a.State != flt.State || flt.Severity != "" && a.Severity != flt.Severity ||
			flt.Host != "" && a.Key.Host != flt.Host || flt.VM != "" && a.Key.VM != flt.VM || flt.Code != "" && a.Key.Code != flt.Code {
			continue
		}
		out = append(out, a)
	}
	slices.SortStableFunc(out, func(a, b collector.Alert) int {
		return cmp.Or(cmp.Compare(a.State, b.State),
			cmp.Compare(statusRank(a.Severity), statusRank(b.Severity)), b.StartsAt.Compare(a.StartsAt))
	})
	return out
}

func (f *fakeSource) Timeline(host, vm string) []collector.TimelineEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.timeline[[2]string{host, vm}])
}

func (f *fakeSource) Subscribe(ctx context.Context) <-chan collector.Change {
	ch := make(chan collector.Change, 64)
	f.mu.Lock()
	f.subs[ch] = struct{}{}
	f.mu.Unlock()
	go func() {
		<-ctx.Done()
		f.mu.Lock()
		delete(f.subs, ch)
		close(ch)
		f.mu.Unlock()
	}()
	return ch
}

// subscribers is how many streams are open, so that a test can wait for
// the page's EventSource before it fires a change.
func (f *fakeSource) subscribers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}

func (f *fakeSource) fire(c collector.Change) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch := range f.subs {
		select {
		case ch <- c:
		default:
		}
	}
}

// MatchKB stands in for the collector's matcher with the simplest rule
// the fake's entries need: the same code.
func (f *fakeSource) MatchKB(_ *collector.VM, fd *protocol.Finding) []*kb.Entry {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*kb.Entry
	for _, e := range f.entries {
		if e.Match.Code == fd.Code {
			out = append(out, e)
		}
	}
	return out
}

func (f *fakeSource) SearchKB(q string, limit int) []*kb.Entry {
	f.mu.Lock()
	defer f.mu.Unlock()
	q = strings.ToLower(q)
	var out []*kb.Entry
	for _, e := range f.entries {
		hay := strings.ToLower(strings.Join([]string{e.ID, e.Title, e.Match.Code, strings.Join(e.Match.Provider, " "), e.Cause}, " "))
		for _, id := range e.Match.EventIDs {
			hay += " " + strconv.Itoa(int(id))
		}
		if strings.Contains(hay, q) && len(out) < limit {
			out = append(out, e)
		}
	}
	return out
}

// update changes the fake's state under its lock.
func (f *fakeSource) update(fn func(f *fakeSource)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// Hostile guest text used throughout the tests.
const (
	scriptName  = `<script>alert(1)</script>`
	imgPayload  = `"><img src=x onerror=alert(1)>`
	jsName      = `javascript:alert(1)`
	badUTF8     = "disk \xff\xfe error \x1b[31m red"
	pwnedScript = `<script>window.__pwned=1</script>`
	pwnedImg    = `<img src=x onerror="window.__pwned=2">`
)

// longName is a 200-byte VM name with spaces, dots, '*' and '>'.
var longName = func() string {
	s := strings.Repeat("vm with spaces.dots*and>arrows ", 7)
	return s[:200]
}()

// t0 is the fixture's "now": the real time, so that the browser test's pages,
// which run on the real clock, read as fresh.
var t0 = time.Now().UTC().Truncate(time.Second)

func raw(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func check(status protocol.Status, summary string, data any, findings ...protocol.Finding) *collector.Check {
	c := &collector.Check{Kind: protocol.KindResult, Status: status, Summary: summary, Findings: findings, FindingsTotal: len(findings)}
	c.Origin = collector.Origin{Run: "r1", Seq: 1, TS: t0.Add(-time.Minute), Received: t0.Add(-time.Minute)}
	if data != nil {
		c.Data = raw(data)
	}
	return c
}

func vmRecord(host, name string, checks map[string]*collector.Check) collector.VM {
	return collector.VM{
		Name: name, Host: host, UUID: "0b9d1c6e-53f1-4a51-9c1e-" + strconv.Itoa(len(name)),
		Channel:  collector.Channel{Name: "org.guestdiag.0", State: protocol.ChannelConnected, Since: t0.Add(-time.Hour)},
		LastSeen: t0.Add(-5 * time.Second),
		Hello: &collector.Hello{ClaimedHostname: name, OS: "linux", Platform: "debian 13", Kernel: "6.12.0", Arch: "amd64",
			AgentVersion: "0.7.0", Checks: []string{"network", "processes", "firewall", "logs", "resources", "software"}},
		Heartbeat: &collector.Heartbeat{UptimeSec: 86400, Spooled: 0},
		Checks:    checks,
	}
}

// fixture is a small fleet: web-1 with a full disk, a high CPU, a firewall
// change and new packages; db-1 healthy; and on another host a hostile
// guest whose every string is an attack, plus one with a 200-byte name.
func fixture() *fakeSource {
	f := newFakeSource()
	web := vmRecord("kvm-a", "web-1", map[string]*collector.Check{
		"resources": check(protocol.StatusCrit, "disk / 98% full", map[string]any{
			"cpu":     map[string]any{"used_pct": 96.5, "count": 2, "steal_pct": 0.4},
			"memory":  map[string]any{"used_pct": 61.2, "total_bytes": 4 << 30},
			"load":    map[string]any{"load1": 2.5, "load5": 2.1, "load15": 1.9},
			"top_cpu": []any{map[string]any{"pid": 4242, "name": "java-busy", "user": "app", "cpu_pct": 180.5, "rss_bytes": 1 << 30}},
			"top_memory": []any{map[string]any{"pid": 4242, "name": "java-busy", "user": "app", "cpu_pct": 180.5, "rss_bytes": 1 << 30},
				map[string]any{"pid": 77, "name": "postgres", "user": "postgres", "cpu_pct": 1.0, "rss_bytes": 300 << 20}},
			"disks": []any{map[string]any{"mountpoint": "/", "device": "/dev/vda1", "fstype": "ext4", "used_pct": 98.1}},
		}, protocol.Finding{Code: "res.disk_full", Severity: protocol.SeverityCrit, Message: "/ is 98% full (1.2 GiB free)", Source: "/"}),
		"network": check(protocol.StatusOK, "gateway 10.0.0.1 answers", map[string]any{
			"interface": "eth0", "mac": "52:54:00:12:34:56", "addresses": []string{"10.0.0.15/24", "fe80::5054:ff:fe12:3456/64"},
			"link_state": "up", "gateway": "10.0.0.1", "metric": 100,
			"pings": []any{map[string]any{"role": "gateway", "target": "10.0.0.1", "sent": 3, "received": 3, "loss_pct": 0, "rtt_avg_ms": 0.4}},
			"dns":   map[string]any{"name": "example.com", "addresses": []string{"93.184.215.14"}, "ms": 12},
		}),
		"firewall": check(protocol.StatusWarn, "ruleset changed", map[string]any{
			"enabled": true, "reasons": []string{"inet filter input drops by policy"}, "fingerprint": "ab12", "baseline_fingerprint": "cd34",
			"added": []string{"inet filter input: tcp dport 8080 accept"}, "removed": []string{"inet filter input: tcp dport 23 accept"},
			"added_count": 1, "removed_count": 1, "tables": []any{map[string]any{"name": "inet filter", "chains": 3, "rules": 12}},
		}, protocol.Finding{Code: "fw.changed", Severity: protocol.SeverityWarn, Message: "1 rules added, 1 removed in table inet filter", Source: "inet filter"}),
		"software": check(protocol.StatusOK, "1 installed", map[string]any{
			"total": 751, "installed": 1,
			"changes": []any{map[string]any{"change": "installed", "source": "dpkg", "name": "htop", "arch": "amd64", "version": "3.2.2-2"}},
		}, protocol.Finding{Code: "sw.installed", Severity: protocol.SeverityInfo, Message: "installed htop (amd64) 3.2.2-2 [dpkg]", Source: "dpkg:htop"}),
		"logs": check(protocol.StatusWarn, "2 errors", map[string]any{
			"entries": []any{map[string]any{"time": "2026-03-01T11:59:00Z", "source": "journald", "unit": "nginx.service", "message": "connect() failed (111: Connection refused)"}},
		}, protocol.Finding{Code: "log.error", Severity: protocol.SeverityWarn, Message: "connect() failed (111: Connection refused)", Source: "journald", Unit: "nginx.service", Count: 2}),
		"processes": check(protocol.StatusOK, "nothing stuck", map[string]any{"total": 120}),
	})
	db := vmRecord("kvm-a", "db-1", map[string]*collector.Check{
		"resources": check(protocol.StatusOK, "fine", nil),
		"network":   check(protocol.StatusOK, "fine", nil),
	})
	hostile := vmRecord("kvm-b", scriptName, map[string]*collector.Check{
		"processes": check(protocol.StatusCrit, imgPayload, map[string]any{
			"processes": []any{map[string]any{"pid": 1, "name": imgPayload, "state": "D", "cmdline": pwnedScript, "wchan": jsName}},
			"units":     []any{map[string]any{"name": jsName, "state": "failed", "watched": true}},
		}, protocol.Finding{Code: "proc.service_failed", Severity: protocol.SeverityCrit, Message: pwnedScript + pwnedImg, Source: jsName, Unit: imgPayload}),
		"resources": check(protocol.StatusWarn, badUTF8, map[string]any{
			"top_cpu": []any{map[string]any{"pid": 666, "name": pwnedScript, "user": imgPayload, "cpu_pct": 99}},
		}),
		"logs": check(protocol.StatusWarn, "log", map[string]any{
			"entries": []any{map[string]any{"message": badUTF8 + pwnedImg, "unit": scriptName}},
		}, protocol.Finding{Code: "log.error", Severity: protocol.SeverityWarn, Message: badUTF8, Source: "journald", Unit: scriptName}),
		scriptName: check(protocol.StatusWarn, "invented check", nil),
	})
	hostile.Hello.ClaimedHostname = pwnedScript
	hostile.Hello.AgentVersion = imgPayload
	hostile.Channel.Reason = pwnedImg
	long := vmRecord("kvm-b", longName, map[string]*collector.Check{"network": check(protocol.StatusUnknown, "no ICMP socket", nil)})
	jsvm := vmRecord(jsName, jsName, nil)
	f.vms = []collector.VM{web, db, hostile, long, jsvm}
	f.place = placementFixture()

	diskKB := collector.KBMatch{ID: "res-disk-full", Title: "Filesystem almost full", Severity: "crit",
		Cause:      "A filesystem has less than 3 % of its space left; writes will soon fail with ENOSPC.",
		Resolution: []string{"Find what grew: du -xh --max-depth=2 / | sort -h | tail", "Clean the journal: journalctl --vacuum-size=200M"},
		References: []string{"https://man7.org/linux/man-pages/man1/du.1.html", jsName}}
	f.alerts = []collector.Alert{
		{Fingerprint: "f1", Key: collector.AlertKey{Host: "kvm-a", VM: "web-1", Check: "resources", Code: "res.disk_full", Source: "/"},
			State: collector.AlertFiring, Severity: "crit", Summary: "/ is 98% full on web-1", StartsAt: t0.Add(-10 * time.Minute), Updated: t0.Add(-10 * time.Minute),
			KB: []collector.KBMatch{diskKB}, Evidence: collector.Evidence{Finding: protocol.Finding{Code: "res.disk_full", Message: "/ is 98% full (1.2 GiB free)"}}},
		{Fingerprint: "f2", Key: collector.AlertKey{Host: "kvm-a", VM: "web-1", Check: "firewall", Code: "fw.changed", Source: "inet filter"},
			State: collector.AlertFiring, Severity: "warn", Summary: "firewall ruleset changed on web-1", StartsAt: t0.Add(-3 * time.Minute)},
		{Fingerprint: "f3", Key: collector.AlertKey{Host: "kvm-a", VM: "web-1", Check: "resources", Code: "res.memory_high"},
			State: collector.AlertResolved, Severity: "warn", Summary: "memory 93% used on web-1", StartsAt: t0.Add(-5 * time.Hour), EndsAt: t0.Add(-4 * time.Hour)},
		{Fingerprint: "f4", Key: collector.AlertKey{Host: "kvm-b", VM: scriptName, Check: "processes", Code: "proc.service_failed", Source: jsName},
			State: collector.AlertFiring, Severity: "crit", Summary: "unit " + imgPayload + " failed", StartsAt: t0.Add(-time.Minute),
			KB:       []collector.KBMatch{{ID: "x", Title: pwnedScript, Cause: pwnedImg, Resolution: []string{scriptName}, References: []string{jsName}}},
			Evidence: collector.Evidence{Finding: protocol.Finding{Message: pwnedScript}, Lines: []string{pwnedImg}, Data: raw(map[string]string{"k": pwnedScript})}},
	}
	f.timeline[[2]string{"kvm-a", "web-1"}] = []collector.TimelineEvent{
		{TS: t0.Add(-10 * time.Minute), Kind: "alert", Check: "resources", From: "ok", To: "crit", Text: "res.disk_full firing: / is 98% full"},
		{TS: t0.Add(-2 * time.Hour), Kind: "software", Check: "software", Text: "installed htop 3.2.2-2"},
	}
	f.timeline[[2]string{"kvm-b", scriptName}] = []collector.TimelineEvent{{TS: t0, Kind: "status", Text: pwnedScript}}
	f.entries = []*kb.Entry{
		{ID: "res-disk-full", Title: "Filesystem almost full", Severity: "crit", Match: kb.Match{Code: "res.disk_full"},
			Cause: diskKB.Cause, Resolution: diskKB.Resolution, References: diskKB.References},
		{ID: "sw-installed", Title: "A package was installed", Severity: "info", Match: kb.Match{Code: "sw.installed"},
			Cause: "Someone or something installed a package.", Resolution: []string{"Check that the change was planned: grep ' install ' /var/log/dpkg.log"}},
		{ID: "win-scm-7031", Title: "A service terminated unexpectedly", Severity: "warn",
			Match: kb.Match{OS: "windows", Provider: []string{"Service Control Manager"}, EventIDs: []uint32{7031}},
			Cause: "The service crashed and the SCM applied its recovery action.", Resolution: []string{"Read the service's own log"},
			Samples: []kb.Sample{{Message: "The Print Spooler service terminated unexpectedly."}}},
		{ID: "hostile", Title: scriptName, Severity: "warn", Match: kb.Match{Code: "x.hostile", Pattern: imgPayload},
			Cause: pwnedImg, Resolution: []string{pwnedScript}, References: []string{jsName, "https://example.com/a?b=<c>"}},
	}
	return f
}
