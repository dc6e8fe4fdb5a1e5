package protocol

import "fmt"

// MaxResumeRuns bounds the runs one resume lists.
const MaxResumeRuns = 64

// Resume is the data of a resume envelope. The agent's sender writes one,
// unspooled, at the start of every connection it makes, and then writes
// every message its spool holds, oldest first. It is the agent's word on
// what it still has: a seq of a listed run below Oldest, or of an unlisted
// run, is no longer in the spool (acknowledged, or dropped as Dropped and
// Damaged count), so a relay that sees a gap after a resume on the same
// connection knows the missing messages cannot come back. The run and seq
// of a resume are the writing agent's run and the number of the connection
// within it, from 1; they are not part of the run's message seqs.
type Resume struct {
	// Held lists the runs with messages waiting for an ack, at most
	// MaxResumeRuns of them.
	Held []HeldRun `json:"held"`
	// Dropped and Damaged count the messages the spool discarded
	// unacknowledged since the agent started: because it was full, and
	// because a record could not be read back.
	Dropped uint64 `json:"dropped,omitempty"`
	Damaged uint64 `json:"damaged,omitempty"`
}

// HeldRun is the stretch of one run's seqs a spool holds.
type HeldRun struct {
	Run    string `json:"run"`
	Oldest uint64 `json:"oldest"`
	Newest uint64 `json:"newest"`
}

func (r *Resume) validate() error {
	if len(r.Held) > MaxResumeRuns {
		return fieldErr("data.held", "%d runs, limit %d", len(r.Held), MaxResumeRuns)
	}
	for i, h := range r.Held {
		if err := checkToken(fmt.Sprintf("data.held[%d].run", i), h.Run, MaxRunLen, isRunByte); err != nil {
			return err
		}
		if h.Oldest == 0 || h.Newest < h.Oldest {
			return fieldErr(fmt.Sprintf("data.held[%d]", i), "oldest %d and newest %d are not a stretch of seqs", h.Oldest, h.Newest)
		}
	}
	return nil
}
