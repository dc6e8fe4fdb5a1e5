package protocol

import (
	"encoding/json"
	"time"
)

// Report is what a relay publishes for each guest line: the VM's identity as
// the host knows it, and the guest envelope exactly as it was received and
// validated. Anything the guest says about itself stays inside Guest.
type Report struct {
	V        int             `json:"v"`
	Host     string          `json:"host"`
	VM       string          `json:"vm"`
	UUID     string          `json:"uuid,omitempty"`
	Channel  string          `json:"channel"`
	Received time.Time       `json:"received"`
	Guest    json.RawMessage `json:"guest"`
}

// ChannelState says whether a relay is connected to a VM's channel.
type ChannelState string

// Channel states.
const (
	ChannelConnected    ChannelState = "connected"
	ChannelDisconnected ChannelState = "disconnected"
	// ChannelViolations says what a connected guest sent that the relay
	// refused since the last such event; Counts holds how many of each
	// reason. The channel's state is unchanged by it.
	ChannelViolations ChannelState = "violations"
	// ChannelRefused says the relay will not watch a channel it found, for
	// Reason (another channel has the VM's name or UUID, or the name is not
	// valid UTF-8).
	ChannelRefused ChannelState = "refused"
)

// ChannelEvent is published when a relay connects to or loses a VM's
// channel, refuses one, or refuses what its guest sent.
type ChannelEvent struct {
	V       int          `json:"v"`
	Host    string       `json:"host"`
	VM      string       `json:"vm"`
	UUID    string       `json:"uuid,omitempty"`
	Channel string       `json:"channel"`
	State   ChannelState `json:"state"`
	TS      time.Time    `json:"ts"`
	Reason  string       `json:"reason,omitempty"`
	// Counts is set on violations: refused lines or messages by reason.
	Counts map[string]uint64 `json:"counts,omitempty"`
}
