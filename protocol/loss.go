package protocol

import "time"

// ChannelMessagesLost is the state of a LossEvent.
const ChannelMessagesLost ChannelState = "messages_lost"

// LossEvent is published on a VM's channel subject when the relay gives up
// on seqs of a run: the agent said, in a resume, that its spool no longer
// holds them (its bound made it drop them, or they were unreadable), or,
// for an agent too old to resume, they failed to come back twice. It has
// the fields of a ChannelEvent and says which seqs are gone.
type LossEvent struct {
	V       int          `json:"v"`
	Host    string       `json:"host"`
	VM      string       `json:"vm"`
	UUID    string       `json:"uuid,omitempty"`
	Channel string       `json:"channel"`
	State   ChannelState `json:"state"`
	TS      time.Time    `json:"ts"`
	Reason  string       `json:"reason"`
	// Run and From..To (inclusive) are the seqs given up.
	Run  string `json:"run"`
	From uint64 `json:"from"`
	To   uint64 `json:"to"`
	// AgentDropped and AgentDamaged are what the agent's latest resume
	// said its spool dropped since it started, full and unreadable.
	AgentDropped uint64 `json:"agent_dropped,omitempty"`
	AgentDamaged uint64 `json:"agent_damaged,omitempty"`
	// Suppressed counts the loss events of the channel not published
	// since the last one that was, to bound what a guest can cause.
	Suppressed uint64 `json:"suppressed,omitempty"`
}
