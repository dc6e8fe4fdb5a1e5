package planner

import "time"

// Band bounds one quantity of a host: above High it is overloaded, below
// Low underloaded. A zero bound is unset.
type Band struct{ Low, High float64 }

// Policy says what a host wants. CPU is in the host's CPU units (cores of
// load), Mem in MB of VM memory, VMs a count.
type Policy struct {
	CPU, Mem, VMs Band
	// Empty means the host wants no VMs at all (maintenance, shutdown).
	Empty bool
}

// SharePolicy is the usual policy: CPU thresholds as shares of the host's
// capacity (XenGuard's high 0.7, low 0.1, say).
func SharePolicy(capacity, low, high float64) Policy {
	return Policy{CPU: Band{Low: low * capacity, High: high * capacity}}
}

// Host is a physical host.
type Host struct {
	Name string
	CPU  float64 // capacity
	Mem  float64 // MB for VMs
	// Other is CPU load not owed to any VM (the host's own processes).
	Other    float64
	Policy   Policy
	Draining bool // an operator asked for it to be emptied
	Down     bool // unreachable: neither source nor target
}

// VM is a guest and where it runs.
type VM struct {
	Name string
	Host string
	CPU  float64 // demand, in the host's CPU units
	Mem  float64 // MB
	// Chunk names the group of VMs that must share a host (a private
	// network); empty for a VM on its own.
	Chunk string
	// Moved is when the VM last migrated; zero if never.
	Moved time.Time
}

// Group is a declared affinity or anti-affinity rule.
type Group struct {
	Name string
	VMs  []string
	Anti bool // the VMs must not share a host
	// Hard groups are rules; soft ones only steer the score.
	Hard bool
}

// Inventory is what the planner plans over.
type Inventory struct {
	Hosts  []Host
	VMs    []VM
	Groups []Group
}

// Options tune a planning cycle.
type Options struct {
	Now time.Time
	// Cooldown keeps a VM that moved recently where it is, except when
	// its host must be emptied.
	Cooldown time.Duration
	// MaxMoves and MaxPerHost bound the migrations of one cycle, in all
	// and per host (as source or target); zero means no bound.
	MaxMoves, MaxPerHost int
	// MinGain is the least a move must lower the source's CPU share below
	// the target's share after the move, so a hotspot is not merely moved.
	MinGain float64
	// Step raises the targets' low CPU threshold per pass when no target
	// under it fits, up to their high threshold (XenGuard: 0.1).
	Step float64
	// Consolidate empties underloaded hosts whose VMs all fit on hosts
	// that stay in use.
	Consolidate bool
}

// DefaultOptions are the scheduler's defaults.
func DefaultOptions(now time.Time) Options {
	return Options{Now: now, Cooldown: 30 * time.Minute, MaxMoves: 10, MaxPerHost: 2, MinGain: 0.05, Step: 0.1}
}

// Move is one migration of the plan: one VM, or a whole chunk.
type Move struct {
	VMs    []string
	Chunk  string
	From   string
	To     string
	Reason string
	// Predicted CPU and memory of source and target after the move.
	FromCPU, ToCPU, FromMem, ToMem float64
}

// Plan is the result of a cycle.
type Plan struct {
	Moves []Move
	// Unresolved lists hosts the plan could not bring within policy.
	Unresolved []Problem
}

// Problem says why a host stays out of policy.
type Problem struct {
	Host   string
	Reason string
}
