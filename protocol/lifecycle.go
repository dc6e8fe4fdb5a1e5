package protocol

import "time"

// KindVMLifecycle marks a LifecycleEvent on a channel subject; channel
// events carry no kind.
const KindVMLifecycle = "vm_lifecycle"

// VMState is a VM's run state as its host sees it.
type VMState string

// VM states. Migrating covers both ends of a live migration while it runs
// (the destination waiting for the state, the source sending its last
// pages); migrated is the source once the VM runs elsewhere.
const (
	VMRunning   VMState = "running"
	VMPaused    VMState = "paused"
	VMShutdown  VMState = "shutdown"
	VMCrashed   VMState = "crashed"
	VMPanicked  VMState = "panicked"
	VMMigrating VMState = "migrating"
	VMMigrated  VMState = "migrated"
)

// Valid reports whether s is one of the VM states.
func (s VMState) Valid() bool {
	switch s {
	case VMRunning, VMPaused, VMShutdown, VMCrashed, VMPanicked, VMMigrating, VMMigrated:
		return true
	}
	return false
}

// LifecycleEvent is published on a VM's channel subject when the host sees
// its run state change, from QEMU's QMP or libvirt's events, with no agent
// involved. Reason is the hypervisor's word for it (QEMU's run state or
// event reason, libvirt's event detail).
type LifecycleEvent struct {
	V      int     `json:"v"`
	Kind   string  `json:"kind"`
	Host   string  `json:"host"`
	VM     string  `json:"vm"`
	UUID   string  `json:"uuid,omitempty"`
	State  VMState `json:"state"`
	Reason string  `json:"reason,omitempty"`
	// Source is "qmp" or "libvirt".
	Source string    `json:"source"`
	TS     time.Time `json:"ts"`
}
