package network

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"unsafe"

	"golang.org/x/sys/windows"
)

// windowsGatherer reads default routes with GetIpForwardTable2 and
// interfaces with GetAdaptersAddresses.
type windowsGatherer struct{}

func newGatherer() gatherer { return windowsGatherer{} }

func (windowsGatherer) defaultRoutes(ctx context.Context) ([]defaultRoute, error) {
	var table *windows.MibIpForwardTable2
	if err := windows.GetIpForwardTable2(windows.AF_UNSPEC, &table); err != nil {
		return nil, fmt.Errorf("GetIpForwardTable2: %w", err)
	}
	var routes []winRoute
	for _, r := range table.Rows() {
		if r.DestinationPrefix.PrefixLength != 0 {
			continue
		}
		routes = append(routes, winRoute{
			IfIndex:   r.InterfaceIndex,
			PrefixLen: r.DestinationPrefix.PrefixLength,
			NextHop:   winSockaddr(&r.NextHop),
			Metric:    r.Metric,
		})
	}
	windows.FreeMibTable(unsafe.Pointer(table))
	adapters, err := winAdapters()
	if err != nil {
		return nil, err
	}
	return winDefaultRoutes(routes, adapters), nil
}

func (windowsGatherer) link(ctx context.Context, name string) (ifaceLink, error) {
	adapters, err := winAdapters()
	if err != nil {
		return ifaceLink{}, err
	}
	i := slices.IndexFunc(adapters, func(a winAdapter) bool { return a.Name == name })
	if i < 0 {
		return ifaceLink{}, fmt.Errorf("%s: %w", name, errNoLink)
	}
	return winLink(adapters[i]), nil
}

func winSockaddr(sa *windows.RawSockaddrInet) netip.Addr {
	switch sa.Family {
	case windows.AF_INET:
		return netip.AddrFrom4((*windows.RawSockaddrInet4)(unsafe.Pointer(sa)).Addr)
	case windows.AF_INET6:
		return netip.AddrFrom16((*windows.RawSockaddrInet6)(unsafe.Pointer(sa)).Addr)
	}
	return netip.Addr{}
}

// winAdapters lists the adapters, growing the buffer as
// GetAdaptersAddresses asks: adapters may come and go between two calls.
func winAdapters() ([]winAdapter, error) {
	const flags = windows.GAA_FLAG_INCLUDE_GATEWAYS | windows.GAA_FLAG_SKIP_ANYCAST |
		windows.GAA_FLAG_SKIP_MULTICAST | windows.GAA_FLAG_SKIP_DNS_SERVER
	size := uint32(16 << 10)
	for range 5 {
		buf := make([]byte, size)
		first := (*windows.IpAdapterAddresses)(unsafe.Pointer(&buf[0]))
		err := windows.GetAdaptersAddresses(windows.AF_UNSPEC, flags, 0, first, &size)
		switch {
		case errors.Is(err, windows.ERROR_BUFFER_OVERFLOW):
			continue
		case errors.Is(err, windows.ERROR_NO_DATA):
			return nil, nil
		case err != nil:
			return nil, fmt.Errorf("GetAdaptersAddresses: %w", err)
		}
		var out []winAdapter
		for a := first; a != nil; a = a.Next {
			w := winAdapter{
				IfIndex:     a.IfIndex,
				IPv6IfIndex: a.Ipv6IfIndex,
				Name:        windows.UTF16PtrToString(a.FriendlyName),
				Description: windows.UTF16PtrToString(a.Description),
				Type:        a.IfType,
				OperStatus:  a.OperStatus,
				MAC:         slices.Clone(a.PhysicalAddress[:min(a.PhysicalAddressLength, uint32(len(a.PhysicalAddress)))]),
				Metric4:     a.Ipv4Metric,
				Metric6:     a.Ipv6Metric,
			}
			for u := a.FirstUnicastAddress; u != nil && len(w.Addresses) < maxAddresses; u = u.Next {
				ip, ok := netip.AddrFromSlice(u.Address.IP())
				if !ok {
					continue
				}
				w.Addresses = append(w.Addresses, netip.PrefixFrom(ip.Unmap(), int(u.OnLinkPrefixLength)).String())
			}
			out = append(out, w)
		}
		return out, nil
	}
	return nil, errors.New("GetAdaptersAddresses: adapter list kept growing")
}

func icmpHint() string {
	return " (raw ICMP sockets need an administrator or the LocalSystem account)"
}

// Route, interface and address change notifications all call one callback:
// windows.NewCallback makes callbacks that are never freed, so there is one
// for the process, and it calls every watcher's trigger.
var (
	winMu       sync.Mutex
	winTriggers = map[uint64]func(){}
	winNextID   uint64
	winCallback = sync.OnceValue(func() uintptr {
		return windows.NewCallback(func(callerContext, row, notificationType uintptr) uintptr {
			winMu.Lock()
			fns := make([]func(), 0, len(winTriggers))
			for _, fn := range winTriggers {
				fns = append(fns, fn)
			}
			winMu.Unlock()
			for _, fn := range fns {
				fn()
			}
			return 0
		})
	})
)

// watch subscribes to NotifyRouteChange2, NotifyIpInterfaceChange
// (which covers media connect and disconnect) and
// NotifyUnicastIpAddressChange until ctx ends.
func watch(ctx context.Context, trigger func()) error {
	winMu.Lock()
	id := winNextID
	winNextID++
	winTriggers[id] = trigger
	winMu.Unlock()
	defer func() {
		winMu.Lock()
		delete(winTriggers, id)
		winMu.Unlock()
	}()

	cb := winCallback()
	subscribe := []struct {
		name string
		fn   func(uint16, uintptr, unsafe.Pointer, bool, *windows.Handle) error
	}{
		{"NotifyRouteChange2", windows.NotifyRouteChange2},
		{"NotifyIpInterfaceChange", windows.NotifyIpInterfaceChange},
		{"NotifyUnicastIpAddressChange", windows.NotifyUnicastIpAddressChange},
	}
	for _, s := range subscribe {
		var h windows.Handle
		if err := s.fn(windows.AF_UNSPEC, cb, nil, false, &h); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		defer windows.CancelMibChangeNotify2(h)
	}
	<-ctx.Done()
	return nil
}
