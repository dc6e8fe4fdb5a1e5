package checks

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
)

// NetworkName is the registered name of the network check.
const NetworkName = "network"

func init() {
	register(NetworkName, true, time.Minute, 15*time.Second, DefaultNetworkConfig,
		func(cfg NetworkConfig, env Env) (Check, error) { return NewNetwork(cfg, env) })
}

// Finding codes of the network check.
const (
	CodeNetNoDefaultRoute     = "net.no_default_route"
	CodeNetLinkDown           = "net.link_down"
	CodeNetGatewayUnreachable = "net.gateway_unreachable"
	CodeNetInternetUnreach    = "net.internet_unreachable"
	CodeNetDNSFailure         = "net.dns_failure"
)

// networkMaxTargets bounds internet_targets so that one run stays short and
// its data small.
const networkMaxTargets = 16

// NetworkConfig tunes the network check.
type NetworkConfig struct {
	// PingCount is how many echo requests go to the gateway and to each
	// internet target.
	PingCount int `json:"ping_count"`
	// PingInterval is the time between two echo requests to one target.
	PingInterval Duration `json:"ping_interval"`
	// PingTimeout bounds the pinging of one target. The targets are pinged
	// in parallel, so a run with a dead gateway takes about this long.
	PingTimeout Duration `json:"ping_timeout"`
	// InternetTargets are IP addresses pinged once the gateway answers. The
	// internet counts as unreachable only when none of them answers. An
	// empty list turns the internet probe off.
	InternetTargets []string `json:"internet_targets"`
	// DNSName is resolved with the system resolver once the gateway
	// answers. Empty turns the DNS probe off.
	DNSName    string   `json:"dns_name"`
	DNSTimeout Duration `json:"dns_timeout"`
}

// DefaultNetworkConfig returns the defaults: three pings 200 ms apart
// within 2 s to the gateway, 8.8.8.8 and 1.1.1.1, and example.com resolved
// within 2 s.
func DefaultNetworkConfig() NetworkConfig {
	return NetworkConfig{
		PingCount:       3,
		PingInterval:    D(200 * time.Millisecond),
		PingTimeout:     D(2 * time.Second),
		InternetTargets: []string{"8.8.8.8", "1.1.1.1"},
		DNSName:         "example.com",
		DNSTimeout:      D(2 * time.Second),
	}
}

// withDefaults fills in zero numbers. An empty target list and an empty
// DNS name stay empty: they turn a probe off.
func (c NetworkConfig) withDefaults() NetworkConfig {
	d := DefaultNetworkConfig()
	if c.PingCount <= 0 {
		c.PingCount = d.PingCount
	}
	if c.PingInterval.Duration <= 0 {
		c.PingInterval = d.PingInterval
	}
	if c.PingTimeout.Duration <= 0 {
		c.PingTimeout = d.PingTimeout
	}
	if c.DNSTimeout.Duration <= 0 {
		c.DNSTimeout = d.DNSTimeout
	}
	return c
}

func (c NetworkConfig) validate() error {
	if len(c.InternetTargets) > networkMaxTargets {
		return fmt.Errorf("internet_targets: %d addresses, at most %d", len(c.InternetTargets), networkMaxTargets)
	}
	for _, t := range c.InternetTargets {
		if _, err := netip.ParseAddr(t); err != nil {
			return fmt.Errorf("internet_targets: %q is not an IP address", t)
		}
	}
	if len(c.DNSName) > 253 {
		return fmt.Errorf("dns_name: %d bytes, at most 253", len(c.DNSName))
	}
	return nil
}

// NetworkData is the data of a network result. Interface, MAC and
// Addresses describe the interface that holds the default route (or held
// it, when RouteGone is set).
type NetworkData struct {
	Interface string   `json:"interface,omitempty"`
	MAC       string   `json:"mac,omitempty"`
	Addresses []string `json:"addresses,omitempty"`
	// LinkState says how the interface is: "up", or why it is down, such
	// as "no carrier" or "administratively down".
	LinkState string `json:"link_state,omitempty"`
	Gateway   string `json:"gateway,omitempty"`
	// Metric is the default route's metric (on Windows route plus
	// interface metric).
	Metric uint32 `json:"metric,omitempty"`
	// DefaultRoutes counts the default routes seen, all interfaces and
	// address families together.
	DefaultRoutes int `json:"default_routes"`
	// RouteGone is set when no default route is left and the interface
	// that last held one is reported instead.
	RouteGone bool `json:"route_gone,omitempty"`
	// ICMP is how echo requests were sent: "raw" or "unprivileged".
	ICMP  string        `json:"icmp,omitempty"`
	Pings []NetworkPing `json:"pings,omitempty"`
	DNS   *NetworkDNS   `json:"dns,omitempty"`
}

// NetworkPing is the outcome of pinging one target.
type NetworkPing struct {
	Target string `json:"target"`
	// Role is "gateway" or "internet".
	Role     string  `json:"role"`
	Sent     int     `json:"sent"`
	Received int     `json:"received"`
	LossPct  float64 `json:"loss_pct"`
	// RTTs are in milliseconds, present when a reply came.
	RTTMinMs float64 `json:"rtt_min_ms,omitempty"`
	RTTAvgMs float64 `json:"rtt_avg_ms,omitempty"`
	RTTMaxMs float64 `json:"rtt_max_ms,omitempty"`
	// Error is why requests could not be sent, if they could not.
	Error string `json:"error,omitempty"`
}

// NetworkDNS is the outcome of resolving DNSName.
type NetworkDNS struct {
	Name      string   `json:"name"`
	Addresses []string `json:"addresses,omitempty"`
	Ms        float64  `json:"ms"`
	Error     string   `json:"error,omitempty"`
}

// networkRoute is one default route: its interface, next hop and metric.
type networkRoute struct {
	Iface   string
	Gateway netip.Addr
	Metric  uint32
}

// networkLink is what the check needs to know of one interface.
type networkLink struct {
	Name      string
	Index     int
	MAC       string
	Addresses []string
	Loopback  bool
	// Up means the interface can pass traffic: administratively up, with
	// carrier, and operationally up (or unknown, as some virtual drivers
	// say).
	Up    bool
	State string
}

// errNetworkNoLink is returned by link for an interface that does not exist.
var errNetworkNoLink = errors.New("no such interface")

// errNetworkNoICMP means no echo request can be sent at all: neither a raw
// nor an unprivileged ICMP socket could be opened.
var errNetworkNoICMP = errors.New("cannot open an ICMP socket")

// networkGatherer reads the routing table and interfaces of one OS.
type networkGatherer interface {
	defaultRoutes(ctx context.Context) ([]networkRoute, error)
	// link returns errNetworkNoLink if name does not exist.
	link(ctx context.Context, name string) (networkLink, error)
}

// networkProber sends the probes. ping returns an error wrapping
// errNetworkNoICMP only when it could not ping at all; a target that does
// not answer, or cannot be sent to, is a NetworkPing with no replies.
type networkProber interface {
	ping(ctx context.Context, target string) (NetworkPing, string, error)
	resolve(ctx context.Context, name string) ([]string, error)
}

// Network is the network check: default route, its interface's link, the
// gateway, the internet and DNS.
type Network struct {
	cfg    NetworkConfig
	gather networkGatherer
	probe  networkProber
	state  *State
	logger *slog.Logger

	mu sync.Mutex // serialises Run and Commit
	// lastIface is the interface that held the default route in the last
	// run that saw one, so that a link whose loss took the route with it
	// is still reported as down. pendingIface becomes lastIface on Commit.
	lastIface    string
	pendingIface string
}

const networkStateKey = "last_iface"

// NewNetwork returns the network check for this OS.
func NewNetwork(cfg NetworkConfig, env Env) (*Network, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return newNetwork(cfg, newNetworkGatherer(), &networkICMP{cfg: cfg, logger: env.logger()}, env), nil
}

func newNetwork(cfg NetworkConfig, g networkGatherer, p networkProber, env Env) *Network {
	n := &Network{cfg: cfg.withDefaults(), gather: g, probe: p, state: env.State, logger: env.logger()}
	var last string
	if ok, err := env.State.Load(networkStateKey, &last); err != nil {
		n.logger.Warn("network_state_unreadable", "err", err)
	} else if ok {
		n.lastIface = last
	}
	n.pendingIface = n.lastIface
	return n
}

// Name returns "network".
func (n *Network) Name() string { return NetworkName }

// Watch re-runs the check when a link, an address or a route changes.
func (n *Network) Watch(ctx context.Context, trigger func()) error {
	return networkWatch(ctx, trigger)
}

// Commit remembers the interface that held the default route in the last
// run, across restarts.
func (n *Network) Commit() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.pendingIface == n.lastIface {
		return nil
	}
	if err := n.state.Save(networkStateKey, n.pendingIface); err != nil {
		return err
	}
	n.lastIface = n.pendingIface
	return nil
}

// Run finds the default route and its interface, pings the gateway and,
// if it answers, the internet targets and resolves DNSName.
func (n *Network) Run(ctx context.Context) Result {
	n.mu.Lock()
	defer n.mu.Unlock()

	routes, err := n.gather.defaultRoutes(ctx)
	if err != nil {
		return Unknown("cannot read the routing table: %v", err)
	}
	data := NetworkData{DefaultRoutes: len(routes)}
	links := map[string]networkLink{}
	for _, r := range routes {
		if _, done := links[r.Iface]; done {
			continue
		}
		l, err := n.gather.link(ctx, r.Iface)
		if errors.Is(err, errNetworkNoLink) {
			continue // gone since the routes were read
		}
		if err != nil {
			return Unknown("cannot read interface %s: %v", r.Iface, err)
		}
		links[r.Iface] = l
	}

	route, ok := networkPickRoute(routes, links)
	if !ok {
		return n.noRoute(ctx, data)
	}
	link := links[route.Iface]
	n.pendingIface = link.Name
	data.fillLink(link)
	data.Gateway = route.Gateway.String()
	data.Metric = route.Metric

	if !link.Up {
		f := protocol.Finding{
			Code:     CodeNetLinkDown,
			Severity: protocol.SeverityCrit,
			Message:  fmt.Sprintf("%s, which holds the default route via %s, is down: %s", link.Name, data.Gateway, link.State),
			Source:   protocol.Clip(link.Name, protocol.MaxSourceLen),
		}
		// The gateway cannot answer over a dead link, and alerts about a
		// complete network failure key on gateway_unreachable whatever the
		// cause; link_down says which cause.
		g := protocol.Finding{
			Code:     CodeNetGatewayUnreachable,
			Severity: protocol.SeverityCrit,
			Message:  fmt.Sprintf("gateway %s cannot be reached: %s has no link: complete network failure", data.Gateway, link.Name),
			Source:   protocol.Clip(data.Gateway, protocol.MaxSourceLen),
		}
		return networkResult(data, []protocol.Finding{f, g}, "")
	}

	gw := route.Gateway
	if gw.Is6() && gw.IsLinkLocalUnicast() {
		zone := link.Name
		if link.Index > 0 {
			zone = strconv.Itoa(link.Index)
		}
		gw = gw.WithZone(zone)
	}
	gwPing, mode, err := n.probe.ping(ctx, gw.String())
	gwPing.Role = "gateway"
	gwPing.Target = data.Gateway
	if err != nil {
		return n.cannotPing(data, err)
	}
	data.ICMP = mode
	data.Pings = append(data.Pings, gwPing)
	if ctx.Err() != nil {
		return networkCancelled(ctx, data)
	}
	if gwPing.Received == 0 {
		f := protocol.Finding{
			Code:     CodeNetGatewayUnreachable,
			Severity: protocol.SeverityCrit,
			Message:  fmt.Sprintf("gateway %s on %s did not answer %s: complete network failure", data.Gateway, link.Name, networkPingsSent(gwPing, n.cfg)),
			Source:   protocol.Clip(data.Gateway, protocol.MaxSourceLen),
		}
		return networkResult(data, []protocol.Finding{f}, "")
	}

	pings, dns, err := n.beyondGateway(ctx)
	if err != nil {
		return n.cannotPing(data, err)
	}
	data.Pings = append(data.Pings, pings...)
	data.DNS = dns
	if ctx.Err() != nil {
		return networkCancelled(ctx, data)
	}
	var findings []protocol.Finding
	if len(pings) > 0 && !slices.ContainsFunc(pings, func(p NetworkPing) bool { return p.Received > 0 }) {
		findings = append(findings, protocol.Finding{
			Code:     CodeNetInternetUnreach,
			Severity: protocol.SeverityWarn,
			Message:  fmt.Sprintf("none of %s answered, though gateway %s does", strings.Join(n.cfg.InternetTargets, ", "), data.Gateway),
		})
	}
	if dns != nil && dns.Error != "" {
		findings = append(findings, protocol.Finding{
			Code:     CodeNetDNSFailure,
			Severity: protocol.SeverityWarn,
			Message:  protocol.Clip(fmt.Sprintf("cannot resolve %s: %s", dns.Name, dns.Error), protocol.MaxMessageLen),
			Source:   protocol.Clip(dns.Name, protocol.MaxSourceLen),
		})
	}
	return networkResult(data, findings, networkOKSummary(data))
}

// noRoute reports a missing default route, or, when the interface that
// last held it is now down, the link that took the route with it: Linux
// removes the routes of an interface set down, and Windows those of a
// disconnected one.
func (n *Network) noRoute(ctx context.Context, data NetworkData) Result {
	if n.pendingIface != "" {
		l, err := n.gather.link(ctx, n.pendingIface)
		if err == nil && !l.Up && !l.Loopback {
			data.fillLink(l)
			data.RouteGone = true
			f := protocol.Finding{
				Code:     CodeNetLinkDown,
				Severity: protocol.SeverityCrit,
				Message:  fmt.Sprintf("%s is down (%s) and no default route is left; it held the default route before", l.Name, l.State),
				Source:   protocol.Clip(l.Name, protocol.MaxSourceLen),
			}
			return networkResult(data, []protocol.Finding{f}, "")
		}
	}
	f := protocol.Finding{
		Code:     CodeNetNoDefaultRoute,
		Severity: protocol.SeverityCrit,
		Message:  "no default route on an interface that is not loopback",
	}
	return networkResult(data, []protocol.Finding{f}, "")
}

// beyondGateway pings the internet targets and resolves DNSName, all at
// once, so that dead targets cost one PingTimeout rather than one each.
func (n *Network) beyondGateway(ctx context.Context) ([]NetworkPing, *NetworkDNS, error) {
	pings := make([]NetworkPing, len(n.cfg.InternetTargets))
	errs := make([]error, len(n.cfg.InternetTargets))
	var wg sync.WaitGroup
	for i, t := range n.cfg.InternetTargets {
		wg.Go(func() {
			p, _, err := n.probe.ping(ctx, t)
			p.Target, p.Role = t, "internet"
			pings[i], errs[i] = p, err
		})
	}
	var dns *NetworkDNS
	if n.cfg.DNSName != "" {
		wg.Go(func() {
			dctx, cancel := context.WithTimeout(ctx, n.cfg.DNSTimeout.Duration)
			defer cancel()
			start := time.Now()
			addrs, err := n.probe.resolve(dctx, n.cfg.DNSName)
			d := NetworkDNS{Name: n.cfg.DNSName, Ms: networkMs(time.Since(start))}
			switch {
			case err != nil:
				d.Error = err.Error()
			case len(addrs) == 0:
				d.Error = "no addresses"
			default:
				d.Addresses = addrs[:min(len(addrs), 8)]
			}
			dns = &d
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, nil, err
		}
	}
	return pings, dns, nil
}

func (n *Network) cannotPing(data NetworkData, err error) Result {
	res := Unknown("cannot ping: %v", err)
	res.Data = data
	return res
}

func networkCancelled(ctx context.Context, data NetworkData) Result {
	res := Unknown("run stopped before the probes ended: %v", context.Cause(ctx))
	res.Data = data
	return res
}

func networkResult(data NetworkData, findings []protocol.Finding, okSummary string) Result {
	res := Result{Status: StatusOf(findings), Findings: findings, Data: data, Summary: okSummary}
	if len(findings) > 0 {
		res.Summary = joinMessages(findings)
	}
	res.Summary = protocol.Clip(res.Summary, protocol.MaxSummaryLen)
	return res
}

func (d *NetworkData) fillLink(l networkLink) {
	d.Interface = l.Name
	d.MAC = l.MAC
	d.Addresses = l.Addresses
	d.LinkState = l.State
}

func networkPingsSent(p NetworkPing, cfg NetworkConfig) string {
	if p.Error != "" {
		return fmt.Sprintf("any ping (%s)", p.Error)
	}
	return fmt.Sprintf("%d pings within %s", p.Sent, cfg.PingTimeout)
}

func networkOKSummary(d NetworkData) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s up", d.Interface)
	if len(d.Pings) > 0 {
		fmt.Fprintf(&b, ", gateway %s answers in %.1f ms", d.Gateway, d.Pings[0].RTTAvgMs)
	}
	var up []string
	internet := 0
	for _, p := range d.Pings[min(1, len(d.Pings)):] {
		internet++
		if p.Received > 0 {
			up = append(up, fmt.Sprintf("%s %.1f ms", p.Target, p.RTTAvgMs))
		}
	}
	if internet > 0 {
		fmt.Fprintf(&b, ", internet %d/%d answer (%s)", len(up), internet, strings.Join(up, ", "))
	}
	if d.DNS != nil && d.DNS.Error == "" {
		fmt.Fprintf(&b, ", %s resolves", d.DNS.Name)
	}
	return b.String()
}

// networkPickRoute picks the default route to judge the network by: one
// whose interface is up before one whose interface is down, IPv4 before
// IPv6 (guests reach the internet over IPv4 far more often), then the
// lowest metric. Routes through loopback or through interfaces that no
// longer exist are never picked.
func networkPickRoute(routes []networkRoute, links map[string]networkLink) (networkRoute, bool) {
	var cands []networkRoute
	for _, r := range routes {
		l, ok := links[r.Iface]
		if !ok || l.Loopback || !r.Gateway.IsValid() || r.Gateway.IsUnspecified() {
			continue
		}
		cands = append(cands, r)
	}
	if len(cands) == 0 {
		return networkRoute{}, false
	}
	slices.SortStableFunc(cands, func(a, b networkRoute) int {
		ua, ub := links[a.Iface].Up, links[b.Iface].Up
		if ua != ub {
			if ua {
				return -1
			}
			return 1
		}
		if a4, b4 := a.Gateway.Is4(), b.Gateway.Is4(); a4 != b4 {
			if a4 {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(a.Metric, b.Metric), strings.Compare(a.Iface, b.Iface))
	})
	return cands[0], true
}

// Flags of a route in /proc/net/route and /proc/net/ipv6_route
// (linux/route.h).
const (
	networkRTFUp      = 0x0001
	networkRTFGateway = 0x0002
	networkRTFReject  = 0x0200
)

// parseNetworkRoute returns the IPv4 default routes of /proc/net/route.
// Addresses there are the kernel's big-endian words printed as host
// integers, so they read back through the host's byte order.
func parseNetworkRoute(b []byte) ([]networkRoute, error) {
	var out []networkRoute
	sc := bufio.NewScanner(bytes.NewReader(b))
	first := true
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if first {
			first = false
			if len(f) < 8 || f[0] != "Iface" || f[1] != "Destination" || f[2] != "Gateway" || f[3] != "Flags" || f[6] != "Metric" || f[7] != "Mask" {
				return nil, fmt.Errorf("route table header %q is not the expected one", sc.Text())
			}
			continue
		}
		if len(f) == 0 {
			continue
		}
		if len(f) < 8 {
			return nil, fmt.Errorf("route line %q: %d fields, want 11", sc.Text(), len(f))
		}
		dst, err1 := networkHexIPv4(f[1])
		gw, err2 := networkHexIPv4(f[2])
		flags, err3 := strconv.ParseUint(f[3], 16, 32)
		metric, err4 := strconv.ParseUint(f[6], 10, 32)
		mask, err5 := networkHexIPv4(f[7])
		if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
			return nil, fmt.Errorf("route line %q: %w", sc.Text(), err)
		}
		if !dst.IsUnspecified() || !mask.IsUnspecified() || flags&networkRTFUp == 0 || flags&networkRTFGateway == 0 || flags&networkRTFReject != 0 {
			continue
		}
		out = append(out, networkRoute{Iface: f[0], Gateway: gw, Metric: uint32(metric)})
	}
	if first {
		return nil, errors.New("route table is empty, not even a header")
	}
	return out, sc.Err()
}

func networkHexIPv4(s string) (netip.Addr, error) {
	v, err := strconv.ParseUint(s, 16, 32)
	if err != nil || len(s) != 8 {
		return netip.Addr{}, fmt.Errorf("address %q is not 8 hex digits", s)
	}
	var a [4]byte
	binary.NativeEndian.PutUint32(a[:], uint32(v))
	return netip.AddrFrom4(a), nil
}

// parseNetworkIPv6Route returns the IPv6 default routes of
// /proc/net/ipv6_route: destination ::/0 through a next hop. The kernel's
// unreachable default on lo is a reject route and is left out.
func parseNetworkIPv6Route(b []byte) ([]networkRoute, error) {
	var out []networkRoute
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) != 10 {
			return nil, fmt.Errorf("ipv6 route line %q: %d fields, want 10", sc.Text(), len(f))
		}
		dst, err1 := networkHexIPv6(f[0])
		plen, err2 := strconv.ParseUint(f[1], 16, 8)
		gw, err3 := networkHexIPv6(f[4])
		metric, err4 := strconv.ParseUint(f[5], 16, 32)
		flags, err5 := strconv.ParseUint(f[8], 16, 32)
		if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
			return nil, fmt.Errorf("ipv6 route line %q: %w", sc.Text(), err)
		}
		if !dst.IsUnspecified() || plen != 0 || gw.IsUnspecified() || flags&networkRTFUp == 0 || flags&networkRTFGateway == 0 || flags&networkRTFReject != 0 {
			continue
		}
		out = append(out, networkRoute{Iface: f[9], Gateway: gw, Metric: uint32(metric)})
	}
	return out, sc.Err()
}

func networkHexIPv6(s string) (netip.Addr, error) {
	var a [16]byte
	if len(s) != 32 {
		return netip.Addr{}, fmt.Errorf("address %q is not 32 hex digits", s)
	}
	if _, err := hex.Decode(a[:], []byte(s)); err != nil {
		return netip.Addr{}, fmt.Errorf("address %q: %w", s, err)
	}
	return netip.AddrFrom16(a), nil
}

// Interface flags of /sys/class/net/<if>/flags (linux/if.h).
const (
	networkIFFUp       = 0x1
	networkIFFLoopback = 0x8
)

// networkLinuxLinkState judges a Linux interface from its flags, operstate
// and carrier files. carrier is empty when the file could not be read,
// which the kernel does for an interface that is administratively down.
func networkLinuxLinkState(flags uint64, operstate, carrier string) (bool, string) {
	operstate = strings.TrimSpace(operstate)
	carrier = strings.TrimSpace(carrier)
	switch {
	case flags&networkIFFUp == 0:
		return false, "administratively down"
	case carrier == "0":
		return false, "no carrier"
	}
	switch operstate {
	case "up", "unknown", "":
		return true, "up"
	case "down":
		if carrier == "1" {
			// The kernel's link watch updates operstate up to a second
			// after carrier comes back; carrier is the fresher word.
			return true, "up"
		}
		return false, "operstate down"
	case "lowerlayerdown":
		return false, "lower layer down"
	case "notpresent":
		return false, "not present"
	default: // dormant, testing
		return false, "operstate " + operstate
	}
}

// networkWinRoute is one row of GetIpForwardTable2 that the check needs.
type networkWinRoute struct {
	IfIndex   uint32
	PrefixLen uint8
	NextHop   netip.Addr
	Metric    uint32
}

// networkWinAdapter is one adapter of GetAdaptersAddresses.
type networkWinAdapter struct {
	IfIndex     uint32
	IPv6IfIndex uint32
	Name        string // FriendlyName, such as "Ethernet"
	Description string
	Type        uint32 // IFTYPE: 24 is software loopback
	OperStatus  uint32 // IF_OPER_STATUS: 1 up, 2 down, 7 lower layer down
	MAC         []byte
	Addresses   []string
	Metric4     uint32
	Metric6     uint32
}

// Values of IF_OPER_STATUS and IFTYPE (ifdef.h, ipifcons.h).
const (
	networkWinOperUp   = 1
	networkWinLoopback = 24
)

var networkWinOperNames = map[uint32]string{
	2: "down", 3: "testing", 4: "status unknown", 5: "dormant", 6: "not present", 7: "lower layer down (media disconnected)",
}

// networkWinDefaultRoutes keeps the default routes of a Windows forwarding
// table and names them by adapter. Windows ranks routes by the sum of the
// route's and the interface's metric, so that is the metric returned.
func networkWinDefaultRoutes(routes []networkWinRoute, adapters []networkWinAdapter) []networkRoute {
	var out []networkRoute
	for _, r := range routes {
		if r.PrefixLen != 0 || !r.NextHop.IsValid() || r.NextHop.IsUnspecified() {
			continue
		}
		i := slices.IndexFunc(adapters, func(a networkWinAdapter) bool {
			return a.IfIndex == r.IfIndex || (r.NextHop.Is6() && a.IPv6IfIndex == r.IfIndex)
		})
		if i < 0 {
			continue
		}
		a := adapters[i]
		m := a.Metric4
		if r.NextHop.Is6() && !r.NextHop.Is4In6() {
			m = a.Metric6
		}
		out = append(out, networkRoute{Iface: a.Name, Gateway: r.NextHop.Unmap(), Metric: r.Metric + m})
	}
	return out
}

// networkWinLink describes a Windows adapter as a link.
func networkWinLink(a networkWinAdapter) networkLink {
	l := networkLink{
		Name:      a.Name,
		Index:     int(a.IfIndex),
		MAC:       networkMAC(a.MAC),
		Addresses: a.Addresses,
		Loopback:  a.Type == networkWinLoopback,
		Up:        a.OperStatus == networkWinOperUp,
		State:     "up",
	}
	if !l.Up {
		l.State = cmp.Or(networkWinOperNames[a.OperStatus], fmt.Sprintf("oper status %d", a.OperStatus))
	}
	return l
}

func networkMAC(b []byte) string {
	if len(b) == 0 || !slices.ContainsFunc(b, func(c byte) bool { return c != 0 }) {
		return ""
	}
	return net.HardwareAddr(b).String()
}

// networkMaxAddresses bounds the addresses listed for one interface.
const networkMaxAddresses = 32

func networkMs(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}
