package network

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/checks"
	"github.com/guestdiag/guestdiag/protocol"
)

func TestNetworkLinuxGathererReadsFixtures(t *testing.T) {
	g := linuxGatherer{
		proc:  "testdata/proc",
		sys:   "testdata/sys",
		addrs: func(name string) ([]string, error) { return []string{name + "-addr"}, nil },
	}
	routes, err := g.defaultRoutes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := []defaultRoute{
		{Iface: "eth0", Gateway: netip.MustParseAddr("10.0.2.2"), Metric: 100},
		{Iface: "eth1", Gateway: netip.MustParseAddr("192.168.56.1"), Metric: 200},
		{Iface: "eth0", Gateway: netip.MustParseAddr("fe80::1"), Metric: 1024},
	}
	if !slices.Equal(routes, want) {
		t.Errorf("routes = %v, want %v", routes, want)
	}

	tests := []struct {
		name string
		want ifaceLink
	}{
		{"eth0", ifaceLink{Name: "eth0", Index: 2, MAC: "52:54:00:12:34:56", Addresses: []string{"eth0-addr"}, Up: true, State: "up"}},
		{"eth1", ifaceLink{Name: "eth1", Index: 3, MAC: "52:54:00:ab:cd:ef", Addresses: []string{"eth1-addr"}, State: "no carrier"}},
		{"docker0", ifaceLink{Name: "docker0", Index: 4, MAC: "02:42:5e:1f:00:a1", Addresses: []string{"docker0-addr"}, State: "administratively down"}},
		{"lo", ifaceLink{Name: "lo", Index: 1, Addresses: []string{"lo-addr"}, Loopback: true, Up: true, State: "up"}},
	}
	for _, tt := range tests {
		t.Run("link "+tt.name+" reads as "+tt.want.State, func(t *testing.T) {
			got, err := g.link(t.Context(), tt.name)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("link = %+v, want %+v", got, tt.want)
			}
		})
	}
	for _, name := range []string{"eth9", "../eth0", ""} {
		if _, err := g.link(t.Context(), name); !errors.Is(err, errNoLink) {
			t.Errorf("link(%q) = %v, want errNetworkNoLink", name, err)
		}
	}
}

// helperEnv carries the helper's config; the helper process runs
// only when it is set.
const helperEnv = "GUESTDIAG_NETWORK_HELPER_CONFIG"

// helperMsg is one line the helper writes: a result or an event.
type helperMsg struct {
	Event  string `json:"event,omitempty"`
	Error  string `json:"error,omitempty"`
	Result *struct {
		Status   protocol.Status    `json:"status"`
		Summary  string             `json:"summary"`
		Findings []protocol.Finding `json:"findings"`
		Data     Data               `json:"data"`
	} `json:"result,omitempty"`
}

// TestNetworkNetnsHelper is not a test of its own: the integration tests
// start the test binary with only this test selected, inside a network
// namespace, and drive it over stdin. "run" runs the check and writes the
// result; "watch" starts Watch and writes "trigger" events.
func TestNetworkNetnsHelper(t *testing.T) {
	cfgJSON := os.Getenv(helperEnv)
	if cfgJSON == "" {
		t.Skip("helper process of TestIntegrationNetwork*; runs only when they start it")
	}
	cfg := DefaultConfig()
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		t.Fatal(err)
	}
	n, err := New(cfg, checks.Env{})
	if err != nil {
		t.Fatal(err)
	}
	lines := make(chan any, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		enc := json.NewEncoder(os.Stdout)
		for l := range lines {
			enc.Encode(l)
		}
	}()
	ctx, cancel := context.WithCancel(t.Context())
	defer func() {
		cancel()
		close(lines)
		<-done
	}()
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "run":
			res := n.Run(ctx)
			lines <- map[string]any{"result": res}
		case "watch":
			go func() {
				err := n.Watch(ctx, func() {
					select {
					case lines <- map[string]string{"event": "trigger"}:
					default:
					}
				})
				if err != nil {
					lines <- map[string]string{"error": err.Error()}
				}
			}()
			lines <- map[string]string{"event": "watching"}
		}
	}
}

// helper is a helper process running in a network namespace.
type helper struct {
	stdin io.Writer
	msgs  chan helperMsg
}

// startHelper starts bin (the test binary, or a copy of it) in
// netns, after the command runAs if given.
func startHelper(t *testing.T, netns string, cfg Config, bin string, runAs ...string) *helper {
	t.Helper()
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"netns", "exec", netns}
	args = append(args, runAs...)
	args = append(args, bin, "-test.run=^TestNetworkNetnsHelper$", "-test.count=1")
	cmd := exec.Command("ip", args...)
	cmd.Env = append(os.Environ(), helperEnv+"="+string(cfgJSON))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{stdin: stdin, msgs: make(chan helperMsg, 64)}
	go func() {
		defer close(h.msgs)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var m helperMsg
			if !strings.HasPrefix(sc.Text(), "{") || json.Unmarshal(sc.Bytes(), &m) != nil {
				continue // the test framework's own output
			}
			h.msgs <- m
		}
	}()
	t.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	return h
}

// run runs the check once in the helper and returns its result and how
// long the run took.
func (h *helper) run(t *testing.T) (helperMsg, time.Duration) {
	t.Helper()
	start := time.Now()
	if _, err := io.WriteString(h.stdin, "run\n"); err != nil {
		t.Fatal(err)
	}
	m := h.next(t, 15*time.Second)
	if m.Result == nil {
		t.Fatalf("helper wrote %+v, want a result", m)
	}
	return m, time.Since(start)
}

func (h *helper) next(t *testing.T, within time.Duration) helperMsg {
	t.Helper()
	timer := time.NewTimer(within)
	defer timer.Stop()
	select {
	case m, ok := <-h.msgs:
		if !ok {
			t.Fatal("helper exited")
		}
		if m.Error != "" {
			t.Fatalf("helper: %s", m.Error)
		}
		return m
	case <-timer.C:
		t.Fatalf("no message from the helper within %s", within)
	}
	panic("unreachable")
}

func needNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces: run go test as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip from iproute2: apt-get install -y iproute2")
	}
}

func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// lab is a guest namespace whose only way out is a veth pair to a
// gateway namespace. The gateway holds 192.0.2.1 (TEST-NET-1) on its veth
// and 198.51.100.1 (TEST-NET-2) on lo as the one "internet" address that
// answers; it does not forward, so nothing the guest sends goes further.
type lab struct {
	guest, gw       string // namespaces
	guestIf, gwIf   string // veth ends
	gatewayIP, inet string
}

func newLab(t *testing.T) lab {
	t.Helper()
	needNetns(t)
	id := fmt.Sprintf("%d%d", os.Getpid()%100000, time.Now().UnixNano()%1000)
	l := lab{
		guest: "gdnet-guest-" + id, gw: "gdnet-gw-" + id,
		guestIf: "gdg" + id, gwIf: "gdw" + id,
		gatewayIP: "192.0.2.1", inet: "198.51.100.1",
	}
	if out, err := exec.Command("ip", "netns", "add", l.guest).CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace here: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", l.guest).Run() })
	ip(t, "netns", "add", l.gw)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", l.gw).Run() })
	ip(t, "-n", l.guest, "link", "add", l.guestIf, "type", "veth", "peer", "name", l.gwIf, "netns", l.gw)
	ip(t, "-n", l.gw, "addr", "add", l.gatewayIP+"/24", "dev", l.gwIf)
	ip(t, "-n", l.gw, "addr", "add", l.inet+"/32", "dev", "lo")
	ip(t, "-n", l.gw, "link", "set", "lo", "up")
	ip(t, "-n", l.gw, "link", "set", l.gwIf, "up")
	ip(t, "-n", l.guest, "addr", "add", "192.0.2.2/24", "dev", l.guestIf)
	ip(t, "-n", l.guest, "link", "set", "lo", "up")
	ip(t, "-n", l.guest, "link", "set", l.guestIf, "up")
	ip(t, "-n", l.guest, "route", "add", "default", "via", l.gatewayIP)
	return l
}

// labConfig pings briefly and only inside the lab: 198.51.100.9 is
// an address nobody holds.
func labConfig(l lab) Config {
	return Config{
		PingCount:       2,
		PingInterval:    checks.D(50 * time.Millisecond),
		PingTimeout:     checks.D(600 * time.Millisecond),
		InternetTargets: []string{l.inet, "198.51.100.9"},
		DNSName:         "",
		DNSTimeout:      checks.D(time.Second),
	}
}

func allCodes(m helperMsg) []string {
	var codes []string
	for _, f := range m.Result.Findings {
		codes = append(codes, f.Code)
	}
	return codes
}

func TestIntegrationNetworkInNamespaces(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	cfg := labConfig(l)
	h := startHelper(t, l.guest, cfg, os.Args[0])

	expect := func(t *testing.T, status protocol.Status, codes ...string) helperMsg {
		t.Helper()
		m, took := h.run(t)
		if m.Result.Status != status || !slices.Equal(allCodes(m), codes) {
			t.Errorf("status %s, codes %q (%s); want %s, %q", m.Result.Status, allCodes(m), m.Result.Summary, status, codes)
		}
		// Every target is pinged at once, so even a run with dead
		// targets ends within about one ping timeout after the gateway.
		if limit := 2*cfg.PingTimeout.Duration + time.Second; took > limit {
			t.Errorf("run took %s, want under %s", took, limit)
		}
		return m
	}

	t.Run("a reachable gateway and one answering internet address are ok", func(t *testing.T) {
		m := expect(t, protocol.StatusOK)
		d := m.Result.Data
		if d.Interface != l.guestIf || d.Gateway != l.gatewayIP || d.MAC == "" || !slices.Contains(d.Addresses, "192.0.2.2/24") || d.ICMP != icmpRaw {
			t.Errorf("data = %+v, want %s, gateway %s, a MAC, 192.0.2.2/24, raw ICMP", d, l.guestIf, l.gatewayIP)
		}
		if len(d.Pings) != 3 {
			t.Fatalf("pings = %+v, want gateway and two internet targets", d.Pings)
		}
		if gw := d.Pings[0]; gw.Role != "gateway" || gw.Received == 0 || gw.RTTAvgMs <= 0 {
			t.Errorf("gateway ping = %+v, want replies with an RTT", gw)
		}
		if p := d.Pings[1]; p.Target != l.inet || p.Received == 0 {
			t.Errorf("ping of %s = %+v, want replies", l.inet, p)
		}
		if p := d.Pings[2]; p.Received != 0 || p.LossPct != 100 {
			t.Errorf("ping of the unheld address = %+v, want 100%% loss", p)
		}
	})

	t.Run("no internet address answering is internet_unreachable", func(t *testing.T) {
		ip(t, "-n", l.gw, "addr", "del", l.inet+"/32", "dev", "lo")
		defer ip(t, "-n", l.gw, "addr", "add", l.inet+"/32", "dev", "lo")
		expect(t, protocol.StatusWarn, CodeNetInternetUnreach)
	})

	t.Run("a gateway that lost its address is gateway_unreachable", func(t *testing.T) {
		ip(t, "-n", l.gw, "addr", "del", l.gatewayIP+"/24", "dev", l.gwIf)
		defer ip(t, "-n", l.gw, "addr", "add", l.gatewayIP+"/24", "dev", l.gwIf)
		m := expect(t, protocol.StatusCrit, CodeNetGatewayUnreachable)
		if len(m.Result.Data.Pings) != 1 {
			t.Errorf("pings = %+v, want only the gateway's", m.Result.Data.Pings)
		}
	})

	t.Run("a veth whose peer went down is link_down without carrier, and its gateway unreachable", func(t *testing.T) {
		ip(t, "-n", l.gw, "link", "set", l.gwIf, "down")
		defer ip(t, "-n", l.gw, "link", "set", l.gwIf, "up")
		m := expect(t, protocol.StatusCrit, CodeNetLinkDown, CodeNetGatewayUnreachable)
		if d := m.Result.Data; d.Interface != l.guestIf || d.RouteGone || len(d.Pings) != 0 {
			t.Errorf("data = %+v, want %s with its route and no pings", d, l.guestIf)
		}
	})

	t.Run("a guest link set down is link_down though Linux removed its route", func(t *testing.T) {
		ip(t, "-n", l.guest, "link", "set", l.guestIf, "down")
		defer ip(t, "-n", l.guest, "route", "add", "default", "via", l.gatewayIP)
		defer ip(t, "-n", l.guest, "link", "set", l.guestIf, "up")
		m := expect(t, protocol.StatusCrit, CodeNetLinkDown)
		if d := m.Result.Data; d.Interface != l.guestIf || !d.RouteGone || d.LinkState != "administratively down" {
			t.Errorf("data = %+v, want %s administratively down with route_gone", d, l.guestIf)
		}
	})

	t.Run("no default route is no_default_route", func(t *testing.T) {
		ip(t, "-n", l.guest, "route", "del", "default")
		defer ip(t, "-n", l.guest, "route", "add", "default", "via", l.gatewayIP)
		expect(t, protocol.StatusCrit, CodeNetNoDefaultRoute)
	})

	t.Run("the network works again once repaired", func(t *testing.T) {
		expect(t, protocol.StatusOK)
	})
}

// TestIntegrationNetworkICMPPermissions runs the check as nobody: with
// net.ipv4.ping_group_range (a per-namespace sysctl) covering it, it pings
// over unprivileged sockets; without, it must say unknown, never ok.
func TestIntegrationNetworkICMPPermissions(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("needs setpriv from util-linux: apt-get install -y util-linux")
	}
	// The test binary's own directory is private to root; nobody runs a
	// copy.
	dir, err := os.MkdirTemp("", "gdnet-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "checks.test")
	if err := os.WriteFile(bin, src, 0o755); err != nil {
		t.Fatal(err)
	}
	nobody := []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"}

	ip(t, "netns", "exec", l.guest, "sysctl", "-q", "-w", "net.ipv4.ping_group_range=1 0")
	m, _ := startHelper(t, l.guest, labConfig(l), bin, nobody...).run(t)
	if m.Result.Status != protocol.StatusUnknown || !strings.Contains(m.Result.Summary, "cannot open an ICMP socket") {
		t.Errorf("without permission: %s %q, want unknown saying it cannot open an ICMP socket", m.Result.Status, m.Result.Summary)
	}

	ip(t, "netns", "exec", l.guest, "sysctl", "-q", "-w", "net.ipv4.ping_group_range=0 2147483647")
	m, _ = startHelper(t, l.guest, labConfig(l), bin, nobody...).run(t)
	if m.Result.Status != protocol.StatusOK || m.Result.Data.ICMP != icmpUnpriv {
		t.Errorf("with ping_group_range: %s %q icmp %q, want ok over unprivileged sockets", m.Result.Status, m.Result.Summary, m.Result.Data.ICMP)
	}
}

func TestIntegrationNetworkWatchTriggersOnLinkDown(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	h := startHelper(t, l.guest, labConfig(l), os.Args[0])
	if _, err := io.WriteString(h.stdin, "watch\n"); err != nil {
		t.Fatal(err)
	}
	if m := h.next(t, 5*time.Second); m.Event != "watching" {
		t.Fatalf("helper wrote %+v, want watching", m)
	}

	// Watch binds its socket in its own goroutine: change an address until
	// a trigger shows the socket listens, then let the burst settle.
	deadline := time.Now().Add(10 * time.Second)
	for k := 1; ; k++ {
		if time.Now().After(deadline) {
			t.Fatal("no trigger for address changes within 10s")
		}
		ip(t, "-n", l.guest, "addr", "add", fmt.Sprintf("127.0.9.%d/8", k), "dev", "lo")
		if waitTrigger(h, 200*time.Millisecond) {
			break
		}
	}
	for waitTrigger(h, 300*time.Millisecond) {
	}

	start := time.Now()
	ip(t, "-n", l.guest, "link", "set", l.guestIf, "down")
	if !waitTrigger(h, 2*time.Second) {
		t.Fatal("no trigger within 2s of the link going down")
	}
	t.Logf("triggered %s after ip link set down", time.Since(start))
}

// TestNetworkWatchEndsWithItsContext listens on this machine's rtnetlink
// socket, which sends nothing, and stops.
func TestNetworkWatchEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- watch(ctx, func() {}) }()
	cancel()
	timer := time.NewTimer(5 * time.Second)
	defer timer.Stop()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Watch = %v, want nil once its context ends", err)
		}
	case <-timer.C:
		t.Fatal("Watch still running 5s after its context ended")
	}
}

// waitTrigger reports whether a trigger event arrives within d.
func waitTrigger(h *helper, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case m, ok := <-h.msgs:
			if !ok {
				return false
			}
			if m.Event == "trigger" {
				return true
			}
		case <-timer.C:
			return false
		}
	}
}

// TestNetworkNoIPv4RoutesAtAllIsNoDefaultRoute reads route tables of
// namespaces without routes: /proc/net/route with only its header, and
// the one of a namespace that never had an IPv4 route, which is empty,
// not even a header.
func TestNetworkNoIPv4RoutesAtAllIsNoDefaultRoute(t *testing.T) {
	tests := []struct {
		name, proc string
	}{
		{"an empty route file (no IPv4 table at all, no IPv6 routes)", "testdata/noroutes/proc"},
		{"a route file with only its header (IPv6 disabled)", "testdata/headeronly/proc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := linuxGatherer{proc: tt.proc, sys: "testdata/sys"}
			routes, err := g.defaultRoutes(t.Context())
			if err != nil || len(routes) != 0 {
				t.Fatalf("defaultRoutes = %v, %v; want none and no error", routes, err)
			}
			p := &fakeProber{}
			res := newCheck(Config{}, g, p, checks.Env{}).Run(t.Context())
			var codes []string
			for _, f := range res.Findings {
				codes = append(codes, f.Code)
			}
			if res.Status != protocol.StatusCrit || !slices.Equal(codes, []string{CodeNetNoDefaultRoute}) {
				t.Errorf("run = %s %q %q; want crit, %s", res.Status, res.Summary, codes, CodeNetNoDefaultRoute)
			}
			if len(p.pinged) != 0 {
				t.Errorf("pinged %q without a route", p.pinged)
			}
		})
	}
}

// TestIntegrationNetworkInAnEmptyNamespace runs the check in a namespace
// that has only its loopback, down: no IPv4 table exists there yet.
func TestIntegrationNetworkInAnEmptyNamespace(t *testing.T) {
	t.Parallel()
	needNetns(t)
	ns := fmt.Sprintf("gdnet-empty-%d%d", os.Getpid()%100000, time.Now().UnixNano()%1000)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace here: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	out, err := exec.Command("ip", "netns", "exec", ns, "cat", "/proc/net/route").CombinedOutput()
	if err != nil {
		t.Fatalf("read /proc/net/route in %s: %v: %s", ns, err, out)
	}
	t.Logf("/proc/net/route in a new namespace is %d bytes", len(out))

	h := startHelper(t, ns, Config{InternetTargets: []string{}, DNSName: ""}, os.Args[0])
	m, _ := h.run(t)
	if m.Result.Status != protocol.StatusCrit || !slices.Equal(allCodes(m), []string{CodeNetNoDefaultRoute}) {
		t.Errorf("status %s, codes %q (%s); want crit, %s", m.Result.Status, allCodes(m), m.Result.Summary, CodeNetNoDefaultRoute)
	}
}
