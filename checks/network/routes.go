package network

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// pickRoute picks the default route to judge the network by: one
// whose interface is up before one whose interface is down, IPv4 before
// IPv6 (guests reach the internet over IPv4 far more often), then the
// lowest metric. Routes through loopback or through interfaces that no
// longer exist are never picked.
func pickRoute(routes []defaultRoute, links map[string]ifaceLink) (defaultRoute, bool) {
	var cands []defaultRoute
	for _, r := range routes {
		l, ok := links[r.Iface]
		if !ok || l.Loopback || !r.Gateway.IsValid() || r.Gateway.IsUnspecified() {
			continue
		}
		cands = append(cands, r)
	}
	if len(cands) == 0 {
		return defaultRoute{}, false
	}
	slices.SortStableFunc(cands, func(a, b defaultRoute) int {
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
	rtfUp      = 0x0001
	rtfGateway = 0x0002
	rtfReject  = 0x0200
)

// parseRoute returns the IPv4 default routes of /proc/net/route.
// Addresses there are the kernel's big-endian words printed as host
// integers, so they read back through the host's byte order.
func parseRoute(b []byte) ([]defaultRoute, error) {
	var out []defaultRoute
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
		dst, err1 := hexIPv4(f[1])
		gw, err2 := hexIPv4(f[2])
		flags, err3 := strconv.ParseUint(f[3], 16, 32)
		metric, err4 := strconv.ParseUint(f[6], 10, 32)
		mask, err5 := hexIPv4(f[7])
		if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
			return nil, fmt.Errorf("route line %q: %w", sc.Text(), err)
		}
		if !dst.IsUnspecified() || !mask.IsUnspecified() || flags&rtfUp == 0 || flags&rtfGateway == 0 || flags&rtfReject != 0 {
			continue
		}
		out = append(out, defaultRoute{Iface: f[0], Gateway: gw, Metric: uint32(metric)})
	}
	// An empty file, without even the header, is a namespace with no IPv4
	// routing table at all: the kernel prints nothing until its main table
	// exists. That is no default route, not a table it cannot read.
	return out, sc.Err()
}

func hexIPv4(s string) (netip.Addr, error) {
	v, err := strconv.ParseUint(s, 16, 32)
	if err != nil || len(s) != 8 {
		return netip.Addr{}, fmt.Errorf("address %q is not 8 hex digits", s)
	}
	var a [4]byte
	binary.NativeEndian.PutUint32(a[:], uint32(v))
	return netip.AddrFrom4(a), nil
}

// parseIPv6Route returns the IPv6 default routes of
// /proc/net/ipv6_route: destination ::/0 through a next hop. The kernel's
// unreachable default on lo is a reject route and is left out.
func parseIPv6Route(b []byte) ([]defaultRoute, error) {
	var out []defaultRoute
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) != 10 {
			return nil, fmt.Errorf("ipv6 route line %q: %d fields, want 10", sc.Text(), len(f))
		}
		dst, err1 := hexIPv6(f[0])
		plen, err2 := strconv.ParseUint(f[1], 16, 8)
		gw, err3 := hexIPv6(f[4])
		metric, err4 := strconv.ParseUint(f[5], 16, 32)
		flags, err5 := strconv.ParseUint(f[8], 16, 32)
		if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
			return nil, fmt.Errorf("ipv6 route line %q: %w", sc.Text(), err)
		}
		if !dst.IsUnspecified() || plen != 0 || gw.IsUnspecified() || flags&rtfUp == 0 || flags&rtfGateway == 0 || flags&rtfReject != 0 {
			continue
		}
		out = append(out, defaultRoute{Iface: f[9], Gateway: gw, Metric: uint32(metric)})
	}
	return out, sc.Err()
}

func hexIPv6(s string) (netip.Addr, error) {
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
	iffUp       = 0x1
	iffLoopback = 0x8
)

// linuxLinkState judges a Linux interface from its flags, operstate
// and carrier files. carrier is empty when the file could not be read,
// which the kernel does for an interface that is administratively down.
func linuxLinkState(flags uint64, operstate, carrier string) (bool, string) {
	operstate = strings.TrimSpace(operstate)
	carrier = strings.TrimSpace(carrier)
	switch {
	case flags&iffUp == 0:
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

// winRoute is one row of GetIpForwardTable2 that the check needs.
type winRoute struct {
	IfIndex   uint32
	PrefixLen uint8
	NextHop   netip.Addr
	Metric    uint32
}

// winAdapter is one adapter of GetAdaptersAddresses.
type winAdapter struct {
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
	winOperUp   = 1
	winLoopback = 24
)

var winOperNames = map[uint32]string{
	2: "down", 3: "testing", 4: "status unknown", 5: "dormant", 6: "not present", 7: "lower layer down (media disconnected)",
}

// winDefaultRoutes keeps the default routes of a Windows forwarding
// table and names them by adapter. Windows ranks routes by the sum of the
// route's and the interface's metric, so that is the metric returned.
func winDefaultRoutes(routes []winRoute, adapters []winAdapter) []defaultRoute {
	var out []defaultRoute
	for _, r := range routes {
		if r.PrefixLen != 0 || !r.NextHop.IsValid() || r.NextHop.IsUnspecified() {
			continue
		}
		i := slices.IndexFunc(adapters, func(a winAdapter) bool {
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
		out = append(out, defaultRoute{Iface: a.Name, Gateway: r.NextHop.Unmap(), Metric: r.Metric + m})
	}
	return out
}

// winLink describes a Windows adapter as a link.
func winLink(a winAdapter) ifaceLink {
	l := ifaceLink{
		Name:      a.Name,
		Index:     int(a.IfIndex),
		MAC:       macString(a.MAC),
		Addresses: a.Addresses,
		Loopback:  a.Type == winLoopback,
		Up:        a.OperStatus == winOperUp,
		State:     "up",
	}
	if !l.Up {
		l.State = cmp.Or(winOperNames[a.OperStatus], fmt.Sprintf("oper status %d", a.OperStatus))
	}
	return l
}

func macString(b []byte) string {
	if len(b) == 0 || !slices.ContainsFunc(b, func(c byte) bool { return c != 0 }) {
		return ""
	}
	return net.HardwareAddr(b).String()
}

// maxAddresses bounds the addresses listed for one interface.
const maxAddresses = 32
