package collector

import (
	"encoding/json"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
)

// AlertState is where an alert is in its life.
type AlertState string

// Alert states.
const (
	AlertFiring   AlertState = "firing"
	AlertResolved AlertState = "resolved"
)

// AlertKey names one condition on one VM: the same key firing twice is the
// same alert. Source is the finding's source (a mountpoint, a unit, a
// process, a Windows provider and event id) where it has one, so two full
// filesystems are two alerts.
type AlertKey struct {
	Host   string `json:"host"`
	VM     string `json:"vm"`
	Check  string `json:"check"`
	Code   string `json:"code"`
	Source string `json:"source,omitempty"`
}

// KBMatch is one knowledge-base entry that matched an alert's finding,
// copied into the alert so that it reads on its own.
type KBMatch struct {
	ID         string   `json:"id"`
	Title      string   `json:"title"`
	Severity   string   `json:"severity"`
	Cause      string   `json:"cause"`
	Resolution []string `json:"resolution"`
	References []string `json:"references,omitempty"`
}

// Evidence is what made an alert fire: the finding as the guest sent it,
// the check's data at that time (bounded in size) and the source lines of
// a log finding.
type Evidence struct {
	Finding protocol.Finding `json:"finding"`
	Data    json.RawMessage  `json:"data,omitempty"`
	Lines   []string         `json:"lines,omitempty"`
}

// Alert is one condition on one VM, firing or resolved: the JSON value of
// its record in the alert bucket, the payload published on
// guestdiag.alert.<severity>.<host>.<vm> and what the API returns.
type Alert struct {
	Fingerprint string     `json:"fingerprint"`
	Key         AlertKey   `json:"key"`
	State       AlertState `json:"state"`
	Severity    string     `json:"severity"`
	Summary     string     `json:"summary"`
	// StartsAt is when the condition was first seen firing; EndsAt when it
	// resolved (zero while firing).
	StartsAt time.Time `json:"starts_at"`
	EndsAt   time.Time `json:"ends_at,omitzero"`
	// Updated is the last change of state, severity or evidence; Notified
	// the last time subscribers and Alertmanager were told.
	Updated  time.Time `json:"updated"`
	Notified time.Time `json:"notified,omitzero"`
	// Flapping is set when the condition toggled Transitions times within
	// the flap window: the alert then stays firing until it has been clear
	// for a whole window.
	Flapping    bool              `json:"flapping,omitempty"`
	Transitions int               `json:"transitions,omitempty"`
	Labels      map[string]string `json:"labels"`
	KB          []KBMatch         `json:"kb,omitempty"`
	Evidence    Evidence          `json:"evidence"`

	// Seq counts the notifications of this alert; with the fingerprint it
	// is the Nats-Msg-Id of each publication, so a republished one is
	// recognised.
	Seq uint64 `json:"seq"`
	// Toggles are the times the condition appeared or cleared within the
	// flap window; ClearSince is when a flapping alert's condition last
	// cleared (zero while it holds).
	Toggles    []time.Time `json:"toggles,omitempty"`
	ClearSince time.Time   `json:"clear_since,omitzero"`
	// Origin is the guest message of the last observation applied, so that
	// an older result handled late by another collector changes nothing.
	Origin Origin `json:"origin,omitzero"`
	// Pending is set by the write that decided a notification and cleared
	// once it was published, so that a collector dying in between leaves
	// it for the sweep of any collector to publish.
	Pending bool `json:"pending,omitempty"`
}

// AlertFilter selects alerts for the API, the dashboard and the CLI. Zero
// fields select everything.
type AlertFilter struct {
	State    AlertState
	Severity string
	Host     string
	VM       string
	Code     string
}

// TimelineEvent is one change in a VM's life: a check's status, an alert
// firing or resolving, the channel connecting or dropping, a new agent run,
// software installed or removed.
type TimelineEvent struct {
	TS    time.Time `json:"ts"`
	Kind  string    `json:"kind"` // status, alert, channel, hello, software, firewall
	Check string    `json:"check,omitempty"`
	From  string    `json:"from,omitempty"`
	To    string    `json:"to,omitempty"`
	Text  string    `json:"text"`
}

// Change tells a subscriber (the dashboard's live updates) that something
// about one VM changed: its record, or one of its alerts.
type Change struct {
	Host string `json:"host"`
	VM   string `json:"vm"`
	What string `json:"what"` // vm, alert, or host (its hints or drain mark)
}
