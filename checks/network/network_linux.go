package network

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// linuxGatherer reads default routes from /proc/net/route and
// /proc/net/ipv6_route and links from /sys/class/net, under proc and sys
// so that tests can point them at fixtures. Both are per network
// namespace: /proc/net is the reading process's, and sysfs is the one
// mounted by whoever entered the namespace (ip netns exec remounts it).
type linuxGatherer struct {
	proc, sys string
	addrs     func(name string) ([]string, error)
}

func newGatherer() gatherer {
	return linuxGatherer{proc: "/proc", sys: "/sys", addrs: ifaceAddrs}
}

func (g linuxGatherer) defaultRoutes(ctx context.Context) ([]defaultRoute, error) {
	b, err := os.ReadFile(filepath.Join(g.proc, "net", "route"))
	if err != nil {
		return nil, err
	}
	routes, err := parseRoute(b)
	if err != nil {
		return nil, err
	}
	b, err = os.ReadFile(filepath.Join(g.proc, "net", "ipv6_route"))
	if errors.Is(err, fs.ErrNotExist) {
		return routes, nil // IPv6 disabled
	}
	if err != nil {
		return nil, err
	}
	v6, err := parseIPv6Route(b)
	if err != nil {
		return nil, err
	}
	return append(routes, v6...), nil
}

func (g linuxGatherer) link(ctx context.Context, name string) (ifaceLink, error) {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return ifaceLink{}, fmt.Errorf("interface name %q: %w", name, errNoLink)
	}
	dir := filepath.Join(g.sys, "class", "net", name)
	read := func(file string) (string, error) {
		b, err := os.ReadFile(filepath.Join(dir, file))
		return strings.TrimSpace(string(b)), err
	}
	flagsText, err := read("flags")
	if errors.Is(err, fs.ErrNotExist) {
		return ifaceLink{}, fmt.Errorf("%s: %w", name, errNoLink)
	}
	if err != nil {
		return ifaceLink{}, err
	}
	flags, err := strconv.ParseUint(strings.TrimPrefix(flagsText, "0x"), 16, 32)
	if err != nil {
		return ifaceLink{}, fmt.Errorf("%s flags %q: %w", name, flagsText, err)
	}
	operstate, err := read("operstate")
	if err != nil {
		return ifaceLink{}, err
	}
	carrier, _ := read("carrier") // EINVAL while administratively down
	l := ifaceLink{Name: name, Loopback: flags&iffLoopback != 0}
	l.Up, l.State = linuxLinkState(flags, operstate, carrier)
	if idx, err := read("ifindex"); err == nil {
		l.Index, _ = strconv.Atoi(idx)
	}
	if mac, err := read("address"); err == nil {
		if hw, err := net.ParseMAC(mac); err == nil {
			l.MAC = macString(hw)
		}
	}
	if g.addrs != nil {
		// Addresses only describe the interface; a failure to list them
		// does not make the link any less up.
		l.Addresses, _ = g.addrs(name)
	}
	return l, nil
}

func ifaceAddrs(name string) ([]string, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, err
	}
	as, err := ifi.Addrs()
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, min(len(as), maxAddresses))
	for _, a := range as[:min(len(as), maxAddresses)] {
		out = append(out, a.String())
	}
	return out, nil
}

// icmpHint says why neither kind of ICMP socket may be open.
func icmpHint() string {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ping_group_range")
	if err != nil {
		return " (raw sockets need CAP_NET_RAW)"
	}
	return fmt.Sprintf(" (raw sockets need CAP_NET_RAW; unprivileged ones need gid %d within net.ipv4.ping_group_range, which is %q)",
		os.Getegid(), strings.Join(strings.Fields(string(b)), " "))
}

// watchGroups are the rtnetlink multicast groups whose messages
// re-run the check: links, addresses and routes of both families.
const watchGroups = unix.RTMGRP_LINK | unix.RTMGRP_IPV4_IFADDR | unix.RTMGRP_IPV4_ROUTE |
	unix.RTMGRP_IPV6_IFADDR | unix.RTMGRP_IPV6_ROUTE

// watch listens on an rtnetlink socket of the caller's network
// namespace and triggers on every message: the check itself works out
// what changed, and the runner folds a burst into one run.
func watch(ctx context.Context, trigger func()) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("rtnetlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: watchGroups}); err != nil {
		unix.Close(fd)
		return fmt.Errorf("rtnetlink bind: %w", err)
	}
	f := os.NewFile(uintptr(fd), "rtnetlink")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("rtnetlink: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	buf := make([]byte, 32<<10)
	for {
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), buf, 0)
			return rerr != unix.EAGAIN && rerr != unix.EWOULDBLOCK
		})
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("rtnetlink read: %w", err)
		}
		switch {
		case rerr == unix.ENOBUFS:
			// The kernel dropped messages because we were slow: something
			// changed, and we do not know what.
			trigger()
		case rerr == unix.EINTR:
		case rerr != nil:
			return fmt.Errorf("rtnetlink read: %w", rerr)
		case n > 0:
			trigger()
		}
	}
}
