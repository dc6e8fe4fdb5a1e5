package hostrelay

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/guestdiag/guestdiag/protocol"
)

// resumed takes the agent's resume: from here on this connection carries
// everything the agent's spool holds, so gaps on it are real.
func (s *session) resumed(ctx context.Context, env protocol.Envelope) {
	var r protocol.Resume
	if err := json.Unmarshal(env.Data, &r); err != nil {
		// Decode validated it strictly; this cannot fail on what it let by.
		s.vm.drop(DropInvalid)
		return
	}
	s.book.resumedOn(s.connNo, r)
	s.vm.logGuest(ctx, s.r.log, slog.LevelInfo, "guest_resumed",
		slog.String("vm", s.ch.Name), slog.String("run", env.Run), slog.Uint64("connection", env.Seq),
		slog.Int("runs_held", len(r.Held)), slog.Uint64("dropped", r.Dropped), slog.Uint64("damaged", r.Damaged))
}

// reportLoss publishes the messages_lost event of an accepted gap, best
// effort like the other channel events.
func (s *session) reportLoss(run string, adm admission) {
	if !adm.lost {
		return
	}
	full, damaged := s.book.agentDropped()
	reason := "the agent's resume said its spool no longer holds them"
	if adm.held.Oldest != 0 {
		reason = fmt.Sprintf("the agent's resume said its spool holds this run from seq %d", adm.held.Oldest)
	}
	if !adm.resumed {
		reason = "they did not come back after a reconnect twice (an agent without resume)"
	}
	ev := protocol.LossEvent{
		V: protocol.Version, Host: s.r.cfg.Host, VM: s.ch.Name, UUID: s.ch.UUID, Channel: s.ch.Path,
		State: protocol.ChannelMessagesLost, TS: time.Now().UTC(), Reason: reason,
		Run: run, From: adm.from, To: adm.to, AgentDropped: full, AgentDamaged: damaged, Suppressed: adm.hidden,
	}
	data, err := json.Marshal(ev)
	if err == nil {
		s.r.publishEvent(&nats.Msg{Subject: protocol.ChannelSubject(s.r.cfg.Host, s.ch.Name), Data: data}, s.ch.Name, ev.State)
		return
	}
	s.r.log.Warn("channel_event_publish_failed", "vm", s.ch.Name, "state", ev.State, "err", err)
}
