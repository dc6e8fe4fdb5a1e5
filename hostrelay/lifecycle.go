package hostrelay

import (
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/protocol"
)

// Defaults for LifecycleConfig.
const (
	// DefaultProxmoxConfDir holds Proxmox VE's <vmid>.conf files, read for
	// the name of a VM whose QMP socket is named by its vmid.
	DefaultProxmoxConfDir = "/etc/pve/qemu-server"
	DefaultVirshURI       = "qemu:///system"
	// VirshOff as LifecycleConfig.Virsh turns libvirt's events off.
	VirshOff = "none"
)

// LifecycleConfig says where the relay watches VMs from the host, without
// their agents: QEMU's QMP sockets, and libvirt's domain events through
// virsh. A QMP socket serves one client at a time, so the relay needs one
// of its own per VM (an extra -qmp option); libvirt owns its monitor, so
// there the relay follows libvirt's events instead.
type LifecycleConfig struct {
	// QMP lists QMP sockets by VM name: Name and Path, UUID when known.
	QMP []Channel
	// QMPGlobs find QMP sockets. The VM name is the socket's file name
	// without its extension; for a number (a Proxmox vmid) it is the name
	// in ProxmoxConfDir/<vmid>.conf when that file says one.
	QMPGlobs []string
	// ProxmoxConfDir defaults to DefaultProxmoxConfDir.
	ProxmoxConfDir string
	// Virsh is the virsh binary whose "event --loop" output the relay
	// follows: "" looks for virsh on PATH and goes without when there is
	// none, VirshOff turns it off.
	Virsh string
	// VirshURI defaults to DefaultVirshURI.
	VirshURI string
}

func (c LifecycleConfig) withDefaults() (LifecycleConfig, error) {
	for _, g := range c.QMPGlobs {
		if _, err := filepath.Match(g, ""); err != nil {
			return c, fmt.Errorf("qmp glob %q: %w", g, err)
		}
	}
	names := make(map[string]bool, len(c.QMP))
	for _, q := range c.QMP {
		if q.Name == "" || q.Path == "" {
			return c, fmt.Errorf("qmp socket %q=%q: name and path are required", q.Name, q.Path)
		}
		if names[q.Name] {
			return c, fmt.Errorf("qmp socket %s: VM name %q listed twice", q.Path, q.Name)
		}
		names[q.Name] = true
	}
	if c.ProxmoxConfDir == "" {
		c.ProxmoxConfDir = DefaultProxmoxConfDir
	}
	if c.VirshURI == "" {
		c.VirshURI = DefaultVirshURI
	}
	return c, nil
}

// watchLifecycle watches every VM's QMP socket found, and libvirt's events
// when virsh is there, until ctx ends.
func (r *Relay) watchLifecycle(ctx context.Context) {
	cfg := r.cfg.Lifecycle
	var wg sync.WaitGroup
	defer wg.Wait()
	if bin := virshBinary(cfg.Virsh); bin != "" {
		wg.Go(func() { r.watchVirsh(ctx, bin) })
	}
	if len(cfg.QMP) == 0 && len(cfg.QMPGlobs) == 0 {
		return
	}
	stops := make(map[string]context.CancelFunc) // by socket path
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	tick := time.NewTicker(r.cfg.RescanInterval)
	defer tick.Stop()
	for {
		found := discoverQMP(cfg, r.log)
		for path, stop := range stops {
			if _, ok := found[path]; !ok {
				stop()
				delete(stops, path)
			}
		}
		for path, vm := range found {
			if _, ok := stops[path]; !ok {
				wctx, stop := context.WithCancel(ctx)
				stops[path] = stop
				wg.Go(func() { r.watchQMP(wctx, vm) })
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func virshBinary(setting string) string {
	switch setting {
	case VirshOff:
		return ""
	case "":
		p, err := exec.LookPath("virsh")
		if err != nil {
			return ""
		}
		return p
	}
	return setting
}

// vmLifecycle is the state last published for one VM.
type vmLifecycle struct {
	state  protocol.VMState
	reason string
}

// next reports whether moving from l to state is news worth publishing,
// and records it if so. What follows as a consequence of a state already
// published adds nothing: a panicked guest's QEMU then shuts down or
// exits, a migrated VM's source QEMU is then stopped, and a QEMU that
// shut down then closes its socket.
func (l *vmLifecycle) next(state protocol.VMState, reason string) bool {
	switch l.state {
	case protocol.VMPanicked:
		if state == protocol.VMShutdown || state == protocol.VMCrashed {
			return false
		}
	case protocol.VMMigrated:
		if state != protocol.VMRunning && state != protocol.VMMigrating {
			return false
		}
	case protocol.VMShutdown:
		if state == protocol.VMCrashed && reason == reasonQEMUExited {
			return false
		}
	}
	// A new reason for the same state (a panicked guest's shutdown says
	// guest-panic) is no news either.
	if l.state == state {
		return false
	}
	l.state, l.reason = state, reason
	return true
}

// uuidOf returns the UUID of the watched channel of the VM named name, or
// "".
func (r *Relay) uuidOf(name string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ch := range r.watching {
		if ch.Name == name {
			return ch.UUID
		}
	}
	return ""
}

// publishLifecycle reports a VM's new run state on its channel subject. It
// is best effort and does not wait, like publishChannelEvent.
func (r *Relay) publishLifecycle(vm Channel, state protocol.VMState, reason, source string, ts time.Time) {
	uuid := vm.UUID
	if uuid == "" {
		uuid = r.uuidOf(vm.Name)
	}
	ev := protocol.LifecycleEvent{
		V: protocol.Version, Kind: protocol.KindVMLifecycle, Host: r.cfg.Host, VM: vm.Name, UUID: uuid,
		State: state, Reason: reason, Source: source, TS: ts.UTC(),
	}
	r.log.Info("vm_lifecycle", "vm", vm.Name, "state", state, "reason", reason, "source", source)
	data, err := protocol.Marshal(ev)
	if err == nil {
		var paf jetstream.PubAckFuture
		paf, err = r.js.PublishMsgAsync(&nats.Msg{Subject: protocol.ChannelSubject(r.cfg.Host, vm.Name), Data: data[:len(data)-1]})
		if err == nil {
			r.events.Go(func() {
				select {
				case <-paf.Ok():
				case err := <-paf.Err():
					r.log.Warn("lifecycle_publish_failed", "vm", vm.Name, "state", state, "err", err)
				}
			})
			return
		}
	}
	r.log.Warn("lifecycle_publish_failed", "vm", vm.Name, "state", state, "err", err)
}

// logOnce logs at warning level the first time and at debug level after,
// for failures that repeat every few seconds while they last.
type logOnce struct{ warned bool }

func (o *logOnce) log(l *slog.Logger, msg string, args ...any) {
	level := slog.LevelDebug
	if !o.warned {
		level, o.warned = slog.LevelWarn, true
	}
	l.Log(context.Background(), level, msg, args...)
}
