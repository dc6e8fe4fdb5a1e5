package firewall

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/google/nftables"
	"github.com/guestdiag/guestdiag/protocol"
	"golang.org/x/sys/unix"
)

// linuxSource reads the nftables ruleset over netlink (the kernel's nf_tables
// is all it needs, no nft binary), the legacy iptables tables through
// iptables-save when the kernel has any, and the state of firewalld and
// ufw from files.
type linuxSource struct {
	logger *slog.Logger
	// netns is an open network namespace to read instead of the agent's
	// own; 0 means the agent's.
	netns int
	// root prefixes /proc and /etc, so that tests read fixtures.
	root string
}

func newSource(logger *slog.Logger) source { return &linuxSource{logger: logger, root: "/"} }

func (s *linuxSource) path(p string) string { return filepath.Join(s.root, p) }

func (s *linuxSource) gather(ctx context.Context) (gathered, error) {
	var g gathered
	chains, nftErr := s.nftables(ctx)
	if nftErr == nil {
		g.sources = append(g.sources, "nftables")
		g.chains = append(g.chains, chains...)
	}

	legacyTables := false
	for _, v := range []struct{ family, names, tools string }{
		{"ip", "proc/net/ip_tables_names", "iptables-legacy-save iptables-save"},
		{"ip6", "proc/net/ip6_tables_names", "ip6tables-legacy-save ip6tables-save"},
	} {
		names, err := os.ReadFile(s.path(v.names))
		if err != nil || len(bytes.TrimSpace(names)) == 0 {
			continue // no legacy table of this family in the kernel
		}
		legacyTables = true
		chains, err := s.legacy(ctx, v.family, strings.Fields(v.tools))
		if err != nil {
			g.errs = append(g.errs, fmt.Sprintf("legacy %s tables (%s): %v", v.family, strings.Join(strings.Fields(string(names)), ","), err))
			continue
		}
		g.sources = append(g.sources, legacySourceName(v.family))
		g.chains = append(g.chains, chains...)
	}

	if nftErr != nil {
		if !legacyTables {
			return gathered{}, nftErr
		}
		// A kernel without nf_tables but with legacy tables is an
		// iptables-only system, not a failure.
		if !errors.Is(nftErr, errNoNftables) {
			g.errs = append(g.errs, nftErr.Error())
		}
	}
	if len(g.sources) == 0 {
		return gathered{}, fmt.Errorf("%s", strings.Join(g.errs, "; "))
	}

	g.firewalld = s.firewalld()
	g.ufw = s.ufw(g.chains)
	return g, nil
}

func legacySourceName(family string) string {
	if family == "ip6" {
		return "ip6tables-legacy"
	}
	return "iptables-legacy"
}

// errNoNftables says that the kernel has no nf_tables.
var errNoNftables = errors.New("the kernel has no nf_tables (module not loaded or not built)")

// nftables reads every table, chain and rule. The netlink socket is closed
// when ctx ends, which ends any call waiting on it.
func (s *linuxSource) nftables(ctx context.Context) ([]chain, error) {
	conn, err := nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(s.netns))
	if err != nil {
		return nil, nftError(err)
	}
	defer conn.CloseLasting()
	stop := context.AfterFunc(ctx, func() { conn.CloseLasting() })
	defer stop()

	tables, err := conn.ListTables()
	if err != nil {
		return nil, nftError(err)
	}
	chains, err := conn.ListChains()
	if err != nil {
		return nil, nftError(err)
	}
	type tableKey struct {
		family nftables.TableFamily
		name   string
	}
	known := map[tableKey]*nftables.Table{}
	for _, t := range tables {
		known[tableKey{t.Family, t.Name}] = t
	}
	sets := map[tableKey]func(string) (setInfo, bool){}
	setsOf := func(t *nftables.Table) func(string) (setInfo, bool) {
		k := tableKey{t.Family, t.Name}
		if f, ok := sets[k]; ok {
			return f
		}
		f := s.setLookup(conn, t)
		sets[k] = f
		return f
	}

	var out []chain
	for _, c := range chains {
		if c.Table == nil {
			continue
		}
		t, ok := known[tableKey{c.Table.Family, c.Table.Name}]
		if !ok {
			t = c.Table // added since ListTables: still readable
		}
		rules, err := conn.GetRules(t, c)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("nftables: rules of %s %s %s: %w", familyName(t.Family), t.Name, c.Name, err)
		}
		header, hook, policy := chainHeader(c)
		fc := chain{
			Table:  familyName(t.Family) + " " + t.Name,
			Family: familyName(t.Family),
			Name:   c.Name,
			Policy: policy,
			Header: header,
		}
		if hook == "input" && c.Type == nftables.ChainTypeFilter {
			fc.Hook = hook
		}
		lookup := setsOf(t)
		for i, r := range rules {
			text, drop := renderRule(t.Family, r, lookup)
			fc.Rules = append(fc.Rules, text)
			if i == len(rules)-1 {
				fc.FinalDrop = drop
			}
		}
		out = append(out, fc)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return out, nil
}

// setLookup returns a function that finds a set of table t by name and
// reads the elements of anonymous ones, once each. A set that cannot be
// read is printed by name.
func (s *linuxSource) setLookup(conn *nftables.Conn, t *nftables.Table) func(string) (setInfo, bool) {
	var byName map[string]*nftables.Set
	cache := map[string]setInfo{}
	return func(name string) (setInfo, bool) {
		if info, ok := cache[name]; ok {
			return info, true
		}
		if byName == nil {
			byName = map[string]*nftables.Set{}
			sets, err := conn.GetSets(t)
			if err != nil {
				s.logger.Debug("firewall_sets_unreadable", "table", t.Name, "err", err)
			}
			for _, set := range sets {
				byName[set.Name] = set
			}
		}
		set, ok := byName[name]
		if !ok {
			return setInfo{}, false
		}
		info := setInfo{set: set}
		if set.Anonymous {
			elems, err := conn.GetSetElements(set)
			if err != nil {
				s.logger.Debug("firewall_set_elements_unreadable", "table", t.Name, "set", name, "err", err)
				return setInfo{}, false
			}
			info.elems = elems
		}
		cache[name] = info
		return info, true
	}
}

// nftError says why nftables could not be read, keeping the errno.
func nftError(err error) error {
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return fmt.Errorf("nftables: permission denied (needs root or CAP_NET_ADMIN): %w", err)
	case errors.Is(err, unix.EPROTONOSUPPORT), errors.Is(err, unix.ENOENT), errors.Is(err, unix.EAFNOSUPPORT), errors.Is(err, unix.EOPNOTSUPP):
		return fmt.Errorf("nftables: %w: %w", errNoNftables, err)
	}
	return fmt.Errorf("nftables: %w", err)
}

// legacy runs the first of tools found (iptables-legacy-save before
// iptables-save) and parses its output.
func (s *linuxSource) legacy(ctx context.Context, family string, tools []string) ([]chain, error) {
	var path string
	for _, t := range tools {
		if p, err := exec.LookPath(t); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		return nil, fmt.Errorf("none of %s is installed", strings.Join(tools, ", "))
	}
	cmd := exec.CommandContext(ctx, path)
	cmd.Env = []string{"LC_ALL=C", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(ee.Stderr) > 0 {
			return nil, fmt.Errorf("%s: %w: %s", filepath.Base(path), err, protocol.Clip(strings.TrimSpace(string(ee.Stderr)), 200))
		}
		return nil, fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	chains, err := parseIptablesSave(out, family)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	return chains, nil
}

// firewalld says whether firewalld runs, without starting firewall-cmd (a
// Python program that asks firewalld over D-Bus and takes a good part of a
// second): the pid in /run/firewalld.pid, or with --nopid any process,
// whose command name is firewalld. Empty when firewalld is not installed.
func (s *linuxSource) firewalld() string {
	installed := false
	for _, p := range []string{"usr/sbin/firewalld", "sbin/firewalld", "etc/firewalld"} {
		if _, err := os.Stat(s.path(p)); err == nil {
			installed = true
			break
		}
	}
	if !installed {
		return ""
	}
	for _, pidfile := range []string{"run/firewalld.pid", "var/run/firewalld.pid"} {
		b, err := os.ReadFile(s.path(pidfile))
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && s.isFirewalld(strconv.Itoa(pid)) {
			return "running"
		}
	}
	entries, err := os.ReadDir(s.path("proc"))
	if err != nil {
		return "not running"
	}
	for _, e := range entries {
		if n := e.Name(); n[0] >= '0' && n[0] <= '9' && s.isFirewalld(n) {
			return "running"
		}
	}
	return "not running"
}

// isFirewalld matches the command name, which for a script is the
// script's file name, or else the script's path in the command line.
func (s *linuxSource) isFirewalld(pid string) bool {
	comm, err := os.ReadFile(s.path(filepath.Join("proc", pid, "comm")))
	if err != nil {
		return false
	}
	if strings.TrimSpace(string(comm)) == "firewalld" {
		return true
	}
	if !strings.HasPrefix(string(comm), "python") {
		return false
	}
	cmdline, _ := os.ReadFile(s.path(filepath.Join("proc", pid, "cmdline")))
	for _, arg := range bytes.Split(cmdline, []byte{0}) {
		if filepath.Base(string(arg)) == "firewalld" {
			return true
		}
	}
	return false
}

// ufw is "active" when /etc/ufw/ufw.conf says ENABLED=yes and the ufw
// chains are loaded, in nftables (iptables-nft) or legacy tables.
func (s *linuxSource) ufw(chains []chain) string {
	conf, err := os.ReadFile(s.path("etc/ufw/ufw.conf"))
	if errors.Is(err, fs.ErrNotExist) {
		return ""
	}
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	if !ufwEnabled(conf) {
		return "inactive"
	}
	for _, c := range chains {
		if strings.HasPrefix(c.Name, "ufw-") || strings.HasPrefix(c.Name, "ufw6-") {
			return "active"
		}
	}
	return "enabled in ufw.conf but its chains are not loaded"
}

// ufwEnabled reads ENABLED from ufw.conf, a shell-style file.
func ufwEnabled(conf []byte) bool {
	sc := bufio.NewScanner(bytes.NewReader(conf))
	enabled := false
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if ok && k == "ENABLED" {
			enabled = strings.EqualFold(strings.Trim(v, `"' `), "yes")
		}
	}
	return enabled
}

// watch triggers on every nftables transaction: the monitor reports one
// batch of changes per generation. Legacy tables have no events; they are
// polled. When the socket overflows (ENOBUFS) events were lost, so it
// triggers and listens again.
func (s *linuxSource) watch(ctx context.Context, trigger func()) error {
	for {
		err := s.watchOnce(ctx, trigger)
		if ctx.Err() != nil {
			return nil
		}
		if !errors.Is(err, syscall.ENOBUFS) {
			return err
		}
		s.logger.Debug("firewall_monitor_overrun", "err", err)
		trigger()
	}
}

func (s *linuxSource) watchOnce(ctx context.Context, trigger func()) error {
	conn, err := nftables.New(nftables.WithNetNSFd(s.netns))
	if err != nil {
		return nftError(err)
	}
	mon := nftables.NewMonitor(nftables.WithMonitorEventBuffer(16))
	events, err := conn.AddGenerationalMonitor(mon)
	if err != nil {
		return nftError(err)
	}
	defer func() {
		mon.Close()
		for range events { // let the monitor's goroutine finish
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				return errors.New("nftables monitor ended")
			}
			if ev.GeneratedBy != nil && ev.GeneratedBy.Type == nftables.MonitorEventTypeOOB && ev.GeneratedBy.Error != nil {
				return fmt.Errorf("nftables monitor: %w", ev.GeneratedBy.Error)
			}
			trigger()
		}
	}
}
