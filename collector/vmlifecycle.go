package collector

// The host's view of a VM's run state, from the relay's vm_lifecycle
// events (QMP or libvirt), and the alerts it raises.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
)

// Codes raised from the host's view of a VM.
const (
	CodeGuestPanicked = "vm.guest_panicked"
	CodeVMStopped     = "vm.stopped"
)

// stoppedGrace is how long a VM may be paused, shut down or crashed before
// vm.stopped fires: a snapshot or a migration pauses it for moments.
const stoppedGrace = 10 * time.Second

// Lifecycle is the VM's run state as its host last reported it.
type Lifecycle struct {
	State  protocol.VMState `json:"state"`
	Reason string           `json:"reason,omitempty"`
	// Source is "qmp" or "libvirt".
	Source string `json:"source,omitempty"`
	// Since is the host's time of the change.
	Since time.Time `json:"since"`
}

// isLifecycle reports whether a channel subject's message is a
// vm_lifecycle event rather than a channel event.
func isLifecycle(data []byte) bool {
	if !bytes.Contains(data, []byte(protocol.KindVMLifecycle)) {
		return false
	}
	var k struct {
		Kind string `json:"kind"`
	}
	return json.Unmarshal(data, &k) == nil && k.Kind == protocol.KindVMLifecycle
}

func decodeLifecycle(data []byte) (update, error) {
	var ev protocol.LifecycleEvent
	if err := json.Unmarshal(data, &ev); err != nil {
		return update{}, fmt.Errorf("lifecycle event: %w", err)
	}
	if err := checkIdentity(ev.V, ev.Host, ev.VM); err != nil {
		return update{}, fmt.Errorf("lifecycle event: %w", err)
	}
	if !ev.State.Valid() {
		return update{}, fmt.Errorf("lifecycle event: unknown state %q", ev.State)
	}
	if ev.TS.IsZero() {
		return update{}, fmt.Errorf("lifecycle event: no ts")
	}
	return update{host: ev.Host, vm: ev.VM, apply: func(v *VM) outcome { return applyLifecycle(v, &ev) }}, nil
}

// applyLifecycle records a lifecycle event unless a later one is there.
func applyLifecycle(v *VM, ev *protocol.LifecycleEvent) outcome {
	if l := v.Lifecycle; l != nil && (ev.TS.Before(l.Since) || ev.TS.Equal(l.Since) && ev.State == l.State) {
		return stale
	}
	v.Lifecycle = &Lifecycle{State: ev.State, Reason: ev.Reason, Source: ev.Source, Since: ev.TS}
	if ev.UUID != "" {
		v.UUID = ev.UUID
	}
	return applied
}

// lifecycleFinding says what the host's view of v raises now, if anything,
// and whether it knows the VM is not running: then the VM's silence, its
// stale checks and its closed channel are explained and raise nothing.
func lifecycleFinding(v *VM, now time.Time) (f *protocol.Finding, down bool) {
	l := v.Lifecycle
	if l == nil || l.State == protocol.VMRunning {
		return nil, false
	}
	since := l.Since.UTC().Format(time.RFC3339)
	switch l.State {
	case protocol.VMPanicked:
		return &protocol.Finding{Code: CodeGuestPanicked, Severity: protocol.SeverityCrit,
			Message: "the guest kernel panicked at " + since + " (" + l.Source + ": " + l.Reason + ")"}, true
	case protocol.VMPaused, protocol.VMShutdown, protocol.VMCrashed:
		if now.Sub(l.Since) < stoppedGrace {
			return nil, true
		}
		return &protocol.Finding{Code: CodeVMStopped, Severity: protocol.SeverityWarn,
			Message: "the VM is " + string(l.State) + " since " + since + " (" + l.Source + ": " + l.Reason + ")"}, true
	}
	// Migrating, or migrated away: the VM's record on its new host speaks
	// for it.
	return nil, true
}

// lifecycleObservations are what a lifecycle change raises or clears at
// once, rather than at the next sweep: a panic fires now, and a VM that
// runs again clears both codes.
func (c *Collector) lifecycleObservations(v *VM) []*observation {
	key := func(code string) AlertKey { return AlertKey{Host: v.Host, VM: v.Name, Code: code} }
	if v.Lifecycle.State == protocol.VMRunning {
		return []*observation{{key: key(CodeGuestPanicked)}, {key: key(CodeVMStopped)}}
	}
	if f, _ := lifecycleFinding(v, v.Lifecycle.Since); f != nil {
		return []*observation{c.findingObservation(v, key(f.Code), f, nil)}
	}
	return nil
}

// lifecycleTimeline is the timeline entry of a lifecycle change.
func lifecycleTimeline(vmID string, old, cur *Lifecycle) timelineItem {
	ev := TimelineEvent{TS: cur.Since, Kind: "lifecycle", To: string(cur.State), Text: "VM " + string(cur.State)}
	if cur.Reason != "" {
		ev.Text += ": " + cur.Reason
	}
	if old != nil {
		ev.From = string(old.State)
	}
	return timelineItem{ev, vmID + "/lifecycle/" + strconv.FormatInt(cur.Since.UnixNano(), 10) + "/" + string(cur.State)}
}
