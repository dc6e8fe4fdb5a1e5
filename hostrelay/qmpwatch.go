package hostrelay

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/guestdiag/guestdiag/internal/pause"
	"github.com/guestdiag/guestdiag/internal/qmp"
	"github.com/guestdiag/guestdiag/protocol"
)

const (
	// qmpTimeout bounds the handshake and each command.
	qmpTimeout = 5 * time.Second
	// migratePoll is how often a VM in a migration is asked for its state:
	// QEMU sends no event when its source side completes unless a manager
	// turned migration events on.
	migratePoll = 100 * time.Millisecond
	// reasonQEMUExited is the reason given when QEMU closed its QMP socket
	// without saying it shuts down: it was killed or it crashed.
	reasonQEMUExited = "qemu_exited"
	// reasonMigrationCompleted is the reason of a migrated state learnt
	// from QEMU's MIGRATION event rather than from query-status.
	reasonMigrationCompleted = "migration-completed"
)

// discoverQMP returns the QMP sockets to watch now, by path. A static entry
// wins over a glob match of the same path, and of the same name.
func discoverQMP(cfg LifecycleConfig, log *slog.Logger) map[string]Channel {
	found := make(map[string]Channel)
	names := make(map[string]bool)
	for _, q := range cfg.QMP {
		found[q.Path] = q
		names[q.Name] = true
	}
	for _, g := range cfg.QMPGlobs {
		paths, _ := globFiles(g) // patterns were checked in withDefaults
		for _, p := range paths {
			if _, ok := found[p]; ok {
				continue
			}
			name := qmpVMName(cfg.ProxmoxConfDir, p)
			if !utf8.ValidString(name) {
				// Invalid bytes would be replaced in the JSON event,
				// and two such names could become one VM.
				log.Warn("qmp_name_invalid", "path", p)
				continue
			}
			if names[name] {
				continue
			}
			names[name] = true
			found[p] = Channel{Name: name, Path: p}
		}
	}
	return found
}

// qmpVMName names the VM of a globbed QMP socket: the file name without
// its extension, or for a Proxmox vmid the name its config gives.
func qmpVMName(confDir, path string) string {
	base := filepath.Base(path)
	base = strings.TrimSuffix(base, filepath.Ext(base))
	if base == "" || strings.Trim(base, "0123456789") != "" {
		return base
	}
	if b, err := readLimited(filepath.Join(confDir, base+".conf"), maxProxmoxConf); err == nil {
		if name, _ := parseProxmoxConf(b); name != "" {
			return name
		}
	}
	return base
}

// watchQMP follows one VM's QMP socket until ctx ends, connecting again
// with backoff whenever the connection ends.
func (r *Relay) watchQMP(ctx context.Context, vm Channel) {
	var last vmLifecycle
	var failing logOnce
	backoff := r.cfg.BackoffMin
	for {
		dctx, cancel := context.WithTimeout(ctx, qmpTimeout)
		q, err := qmp.Dial(dctx, vm.Path)
		cancel()
		if err == nil {
			failing = logOnce{}
			backoff = r.cfg.BackoffMin
			r.log.Debug("qmp_connected", "vm", vm.Name, "path", vm.Path)
			r.followQMP(ctx, q, vm, &last)
			q.Close()
		} else if ctx.Err() == nil {
			failing.log(r.log, "qmp_connect_failed", "vm", vm.Name, "path", vm.Path, "err", err)
		}
		if pause.For(ctx, backoff) != nil {
			return
		}
		backoff = min(backoff*2, r.cfg.BackoffMax)
	}
}

// followQMP publishes the VM's state as QMP reports it, from the state at
// connect time on, until the connection or ctx ends.
func (r *Relay) followQMP(ctx context.Context, q *qmp.Conn, vm Channel, last *vmLifecycle) {
	set := func(state protocol.VMState, reason string, ts time.Time) {
		if ts.IsZero() {
			ts = time.Now()
		}
		if last.next(state, reason) {
			r.publishLifecycle(vm, state, reason, "qmp", ts)
		}
	}
	query := func() bool {
		qctx, cancel := context.WithTimeout(ctx, qmpTimeout)
		defer cancel()
		status, err := q.Status(qctx)
		if err != nil {
			if ctx.Err() == nil {
				r.log.Warn("qmp_query_failed", "vm", vm.Name, "err", err)
			}
			return false
		}
		set(stateOfRunState(status), status, time.Time{})
		return true
	}
	if !query() {
		return
	}
	poll := time.NewTicker(migratePoll)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
			if last.state == protocol.VMMigrating && !query() {
				return
			}
		case ev, ok := <-q.Events():
			if !ok {
				if err := q.Err(); errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
					set(protocol.VMCrashed, reasonQEMUExited, time.Time{})
				} else if ctx.Err() == nil {
					r.log.Warn("qmp_connection_lost", "vm", vm.Name, "err", err)
				}
				return
			}
			state, reason, ask := stateOfEvent(ev)
			switch {
			case ask:
				if !query() {
					return
				}
			case state == protocol.VMMigrated && last.reason == "inmigrate":
				// The destination's side completed: it runs next.
				if !query() {
					return
				}
			case state != "":
				set(state, reason, ev.Time)
			}
		}
	}
}

// stateOfEvent maps a QMP event to the state it announces, or asks for a
// query-status when the event alone does not say (STOP carries no reason).
func stateOfEvent(ev qmp.Event) (state protocol.VMState, reason string, ask bool) {
	var d struct {
		Reason string `json:"reason"`
		Action string `json:"action"`
		Status string `json:"status"`
	}
	if len(ev.Data) > 0 {
		_ = json.Unmarshal(ev.Data, &d) // a field it lacks stays empty
	}
	switch ev.Name {
	case "MIGRATION":
		// Sent when a manager turned migration events on. "completed" is
		// said before the manager may quit the source, which would leave
		// no time to ask for postmigrate.
		if d.Status == "completed" {
			return protocol.VMMigrated, reasonMigrationCompleted, false
		}
		return "", "", true
	case "STOP":
		return "", "", true
	case "RESUME":
		return protocol.VMRunning, "resumed", false
	case "WAKEUP":
		return protocol.VMRunning, "wakeup", false
	case "SUSPEND":
		return protocol.VMPaused, "suspended", false
	case "SHUTDOWN":
		if d.Reason == "guest-panic" {
			return protocol.VMPanicked, d.Reason, false
		}
		return protocol.VMShutdown, d.Reason, false
	case "GUEST_PANICKED":
		return protocol.VMPanicked, "guest-panicked: action " + d.Action, false
	case "GUEST_CRASHLOADED":
		return protocol.VMPanicked, "guest-crashloaded: action " + d.Action, false
	}
	return "", "", false
}

// stateOfRunState maps QEMU's run state (query-status) to a VM state.
func stateOfRunState(s string) protocol.VMState {
	switch s {
	case "running":
		return protocol.VMRunning
	case "inmigrate", "finish-migrate":
		return protocol.VMMigrating
	case "postmigrate":
		return protocol.VMMigrated
	case "guest-panicked":
		return protocol.VMPanicked
	case "shutdown":
		return protocol.VMShutdown
	case "internal-error":
		return protocol.VMCrashed
	}
	// paused, prelaunch, io-error, watchdog, suspended, debug, save-vm,
	// restore-vm, colo and whatever later QEMUs add: not running, not gone.
	return protocol.VMPaused
}
