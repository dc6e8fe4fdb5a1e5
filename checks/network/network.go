package network

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

	"github.com/guestdiag/guestdiag/checks"
	"github.com/guestdiag/guestdiag/protocol"
)

// Name is the registered name of the network check.
const Name = "network"

func init() {
	checks.Register(Name, true, time.Minute, 15*time.Second, DefaultConfig,
		func(cfg Config, env checks.Env) (checks.Check, error) { return New(cfg, env) })
}

// Finding codes of the network check.
const (
	CodeNetNoDefaultRoute     = "net.no_default_route"
	CodeNetLinkDown           = "net.link_down"
	CodeNetGatewayUnreachable = "net.gateway_unreachable"
	CodeNetInternetUnreach    = "net.internet_unreachable"
	CodeNetDNSFailure         = "net.dns_failure"
)

// maxTargets bounds internet_targets so that one run stays short and
// its data small.
const maxTargets = 16

// Config tunes the network check.
type Config struct {
	// PingCount is how many echo requests go to the gateway and to each
	// internet target.
	PingCount int `json:"ping_count"`
	// PingInterval is the time between two echo requests to one target.
	PingInterval checks.Duration `json:"ping_interval"`
	// PingTimeout bounds the pinging of one target. The targets are pinged
	// in parallel, so a run with a dead gateway takes about this long.
	PingTimeout checks.Duration `json:"ping_timeout"`
	// InternetTargets are IP addresses pinged once the gateway answers. The
	// internet counts as unreachable only when none of them answers. An
	// empty list turns the internet probe off.
	InternetTargets []string `json:"internet_targets"`
	// DNSName is resolved with the system resolver once the gateway
	// answers. Empty turns the DNS probe off.
	DNSName    string          `json:"dns_name"`
	DNSTimeout checks.Duration `json:"dns_timeout"`
}

// DefaultConfig returns the defaults: three pings 200 ms apart
// within 2 s to the gateway, 8.8.8.8 and 1.1.1.1, and example.com resolved
// within 2 s.
func DefaultConfig() Config {
	return Config{
		PingCount:       3,
		PingInterval:    checks.D(200 * time.Millisecond),
		PingTimeout:     checks.D(2 * time.Second),
		InternetTargets: []string{"8.8.8.8", "1.1.1.1"},
		DNSName:         "example.com",
		DNSTimeout:      checks.D(2 * time.Second),
	}
}

// withDefaults fills in zero numbers. An empty target list and an empty
// DNS name stay empty: they turn a probe off.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
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

func (c Config) validate() error {
	if len(c.InternetTargets) > maxTargets {
		return fmt.Errorf("internet_targets: %d addresses, at most %d", len(c.InternetTargets), maxTargets)
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

// Data is the data of a network result. Interface, MAC and
// Addresses describe the interface that holds the default route (or held
// it, when RouteGone is set).
type Data struct {
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
	ICMP  string `json:"icmp,omitempty"`
	Pings []Ping `json:"pings,omitempty"`
	DNS   *DNS   `json:"dns,omitempty"`
}

// Ping is the outcome of pinging one target.
type Ping struct {
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

// DNS is the outcome of resolving DNSName.
type DNS struct {
	Name      string   `json:"name"`
	Addresses []string `json:"addresses,omitempty"`
	Ms        float64  `json:"ms"`
	Error     string   `json:"error,omitempty"`
}

// defaultRoute is one default route: its interface, next hop and metric.
type defaultRoute struct {
	Iface   string
	Gateway netip.Addr
	Metric  uint32
}

// ifaceLink is what the check needs to know of one interface.
type ifaceLink struct {
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

// errNoLink is returned by link for an interface that does not exist.
var errNoLink = errors.New("no such interface")

// errNoICMP means no echo request can be sent at all: neither a raw
// nor an unprivileged ICMP socket could be opened.
var errNoICMP = errors.New("cannot open an ICMP socket")

// gatherer reads the routing table and interfaces of one OS.
type gatherer interface {
	defaultRoutes(ctx context.Context) ([]defaultRoute, error)
	// link returns errNoLink if name does not exist.
	link(ctx context.Context, name string) (ifaceLink, error)
}

// prober sends the probes. ping returns an error wrapping
// errNoICMP only when it could not ping at all; a target that does
// not answer, or cannot be sent to, is a Ping with no replies.
type prober interface {
	ping(ctx context.Context, target string) (Ping, string, error)
	resolve(ctx context.Context, name string) ([]string, error)
}

// Network is the network check: default route, its interface's link, the
// gateway, the internet and DNS.
type Network struct {
	cfg    Config
	gather gatherer
	probe  prober
	state  *checks.State
	logger *slog.Logger

	mu sync.Mutex // serialises Run and Commit
	// lastIface is the interface that held the default route in the last
	// run that saw one, so that a link whose loss took the route with it
	// is still reported as down. pendingIface becomes lastIface on Commit.
	lastIface    string
	pendingIface string
}

const stateKey = "last_iface"

// New returns the network check for this OS.
func New(cfg Config, env checks.Env) (*Network, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return newCheck(cfg, newGatherer(), &icmp{cfg: cfg, logger: env.Log()}, env), nil
}

func newCheck(cfg Config, g gatherer, p prober, env checks.Env) *Network {
	n := &Network{cfg: cfg.withDefaults(), gather: g, probe: p, state: env.State, logger: env.Log()}
	var last string
	if ok, err := env.State.Load(stateKey, &last); err != nil {
		n.logger.Warn("network_state_unreadable", "err", err)
	} else if ok {
		n.lastIface = last
	}
	n.pendingIface = n.lastIface
	return n
}

// Name returns "network".
func (n *Network) Name() string { return Name }

// Watch re-runs the check when a link, an address or a route changes.
func (n *Network) Watch(ctx context.Context, trigger func()) error {
	return watch(ctx, trigger)
}

// Commit remembers the interface that held the default route in the last
// run, across restarts.
func (n *Network) Commit() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.pendingIface == n.lastIface {
		return nil
	}
	if err := n.state.Save(stateKey, n.pendingIface); err != nil {
		return err
	}
	n.lastIface = n.pendingIface
	return nil
}

// Run finds the default route and its interface, pings the gateway and,
// if it answers, the internet targets and resolves DNSName.
func (n *Network) Run(ctx context.Context) checks.Result {
	n.mu.Lock()
	defer n.mu.Unlock()

	routes, err := n.gather.defaultRoutes(ctx)
	if err != nil {
		return checks.Unknown("cannot read the routing table: %v", err)
	}
	data := Data{DefaultRoutes: len(routes)}
	links := map[string]ifaceLink{}
	for _, r := range routes {
		if _, done := links[r.Iface]; done {
			continue
		}
		l, err := n.gather.link(ctx, r.Iface)
		if errors.Is(err, errNoLink) {
			continue // gone since the routes were read
		}
		if err != nil {
			return checks.Unknown("cannot read interface %s: %v", r.Iface, err)
		}
		links[r.Iface] = l
	}

	route, ok := pickRoute(routes, links)
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
		return result(data, []protocol.Finding{f, g}, "")
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
		return cancelled(ctx, data)
	}
	if gwPing.Received == 0 {
		f := protocol.Finding{
			Code:     CodeNetGatewayUnreachable,
			Severity: protocol.SeverityCrit,
			Message:  fmt.Sprintf("gateway %s on %s did not answer %s: complete network failure", data.Gateway, link.Name, pingsSent(gwPing, n.cfg)),
			Source:   protocol.Clip(data.Gateway, protocol.MaxSourceLen),
		}
		return result(data, []protocol.Finding{f}, "")
	}

	pings, dns, err := n.beyondGateway(ctx)
	if err != nil {
		return n.cannotPing(data, err)
	}
	data.Pings = append(data.Pings, pings...)
	data.DNS = dns
	if ctx.Err() != nil {
		return cancelled(ctx, data)
	}
	var findings []protocol.Finding
	if len(pings) > 0 && !slices.ContainsFunc(pings, func(p Ping) bool { return p.Received > 0 }) {
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
	return result(data, findings, okSummary(data))
}

// noRoute reports a missing default route, or, when the interface that
// last held it is now down, the link that took the route with it: Linux
// removes the routes of an interface set down, and Windows those of a
// disconnected one.
func (n *Network) noRoute(ctx context.Context, data Data) checks.Result {
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
			return result(data, []protocol.Finding{f}, "")
		}
	}
	f := protocol.Finding{
		Code:     CodeNetNoDefaultRoute,
		Severity: protocol.SeverityCrit,
		Message:  "no default route on an interface that is not loopback",
	}
	return result(data, []protocol.Finding{f}, "")
}

// beyondGateway pings the internet targets and resolves DNSName, all at
// once, so that dead targets cost one PingTimeout rather than one each.
func (n *Network) beyondGateway(ctx context.Context) ([]Ping, *DNS, error) {
	pings := make([]Ping, len(n.cfg.InternetTargets))
	errs := make([]error, len(n.cfg.InternetTargets))
	var wg sync.WaitGroup
	for i, t := range n.cfg.InternetTargets {
		wg.Go(func() {
			p, _, err := n.probe.ping(ctx, t)
			p.Target, p.Role = t, "internet"
			pings[i], errs[i] = p, err
		})
	}
	var dns *DNS
	if n.cfg.DNSName != "" {
		wg.Go(func() {
			dctx, cancel := context.WithTimeout(ctx, n.cfg.DNSTimeout.Duration)
			defer cancel()
			start := time.Now()
			addrs, err := n.probe.resolve(dctx, n.cfg.DNSName)
			d := DNS{Name: n.cfg.DNSName, Ms: ms(time.Since(start))}
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

func (n *Network) cannotPing(data Data, err error) checks.Result {
	res := checks.Unknown("cannot ping: %v", err)
	res.Data = data
	return res
}

func cancelled(ctx context.Context, data Data) checks.Result {
	res := checks.Unknown("run stopped before the probes ended: %v", context.Cause(ctx))
	res.Data = data
	return res
}

func result(data Data, findings []protocol.Finding, okSummary string) checks.Result {
	res := checks.Result{Status: checks.StatusOf(findings), Findings: findings, Data: data, Summary: okSummary}
	if len(findings) > 0 {
		res.Summary = checks.JoinMessages(findings)
	}
	res.Summary = protocol.Clip(res.Summary, protocol.MaxSummaryLen)
	return res
}

func (d *Data) fillLink(l ifaceLink) {
	d.Interface = l.Name
	d.MAC = l.MAC
	d.Addresses = l.Addresses
	d.LinkState = l.State
}

func pingsSent(p Ping, cfg Config) string {
	if p.Error != "" {
		return fmt.Sprintf("any ping (%s)", p.Error)
	}
	return fmt.Sprintf("%d pings within %s", p.Sent, cfg.PingTimeout)
}

func okSummary(d Data) string {
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

func ms(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}
