package checks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	Register(NetworkName, true, time.Minute, 15*time.Second, DefaultNetworkConfig,
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
		res.Summary = JoinMessages(findings)
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

func networkMs(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}
