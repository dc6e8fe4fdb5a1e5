package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/guestdiag/guestdiag/checks"
	"github.com/guestdiag/guestdiag/checks/internal/num"
	"github.com/guestdiag/guestdiag/protocol"
)

func TestParseNetworkRouteKeepsOnlyDefaultGatewayRoutes(t *testing.T) {
	b, err := os.ReadFile("testdata/proc/net/route")
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseRoute(b)
	if err != nil {
		t.Fatal(err)
	}
	want := []defaultRoute{
		{Iface: "eth0", Gateway: netip.MustParseAddr("10.0.2.2"), Metric: 100},
		{Iface: "eth1", Gateway: netip.MustParseAddr("192.168.56.1"), Metric: 200},
	}
	if !slices.Equal(got, want) {
		t.Errorf("routes = %v, want %v", got, want)
	}
}

func TestParseNetworkIPv6RouteSkipsTheUnreachableDefaultOnLo(t *testing.T) {
	b, err := os.ReadFile("testdata/proc/net/ipv6_route")
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseIPv6Route(b)
	if err != nil {
		t.Fatal(err)
	}
	want := []defaultRoute{{Iface: "eth0", Gateway: netip.MustParseAddr("fe80::1"), Metric: 1024}}
	if !slices.Equal(got, want) {
		t.Errorf("routes = %v, want %v", got, want)
	}
}

func TestParseNetworkRouteRejectsWhatIsNotARouteTable(t *testing.T) {
	tests := []struct {
		name, in string
	}{
		{"a different header is refused", "Iface\tDest\tGateway\n"},
		{"an address that is not hex is an error", "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\neth0\t00000000\tZZ02000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"},
		{"a short line is an error", "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\neth0\t00000000\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := parseRoute([]byte(tt.in)); err == nil {
				t.Errorf("parseNetworkRoute = %v, want an error", got)
			}
		})
	}
	if got, err := parseIPv6Route([]byte("00 00 00\n")); err == nil {
		t.Errorf("parseNetworkIPv6Route of a short line = %v, want an error", got)
	}
}

func TestNetworkLinuxLinkState(t *testing.T) {
	tests := []struct {
		name               string
		flags              uint64
		operstate, carrier string
		up                 bool
		state              string
	}{
		{"an up interface with carrier is up", 0x1003, "up\n", "1\n", true, "up"},
		{"a virtual interface with operstate unknown is up", 0x1003, "unknown", "1", true, "up"},
		{"an interface without IFF_UP is administratively down", 0x1002, "down", "", false, "administratively down"},
		{"carrier 0 is no carrier", 0x1003, "down", "0", false, "no carrier"},
		{"a veth whose peer is down is lower layer down", 0x1003, "lowerlayerdown", "", false, "lower layer down"},
		{"a dormant interface is down", 0x1003, "dormant", "1", false, "operstate dormant"},
		{"operstate down with carrier is up: operstate lags carrier", 0x1003, "down", "1", true, "up"},
		{"operstate down without a carrier file is down", 0x1003, "down", "", false, "operstate down"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up, state := linuxLinkState(tt.flags, tt.operstate, tt.carrier)
			if up != tt.up || state != tt.state {
				t.Errorf("networkLinuxLinkState = %v %q, want %v %q", up, state, tt.up, tt.state)
			}
		})
	}
}

func TestNetworkPickRoute(t *testing.T) {
	up := func(name string) ifaceLink { return ifaceLink{Name: name, Up: true, State: "up"} }
	down := func(name string) ifaceLink { return ifaceLink{Name: name, State: "no carrier"} }
	r := func(iface, gw string, metric uint32) defaultRoute {
		return defaultRoute{Iface: iface, Gateway: netip.MustParseAddr(gw), Metric: metric}
	}
	tests := []struct {
		name   string
		routes []defaultRoute
		links  []ifaceLink
		want   string // iface and gateway, or "" for none
	}{
		{"the lowest metric wins among up interfaces",
			[]defaultRoute{r("eth1", "192.168.1.1", 200), r("eth0", "10.0.2.2", 100)},
			[]ifaceLink{up("eth0"), up("eth1")}, "eth0 10.0.2.2"},
		{"an up interface wins over a down one with a lower metric",
			[]defaultRoute{r("eth0", "10.0.2.2", 100), r("wlan0", "192.168.1.1", 600)},
			[]ifaceLink{down("eth0"), up("wlan0")}, "wlan0 192.168.1.1"},
		{"IPv4 wins over IPv6 with a lower metric",
			[]defaultRoute{r("eth0", "fe80::1", 1), r("eth0", "10.0.2.2", 100)},
			[]ifaceLink{up("eth0")}, "eth0 10.0.2.2"},
		{"an IPv6-only guest uses its IPv6 route",
			[]defaultRoute{r("eth0", "fe80::1", 1024)},
			[]ifaceLink{up("eth0")}, "eth0 fe80::1"},
		{"a down interface is still picked when it is the only one, to report it",
			[]defaultRoute{r("eth0", "10.0.2.2", 100)},
			[]ifaceLink{down("eth0")}, "eth0 10.0.2.2"},
		{"loopback is never picked",
			[]defaultRoute{r("lo", "127.0.0.1", 0)},
			[]ifaceLink{{Name: "lo", Loopback: true, Up: true}}, ""},
		{"a route through a vanished interface is never picked",
			[]defaultRoute{r("eth9", "10.0.2.2", 0)},
			nil, ""},
		{"no routes pick nothing", nil, []ifaceLink{up("eth0")}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			links := map[string]ifaceLink{}
			for _, l := range tt.links {
				links[l.Name] = l
			}
			got, ok := pickRoute(tt.routes, links)
			s := ""
			if ok {
				s = got.Iface + " " + got.Gateway.String()
			}
			if s != tt.want {
				t.Errorf("picked %q, want %q", s, tt.want)
			}
		})
	}
}

// winFixtureAdapters are GetAdaptersAddresses rows as a Windows
// Server 2022 guest with a virtio NIC, a disconnected second NIC and the
// loopback pseudo-interface reports them.
var winFixtureAdapters = []winAdapter{
	{IfIndex: 6, IPv6IfIndex: 6, Name: "Ethernet", Description: "Red Hat VirtIO Ethernet Adapter", Type: 6, OperStatus: 1,
		MAC: []byte{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}, Addresses: []string{"fe80::8d4c:2e1b:7f3a:9c01/64", "10.0.2.15/24"}, Metric4: 15, Metric6: 15},
	{IfIndex: 9, IPv6IfIndex: 9, Name: "Ethernet 2", Description: "Red Hat VirtIO Ethernet Adapter #2", Type: 6, OperStatus: 7,
		MAC: []byte{0x52, 0x54, 0x00, 0xab, 0xcd, 0xef}, Metric4: 5, Metric6: 5},
	{IfIndex: 1, IPv6IfIndex: 1, Name: "Loopback Pseudo-Interface 1", Description: "Software Loopback Interface 1", Type: 24, OperStatus: 1,
		Addresses: []string{"::1/128", "127.0.0.1/8"}, Metric4: 75, Metric6: 75},
}

func TestNetworkWinDefaultRoutesNamesAdaptersAndAddsTheirMetric(t *testing.T) {
	routes := []winRoute{
		{IfIndex: 6, PrefixLen: 0, NextHop: netip.MustParseAddr("10.0.2.2"), Metric: 0},
		{IfIndex: 6, PrefixLen: 24, NextHop: netip.IPv4Unspecified(), Metric: 256},
		{IfIndex: 6, PrefixLen: 0, NextHop: netip.MustParseAddr("fe80::2"), Metric: 256},
		{IfIndex: 9, PrefixLen: 0, NextHop: netip.MustParseAddr("192.168.56.1"), Metric: 0},
		{IfIndex: 1, PrefixLen: 0, NextHop: netip.IPv6Unspecified(), Metric: 256},
		{IfIndex: 42, PrefixLen: 0, NextHop: netip.MustParseAddr("172.16.0.1"), Metric: 0},
	}
	got := winDefaultRoutes(routes, winFixtureAdapters)
	want := []defaultRoute{
		{Iface: "Ethernet", Gateway: netip.MustParseAddr("10.0.2.2"), Metric: 15},
		{Iface: "Ethernet", Gateway: netip.MustParseAddr("fe80::2"), Metric: 271},
		{Iface: "Ethernet 2", Gateway: netip.MustParseAddr("192.168.56.1"), Metric: 5},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("routes = %v, want %v", got, want)
	}

	links := map[string]ifaceLink{}
	for _, a := range winFixtureAdapters {
		links[a.Name] = winLink(a)
	}
	pick, ok := pickRoute(got, links)
	if !ok || pick.Iface != "Ethernet" || pick.Gateway.String() != "10.0.2.2" {
		t.Errorf("picked %v %v, want the connected Ethernet over the disconnected one with the lower metric", pick, ok)
	}
	if l := links["Ethernet 2"]; l.Up || l.State != "lower layer down (media disconnected)" || l.MAC != "52:54:00:ab:cd:ef" {
		t.Errorf("Ethernet 2 = %+v, want down, media disconnected", l)
	}
	if l := links["Loopback Pseudo-Interface 1"]; !l.Loopback || l.MAC != "" {
		t.Errorf("loopback = %+v, want Loopback and no MAC", l)
	}
}

// fakeGatherer serves routes and links from maps.
type fakeGatherer struct {
	routes   []defaultRoute
	routeErr error
	links    map[string]ifaceLink
}

func (g *fakeGatherer) defaultRoutes(context.Context) ([]defaultRoute, error) {
	return g.routes, g.routeErr
}

func (g *fakeGatherer) link(_ context.Context, name string) (ifaceLink, error) {
	l, ok := g.links[name]
	if !ok {
		return ifaceLink{}, errNoLink
	}
	return l, nil
}

// fakeProber answers the targets in replies and records what it was
// asked.
type fakeProber struct {
	replies map[string]int // target → replies out of 3
	noICMP  bool
	dnsErr  error

	mu     sync.Mutex
	pinged []string
	looked []string
}

func (p *fakeProber) ping(_ context.Context, target string) (Ping, string, error) {
	p.mu.Lock()
	p.pinged = append(p.pinged, target)
	p.mu.Unlock()
	if p.noICMP {
		return Ping{}, "", fmt.Errorf("%w: raw socket: operation not permitted", errNoICMP)
	}
	n := p.replies[target]
	res := Ping{Target: target, Sent: 3, Received: n, LossPct: num.Pct(float64(3-n), 3)}
	if n > 0 {
		res.RTTMinMs, res.RTTAvgMs, res.RTTMaxMs = 0.2, 0.3, 0.5
	}
	return res, icmpRaw, nil
}

func (p *fakeProber) resolve(_ context.Context, name string) ([]string, error) {
	p.mu.Lock()
	p.looked = append(p.looked, name)
	p.mu.Unlock()
	if p.dnsErr != nil {
		return nil, p.dnsErr
	}
	return []string{"192.0.2.80"}, nil
}

func testConfig() Config {
	c := DefaultConfig()
	c.InternetTargets = []string{"198.51.100.1", "198.51.100.2"}
	c.DNSName = "example.test"
	return c
}

func TestNetworkRun(t *testing.T) {
	eth0Up := ifaceLink{Name: "eth0", Index: 2, MAC: "52:54:00:12:34:56", Addresses: []string{"10.0.2.15/24"}, Up: true, State: "up"}
	eth0Down := eth0Up
	eth0Down.Up, eth0Down.State = false, "no carrier"
	route := []defaultRoute{{Iface: "eth0", Gateway: netip.MustParseAddr("10.0.2.2"), Metric: 100}}
	all := map[string]int{"10.0.2.2": 3, "198.51.100.1": 3, "198.51.100.2": 3}

	tests := []struct {
		name      string
		gather    fakeGatherer
		probe     fakeProber
		lastIface string
		status    protocol.Status
		codes     []string
		pinged    []string // sorted
		summary   string   // a part of it
	}{
		{
			name:    "a working network is ok and says so",
			gather:  fakeGatherer{routes: route, links: map[string]ifaceLink{"eth0": eth0Up}},
			probe:   fakeProber{replies: all},
			status:  protocol.StatusOK,
			pinged:  []string{"10.0.2.2", "198.51.100.1", "198.51.100.2"},
			summary: "eth0 up, gateway 10.0.2.2 answers in 0.3 ms, internet 2/2 answer",
		},
		{
			name:   "no default route is crit and pings nothing",
			gather: fakeGatherer{links: map[string]ifaceLink{"eth0": eth0Up}},
			status: protocol.StatusCrit,
			codes:  []string{CodeNetNoDefaultRoute},
		},
		{
			name:   "a down interface holding the route is link_down, its gateway unreachable, and nothing is pinged",
			gather: fakeGatherer{routes: route, links: map[string]ifaceLink{"eth0": eth0Down}},
			status: protocol.StatusCrit,
			codes:  []string{CodeNetLinkDown, CodeNetGatewayUnreachable},
		},
		{
			name:      "a down interface that held the route before is link_down though the route is gone",
			gather:    fakeGatherer{links: map[string]ifaceLink{"eth0": eth0Down}},
			lastIface: "eth0",
			status:    protocol.StatusCrit,
			codes:     []string{CodeNetLinkDown},
			summary:   "eth0 is down (no carrier) and no default route is left",
		},
		{
			name:      "an up interface that held the route before is no_default_route",
			gather:    fakeGatherer{links: map[string]ifaceLink{"eth0": eth0Up}},
			lastIface: "eth0",
			status:    protocol.StatusCrit,
			codes:     []string{CodeNetNoDefaultRoute},
		},
		{
			name:    "a silent gateway is crit and the internet is not tried",
			gather:  fakeGatherer{routes: route, links: map[string]ifaceLink{"eth0": eth0Up}},
			probe:   fakeProber{replies: map[string]int{"198.51.100.1": 3}},
			status:  protocol.StatusCrit,
			codes:   []string{CodeNetGatewayUnreachable},
			pinged:  []string{"10.0.2.2"},
			summary: "complete network failure",
		},
		{
			name:   "one internet target answering is enough",
			gather: fakeGatherer{routes: route, links: map[string]ifaceLink{"eth0": eth0Up}},
			probe:  fakeProber{replies: map[string]int{"10.0.2.2": 3, "198.51.100.2": 1}},
			status: protocol.StatusOK,
			pinged: []string{"10.0.2.2", "198.51.100.1", "198.51.100.2"},
		},
		{
			name:    "no internet target answering is a warning",
			gather:  fakeGatherer{routes: route, links: map[string]ifaceLink{"eth0": eth0Up}},
			probe:   fakeProber{replies: map[string]int{"10.0.2.2": 3}},
			status:  protocol.StatusWarn,
			codes:   []string{CodeNetInternetUnreach},
			pinged:  []string{"10.0.2.2", "198.51.100.1", "198.51.100.2"},
			summary: "none of 198.51.100.1, 198.51.100.2 answered, though gateway 10.0.2.2 does",
		},
		{
			name:   "a name that does not resolve is a warning",
			gather: fakeGatherer{routes: route, links: map[string]ifaceLink{"eth0": eth0Up}},
			probe:  fakeProber{replies: all, dnsErr: errors.New("lookup example.test: i/o timeout")},
			status: protocol.StatusWarn,
			codes:  []string{CodeNetDNSFailure},
			pinged: []string{"10.0.2.2", "198.51.100.1", "198.51.100.2"},
		},
		{
			name:    "no way to open an ICMP socket is unknown, never ok",
			gather:  fakeGatherer{routes: route, links: map[string]ifaceLink{"eth0": eth0Up}},
			probe:   fakeProber{noICMP: true},
			status:  protocol.StatusUnknown,
			pinged:  []string{"10.0.2.2"},
			summary: "cannot ping: cannot open an ICMP socket",
		},
		{
			name:    "an unreadable routing table is unknown",
			gather:  fakeGatherer{routeErr: errors.New("open /proc/net/route: permission denied")},
			status:  protocol.StatusUnknown,
			summary: "cannot read the routing table",
		},
	}
	for i := range tests {
		tt := &tests[i] // the fake prober holds a mutex
		t.Run(tt.name, func(t *testing.T) {
			state := checks.NewState(t.TempDir(), Name)
			if tt.lastIface != "" {
				if err := state.Save(stateKey, tt.lastIface); err != nil {
					t.Fatal(err)
				}
			}
			n := newCheck(testConfig(), &tt.gather, &tt.probe, checks.Env{State: state})
			res := n.Run(t.Context())
			if res.Status != tt.status {
				t.Errorf("status = %s (%s), want %s", res.Status, res.Summary, tt.status)
			}
			var codes []string
			for _, f := range res.Findings {
				codes = append(codes, f.Code)
			}
			if !slices.Equal(codes, tt.codes) {
				t.Errorf("codes = %q, want %q", codes, tt.codes)
			}
			slices.Sort(tt.probe.pinged)
			if !slices.Equal(tt.probe.pinged, tt.pinged) {
				t.Errorf("pinged %q, want %q", tt.probe.pinged, tt.pinged)
			}
			if !strings.Contains(res.Summary, tt.summary) {
				t.Errorf("summary = %q, want it to contain %q", res.Summary, tt.summary)
			}
			if _, err := json.Marshal(res); err != nil {
				t.Errorf("result does not marshal: %v", err)
			}
		})
	}
}

func TestNetworkRunReportsPerTargetDataAndTheDNSAnswer(t *testing.T) {
	g := &fakeGatherer{
		routes: []defaultRoute{{Iface: "eth0", Gateway: netip.MustParseAddr("10.0.2.2"), Metric: 100}},
		links:  map[string]ifaceLink{"eth0": {Name: "eth0", MAC: "52:54:00:12:34:56", Addresses: []string{"10.0.2.15/24"}, Up: true, State: "up"}},
	}
	p := &fakeProber{replies: map[string]int{"10.0.2.2": 3, "198.51.100.2": 2}}
	res := newCheck(testConfig(), g, p, checks.Env{}).Run(t.Context())
	d, ok := res.Data.(Data)
	if !ok {
		t.Fatalf("data is %T, want NetworkData", res.Data)
	}
	if d.Interface != "eth0" || d.MAC != "52:54:00:12:34:56" || d.Gateway != "10.0.2.2" || len(d.Addresses) != 1 || d.ICMP != icmpRaw {
		t.Errorf("data = %+v, want eth0, its MAC, address and gateway, raw ICMP", d)
	}
	var got []string
	for _, pg := range d.Pings {
		got = append(got, fmt.Sprintf("%s %s %d/%d %.1f%%", pg.Role, pg.Target, pg.Received, pg.Sent, pg.LossPct))
	}
	want := []string{"gateway 10.0.2.2 3/3 0.0%", "internet 198.51.100.1 0/3 100.0%", "internet 198.51.100.2 2/3 33.3%"}
	if !slices.Equal(got, want) {
		t.Errorf("pings = %q, want %q", got, want)
	}
	if d.DNS == nil || d.DNS.Name != "example.test" || !slices.Equal(d.DNS.Addresses, []string{"192.0.2.80"}) {
		t.Errorf("dns = %+v, want example.test resolved to 192.0.2.80", d.DNS)
	}
}

func TestNetworkRunWithProbesOffPingsOnlyTheGateway(t *testing.T) {
	g := &fakeGatherer{
		routes: []defaultRoute{{Iface: "eth0", Gateway: netip.MustParseAddr("10.0.2.2")}},
		links:  map[string]ifaceLink{"eth0": {Name: "eth0", Up: true, State: "up"}},
	}
	p := &fakeProber{replies: map[string]int{"10.0.2.2": 3}}
	cfg := testConfig()
	cfg.InternetTargets, cfg.DNSName = []string{}, ""
	res := newCheck(cfg, g, p, checks.Env{}).Run(t.Context())
	if res.Status != protocol.StatusOK || len(p.looked) != 0 || !slices.Equal(p.pinged, []string{"10.0.2.2"}) {
		t.Errorf("status %s, pinged %q, resolved %q; want ok, the gateway only, nothing", res.Status, p.pinged, p.looked)
	}
}

func TestNetworkLinkLocalGatewayIsPingedThroughItsInterface(t *testing.T) {
	g := &fakeGatherer{
		routes: []defaultRoute{{Iface: "eth0", Gateway: netip.MustParseAddr("fe80::1"), Metric: 1024}},
		links:  map[string]ifaceLink{"eth0": {Name: "eth0", Index: 2, Up: true, State: "up"}},
	}
	p := &fakeProber{replies: map[string]int{"fe80::1%2": 3}}
	cfg := testConfig()
	cfg.InternetTargets, cfg.DNSName = nil, ""
	res := newCheck(cfg, g, p, checks.Env{}).Run(t.Context())
	if res.Status != protocol.StatusOK || !slices.Equal(p.pinged, []string{"fe80::1%2"}) {
		t.Errorf("status %s (%s), pinged %q; want ok after pinging fe80::1%%2", res.Status, res.Summary, p.pinged)
	}
	if d := res.Data.(Data); d.Gateway != "fe80::1" || d.Pings[0].Target != "fe80::1" {
		t.Errorf("gateway %q, ping target %q; want fe80::1 without zone", d.Gateway, d.Pings[0].Target)
	}
}

func TestNetworkCommitRemembersTheRouteInterfaceAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	g := &fakeGatherer{
		routes: []defaultRoute{{Iface: "eth0", Gateway: netip.MustParseAddr("10.0.2.2")}},
		links:  map[string]ifaceLink{"eth0": {Name: "eth0", Up: true, State: "up"}},
	}
	p := &fakeProber{replies: map[string]int{"10.0.2.2": 3}}
	cfg := testConfig()
	cfg.InternetTargets, cfg.DNSName = nil, ""

	first := newCheck(cfg, g, p, checks.Env{State: checks.NewState(dir, Name)})
	first.Run(t.Context())
	// Not committed yet: a restart now knows nothing.
	g.routes = nil
	g.links["eth0"] = ifaceLink{Name: "eth0", State: "administratively down"}
	if res := newCheck(cfg, g, p, checks.Env{State: checks.NewState(dir, Name)}).Run(t.Context()); res.Findings[0].Code != CodeNetNoDefaultRoute {
		t.Errorf("before commit: %s, want %s", res.Findings[0].Code, CodeNetNoDefaultRoute)
	}
	if err := first.Commit(); err != nil {
		t.Fatal(err)
	}
	res := newCheck(cfg, g, p, checks.Env{State: checks.NewState(dir, Name)}).Run(t.Context())
	if res.Findings[0].Code != CodeNetLinkDown || !res.Data.(Data).RouteGone {
		t.Errorf("after commit and restart: %+v, want %s with route_gone", res, CodeNetLinkDown)
	}
}

func TestNetworkConfigFromJSON(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		targets []string
		dns     string
		wantErr string
	}{
		{"absent keys keep the defaults", `{}`, []string{"8.8.8.8", "1.1.1.1"}, "example.com", ""},
		{"an empty name turns DNS off", `{"dns_name": ""}`, []string{"8.8.8.8", "1.1.1.1"}, "", ""},
		{"an empty list turns the internet probe off", `{"internet_targets": []}`, []string{}, "example.com", ""},
		{"a host name is not a target", `{"internet_targets": ["dns.google"]}`, nil, "", `"dns.google" is not an IP address`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, ok := checks.Lookup(Name)
			if !ok {
				t.Fatal("network is not registered")
			}
			cfg := r.NewConfig()
			if err := json.Unmarshal([]byte(tt.in), cfg); err != nil {
				t.Fatal(err)
			}
			_, err := r.New(cfg, checks.Env{})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("New: %v, want an error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c := *cfg.(*Config)
			if !slices.Equal(c.InternetTargets, tt.targets) || c.DNSName != tt.dns {
				t.Errorf("targets %q, dns %q; want %q, %q", c.InternetTargets, c.DNSName, tt.targets, tt.dns)
			}
		})
	}
}
