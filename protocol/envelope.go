package protocol

import (
	"encoding/json"
	"time"
)

// Version is the only wire version this package speaks.
const Version = 1

// MaxLineLen is the longest line, newline excluded, that a reader accepts.
// Longer lines are dropped and counted; nothing else is lost.
const MaxLineLen = 256 << 10

// AgentCheck is the check name of the events the agent reports about
// itself (its spool dropping messages, say) rather than about the guest.
const AgentCheck = "agent"

// Kind says what an envelope carries.
type Kind string

// The kinds of envelope. Guests write hello, result, event and heartbeat,
// which are spooled, and resume, which is not; the host writes only ack.
const (
	KindHello     Kind = "hello"
	KindResult    Kind = "result"
	KindEvent     Kind = "event"
	KindHeartbeat Kind = "heartbeat"
	KindResume    Kind = "resume"
	KindAck       Kind = "ack"
)

// Status is the outcome of a check.
type Status string

// Check outcomes. Unknown means the check could not gather its data; it is
// never a synonym for ok.
const (
	StatusOK      Status = "ok"
	StatusWarn    Status = "warn"
	StatusCrit    Status = "crit"
	StatusUnknown Status = "unknown"
)

// Severity ranks a finding.
type Severity string

// Finding severities.
const (
	SeverityInfo Severity = "info"
	SeverityWarn Severity = "warn"
	SeverityCrit Severity = "crit"
)

// Envelope is one message from guest to host: one JSON object on one line.
type Envelope struct {
	V    int    `json:"v"`
	Kind Kind   `json:"kind"`
	Run  string `json:"run"`
	// Seq numbers the messages of one run from 1 without gaps.
	Seq uint64    `json:"seq"`
	TS  time.Time `json:"ts"`

	// Check, Status, Summary and Findings are set on result and event.
	Check    string    `json:"check,omitempty"`
	Status   Status    `json:"status,omitempty"`
	Summary  string    `json:"summary,omitempty"`
	Findings []Finding `json:"findings,omitempty"`

	// Data is check specific for result and event, a Hello for hello, a
	// Heartbeat for heartbeat and a Resume for resume.
	Data json.RawMessage `json:"data,omitempty"`
}

// Finding is one thing a check found, with a stable code such as
// "net.gateway_unreachable" and the fields that locate its source.
type Finding struct {
	Code     string     `json:"code"`
	Severity Severity   `json:"severity"`
	Message  string     `json:"message"`
	Source   string     `json:"source,omitempty"`
	Provider string     `json:"provider,omitempty"`
	EventID  uint32     `json:"event_id,omitempty"`
	Unit     string     `json:"unit,omitempty"`
	Count    uint64     `json:"count,omitempty"`
	First    *time.Time `json:"first,omitempty"`
	Last     *time.Time `json:"last,omitempty"`
}

// Hello is the data of a hello envelope: who the agent says it is. The host
// keeps it as the guest's claim, never as its identity.
type Hello struct {
	Hostname     string   `json:"hostname"`
	OS           string   `json:"os"`
	Platform     string   `json:"platform,omitempty"`
	Kernel       string   `json:"kernel,omitempty"`
	Arch         string   `json:"arch,omitempty"`
	AgentVersion string   `json:"agent_version"`
	Checks       []string `json:"checks"`
	BootTime     int64    `json:"boot_time,omitempty"`
	// HeartbeatS is the agent's heartbeat interval and Intervals each
	// check's interval, in seconds, so that the host can tell a silent
	// agent or a stuck check from one that is merely slow.
	HeartbeatS uint32            `json:"heartbeat_s,omitempty"`
	Intervals  map[string]uint32 `json:"intervals,omitempty"`
	// Transport names the transport the agent is connected over
	// ("virtio-serial", "vsock"); the hello written before the first
	// connection has none.
	Transport string `json:"transport,omitempty"`
}

// Heartbeat is the data of a heartbeat envelope.
type Heartbeat struct {
	UptimeSec uint64 `json:"uptime_s"`
	// Spooled counts messages waiting for an ack when the heartbeat was made.
	Spooled uint64 `json:"spooled"`
	// Dropped counts messages this run's spool discarded unacknowledged
	// because it reached its bound: data the host will never see.
	Dropped uint64 `json:"dropped,omitempty"`
}

// Ack is the only message the host sends to a guest. It is cumulative: it
// covers every seq of Run up to and including Seq.
type Ack struct {
	V    int    `json:"v"`
	Kind Kind   `json:"kind"`
	Run  string `json:"run"`
	Seq  uint64 `json:"seq"`
}

// NewAck returns the ack for seq of run.
func NewAck(run string, seq uint64) Ack {
	return Ack{V: Version, Kind: KindAck, Run: run, Seq: seq}
}
