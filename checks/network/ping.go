package network

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/guestdiag/guestdiag/checks/internal/num"
	probing "github.com/prometheus-community/pro-bing"
)

// ICMP socket kinds, as Data.ICMP names them.
const (
	icmpRaw    = "raw"
	icmpUnpriv = "unprivileged"
)

// icmp pings with pro-bing and resolves with the system resolver.
// It pings over a raw socket where it may (root, CAP_NET_RAW, a Windows
// administrator) and over an unprivileged ICMP datagram socket where it
// may not (Linux with net.ipv4.ping_group_range covering our group), and
// remembers which worked so later runs try that one first.
type icmp struct {
	cfg    Config
	logger *slog.Logger
	// unpriv is set once an unprivileged socket worked and a raw one did
	// not.
	unpriv atomic.Bool
}

func (p *icmp) ping(ctx context.Context, target string) (Ping, string, error) {
	kinds := []string{icmpRaw, icmpUnpriv}
	if p.unpriv.Load() {
		kinds = []string{icmpUnpriv, icmpRaw}
	}
	var refused []string
	for _, kind := range kinds {
		res, opened, err := p.pingAs(ctx, target, kind == icmpRaw)
		if !opened {
			refused = append(refused, fmt.Sprintf("%s socket: %v", kind, err))
			continue
		}
		p.unpriv.Store(kind == icmpUnpriv)
		return res, kind, nil
	}
	return Ping{Target: target}, "", fmt.Errorf("%w: %s%s", errNoICMP, strings.Join(refused, "; "), icmpHint())
}

// pingAs pings target over one kind of socket. opened is false when the
// socket could not be opened, which says nothing about the target.
func (p *icmp) pingAs(ctx context.Context, target string, raw bool) (res Ping, opened bool, err error) {
	addr, err := netip.ParseAddr(target)
	if err != nil {
		return Ping{}, false, err
	}
	res = Ping{Target: target}
	pinger := probing.New(target)
	pinger.SetIPAddr(&net.IPAddr{IP: addr.AsSlice(), Zone: addr.Zone()})
	pinger.SetPrivileged(raw)
	pinger.SetLogger(probing.NoopLogger{})
	pinger.Count = p.cfg.PingCount
	pinger.Interval = p.cfg.PingInterval.Duration
	pinger.Timeout = p.cfg.PingTimeout.Duration
	if dl, ok := ctx.Deadline(); ok {
		pinger.Timeout = max(time.Millisecond, min(pinger.Timeout, time.Until(dl)))
	}
	// OnSetup runs once the socket is open, in Run's goroutine; OnSendError
	// runs in pro-bing's send loop, which has ended when Run returns.
	pinger.OnSetup = func() { opened = true }
	var sendErr error
	pinger.OnSendError = func(_ *probing.Packet, err error) { sendErr = err }

	runErr := pinger.RunWithContext(ctx)
	if !opened {
		if runErr == nil {
			runErr = fmt.Errorf("pinger ended without opening a socket")
		}
		return Ping{}, false, runErr
	}
	st := pinger.Statistics()
	res.Sent, res.Received = st.PacketsSent, st.PacketsRecv
	res.LossPct = 100
	if res.Sent > 0 {
		res.LossPct = num.Pct(float64(res.Sent-min(res.Received, res.Sent)), float64(res.Sent))
	}
	if res.Received > 0 {
		res.RTTMinMs = ms(st.MinRtt)
		res.RTTAvgMs = ms(st.AvgRtt)
		res.RTTMaxMs = ms(st.MaxRtt)
	}
	switch {
	case runErr != nil && ctx.Err() == nil:
		res.Error = runErr.Error()
	case sendErr != nil:
		res.Error = sendErr.Error()
	}
	if res.Error != "" {
		p.logger.Debug("network_ping_send_failed", "target", target, "err", res.Error)
	}
	return res, true, nil
}

func (p *icmp) resolve(ctx context.Context, name string) ([]string, error) {
	return net.DefaultResolver.LookupHost(ctx, name)
}
