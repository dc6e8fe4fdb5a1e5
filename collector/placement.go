package collector

import (
	"time"

	"github.com/guestdiag/guestdiag/protocol"
)

// Placement is the fleet's placement as the dashboard's placement page and
// GET /api/placement show it: hosts with their newest usage, drain marks
// and raised hints, and the newest plans with their moves' outcomes.
type Placement struct {
	Hosts []HostPlacement `json:"hosts"`
	// Plans are the newest first.
	Plans []PlanRecord `json:"plans"`
}

// HostPlacement is one host.
type HostPlacement struct {
	Host string `json:"host"`
	// Usage is the newest guestdiag.host sample; nil before the first.
	Usage *protocol.HostUsage `json:"usage,omitempty"`
	// Drain is set while an operator has the host marked for maintenance.
	Drain *Drain `json:"drain,omitempty"`
	// Hints are the hints raised and not yet cleared.
	Hints []protocol.Hint `json:"hints"`
	// VMs counts the VMs whose records are on this host.
	VMs int `json:"vms"`
}

// Drain is an operator's maintenance mark on a host.
type Drain struct {
	By     string    `json:"by"`
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since"`
}

// PlanRecord is a plan and the newest outcome of each of its moves, by
// move id.
type PlanRecord struct {
	Plan     protocol.Plan                   `json:"plan"`
	Outcomes map[string]protocol.MoveOutcome `json:"outcomes"`
}
