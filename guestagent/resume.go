package guestagent

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
)

// heldRuns lists, for each run with records waiting for an ack, the oldest
// and newest seq waiting, runs in the order of their oldest record, at most
// protocol.MaxResumeRuns of them.
func (s *spool) heldRuns() []protocol.HeldRun {
	s.mu.Lock()
	defer s.mu.Unlock()
	held := []protocol.HeldRun{}
	at := map[string]int{}
	for _, r := range s.recs {
		i, ok := at[r.run]
		if !ok {
			if len(held) == protocol.MaxResumeRuns {
				continue
			}
			at[r.run] = len(held)
			held = append(held, protocol.HeldRun{Run: r.run, Oldest: r.seq, Newest: r.seq})
			continue
		}
		held[i].Oldest = min(held[i].Oldest, r.seq)
		held[i].Newest = max(held[i].Newest, r.seq)
	}
	return held
}

// resumeLine returns the resume envelope that starts a connection, made
// after the connection's cursor went back to the oldest record: everything
// it lists is written after it, and anything of those runs it does not
// list is gone from the spool. It is not spooled: it is true only of the
// moment it is made, and a relay that has it knows a gap it then sees on
// the same connection is real.
func (s *sender) resumeLine() ([]byte, error) {
	s.mu.Lock()
	s.conns++
	n := s.conns
	s.mu.Unlock()
	d := s.spool.dropCounts()
	data, err := json.Marshal(protocol.Resume{Held: s.spool.heldRuns(), Dropped: d.full + d.expired, Damaged: d.damaged})
	if err != nil {
		return nil, fmt.Errorf("encode resume: %w", err)
	}
	e := protocol.Envelope{V: protocol.Version, Kind: protocol.KindResume, Run: s.runID, Seq: n, TS: time.Now().UTC(), Data: data}
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("encode resume: %w", err)
	}
	return protocol.Marshal(e)
}
