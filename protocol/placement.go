package protocol

import "time"

// HintKind names what a placement hint says about a host.
type HintKind string

// The hint kinds (docs/scheduler.md).
const (
	// HintOverloaded: CPU or memory above the host's high threshold for k
	// of the last n samples.
	HintOverloaded HintKind = "overloaded"
	// HintUnderloaded: below the low threshold for k of n; a consolidation
	// candidate.
	HintUnderloaded HintKind = "underloaded"
	// HintContention: several guests on the host report CPU steal.
	HintContention HintKind = "contention"
	// HintEvacuate: an operator marked the host for maintenance
	// (guestdiag host drain).
	HintEvacuate HintKind = "evacuate"
)

// Hint states: a hint is raised when its condition starts to hold and
// cleared when it stops, each once, like an alert.
const (
	HintRaised  = "raised"
	HintCleared = "cleared"
)

// Hint is what the collector publishes on HintSubject(host).
type Hint struct {
	V     int       `json:"v"`
	Host  string    `json:"host"`
	Kind  HintKind  `json:"kind"`
	State string    `json:"state"`
	TS    time.Time `json:"ts"`
	// Since is when the condition started to hold.
	Since time.Time `json:"since"`
	// Resource is what crossed the threshold for overloaded and
	// underloaded: "cpu" or "memory".
	Resource string       `json:"resource,omitempty"`
	Summary  string       `json:"summary"`
	Evidence HintEvidence `json:"evidence"`
}

// HintEvidence is what a hint was decided on.
type HintEvidence struct {
	// Samples is the window of host samples, oldest first.
	Samples []HostSample `json:"samples,omitempty"`
	// Hits of Window samples crossed ThresholdPct (k of n).
	Hits         int     `json:"hits,omitempty"`
	Window       int     `json:"window,omitempty"`
	ThresholdPct float64 `json:"threshold_pct,omitempty"`
	// VMs are the guests whose own reports back the hint (res.steal_high
	// for contention), with the finding code each reported.
	VMs []HintVM `json:"vms,omitempty"`
	// By and Reason are the operator's, for evacuate.
	By     string `json:"by,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// HostSample is one host usage sample as a hint quotes it.
type HostSample struct {
	TS     time.Time `json:"ts"`
	CPUPct float64   `json:"cpu_pct"`
	MemPct float64   `json:"mem_pct"`
}

// HintVM is one guest's part in a hint.
type HintVM struct {
	VM   string `json:"vm"`
	Code string `json:"code"`
}

// Plan message kinds: a plan on PlanSubject, a move outcome on its
// OutcomeSubject.
const (
	PlanKindPlan = "plan"
	PlanKindMove = "move"
)

// Scheduler modes.
const (
	ModeAdvisory = "advisory"
	ModeExecute  = "execute"
)

// Plan is one planning cycle's result, published on PlanSubject with kind
// "plan".
type Plan struct {
	V    int       `json:"v"`
	Kind string    `json:"kind"`
	ID   string    `json:"id"`
	TS   time.Time `json:"ts"`
	// Scheduler names the instance that made it (it held the lease).
	Scheduler string     `json:"scheduler"`
	Mode      string     `json:"mode"`
	Moves     []PlanMove `json:"moves"`
	// Unresolved lists hosts the plan could not bring within policy.
	Unresolved []PlanProblem `json:"unresolved,omitempty"`
}

// PlanMove is one migration of a plan: one VM, or a whole chunk.
type PlanMove struct {
	// ID is the plan's id, "/" and the move's number from 1.
	ID     string   `json:"id"`
	VMs    []string `json:"vms"`
	Chunk  string   `json:"chunk,omitempty"`
	From   string   `json:"from"`
	To     string   `json:"to"`
	Reason string   `json:"reason"`
	// Predicted use of source and target after the move, in percent of
	// each host's capacity.
	FromCPUPct float64 `json:"from_cpu_pct"`
	ToCPUPct   float64 `json:"to_cpu_pct"`
	FromMemPct float64 `json:"from_mem_pct"`
	ToMemPct   float64 `json:"to_mem_pct"`
}

// PlanProblem says why a host stays out of policy.
type PlanProblem struct {
	Host   string `json:"host"`
	Reason string `json:"reason"`
}

// Move outcome states.
const (
	MoveStarted = "started"
	MoveDone    = "done"
	MoveFailed  = "failed"
)

// MoveOutcome is published on OutcomeSubject(Plan, Move) with kind "move"
// when an executor starts a move and when it ends.
type MoveOutcome struct {
	V         int       `json:"v"`
	Kind      string    `json:"kind"`
	Plan      string    `json:"plan"`
	Move      string    `json:"move"`
	VMs       []string  `json:"vms"`
	From      string    `json:"from"`
	To        string    `json:"to"`
	State     string    `json:"state"`
	TS        time.Time `json:"ts"`
	Scheduler string    `json:"scheduler"`
	Executor  string    `json:"executor"`
	// DurationMS and DowntimeMS are set when the move is done, as the
	// hypervisor measured them.
	DurationMS int64  `json:"duration_ms,omitempty"`
	DowntimeMS int64  `json:"downtime_ms,omitempty"`
	Error      string `json:"error,omitempty"`
}
