package hostrelay

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/guestdiag/guestdiag/protocol"
)

// maxRuns bounds the runs remembered per channel. An agent has one run per
// process and its spool rarely holds more than two; a guest that invents
// runs only makes the relay forget its oldest, which then start afresh as
// after a relay restart.
const maxRuns = 64

// Budget of messages_lost events per channel: a guest that makes gaps on
// purpose must not flood the channel subject.
const (
	lossEventEvery = time.Second
	lossEventBurst = 10
)

// runBook remembers how far each run of a channel's agent was acknowledged,
// so that the relay never acknowledges past a seq it did not see: acks are
// cumulative, and an ack past a hole would make the agent delete the
// messages in it. A book lives as long as its channel is watched, across
// reconnects. A VM that goes and comes back, say after a live migration
// during which another host acknowledged more, starts a new book.
//
// A gap in a run's seqs is accepted only on the word of the agent: a
// resume read earlier on the same connection. After writing a resume the
// agent writes everything its spool holds, oldest first, so a seq that
// connection then skips is not in the spool: it was dropped, or its line
// was unreadable. Without a resume on the connection a gap may be nothing
// but bytes lost while the relay reconnected unnoticed by the agent, which
// still holds them; the connection is ended so that the agent connects
// again, resumes and resends. Only for an agent that has never sent a
// resume on this channel (one older than the resume) does the relay fall
// back to guessing: connections that start past the same gap for longer
// than legacyWait, which an agent that resumes cannot make.
type runBook struct {
	mu    sync.Mutex
	runs  map[string]*runState
	conn  uint64 // the latest connection's number
	clock uint64 // orders runs by last use
	// resumed is the number of the connection the latest resume came on,
	// and resume what it said. speaks is set at the first resume.
	resumed uint64
	resume  protocol.Resume
	speaks  bool
	// losses bounds the messages_lost events; lossesHidden counts those
	// it held back since the last one published.
	losses       *rate.Limiter
	lossesHidden uint64
	// legacyWait is how long a gap must have stood before the fallback
	// accepts it.
	legacyWait time.Duration
}

// DefaultLegacyGapWait is how long the same gap must stand at the start of
// connection after connection before the relay accepts it from an agent
// that has not sent a resume. It is above the agent's default ack timeout
// (30 s), after which an agent that does resume has connected again and
// resumed, however many reconnects it missed.
const DefaultLegacyGapWait = 40 * time.Second

func newRunBook(legacyWait time.Duration) *runBook {
	return &runBook{
		runs:       make(map[string]*runState),
		losses:     rate.NewLimiter(rate.Every(lossEventEvery), lossEventBurst),
		legacyWait: legacyWait,
	}
}

// runState is what a runBook holds for one run.
type runState struct {
	// acked is the highest seq acknowledged to the guest; for a run the
	// relay first saw mid-way, the seq before the first one it saw.
	acked uint64
	// conn is the connection that last admitted a message of the run, and
	// accepted the highest seq since acked that it admitted without a hole.
	conn, accepted uint64
	// gapAt is the first missing seq of the gap that ended the last
	// connection, or 0, and gapSince when that gap was first found. Only
	// the fallback for agents without resume uses them.
	gapAt    uint64
	gapSince time.Time
	// unsure is set while the relay does not know where the run starts:
	// it was first seen on a connection without a resume.
	unsure bool
	used   uint64
}

// verdict says what to do with a message after admit.
type verdict int

const (
	// admitted: publish it and acknowledge up to ackTo.
	admitted verdict = iota
	// gapAccepted: as admitted, after giving up on the seqs in the gap.
	gapAccepted
	// gapFound: publish it, acknowledge up to ackTo, and end the connection
	// so that the agent resends from its oldest unacknowledged message.
	gapFound
)

type admission struct {
	rs      *runState
	ackTo   uint64 // the highest seq of the run that may be acknowledged
	verdict verdict
	// from and to are the missing seqs of a gap.
	from, to uint64
	// resumed says a gapAccepted rests on the agent's resume, not on the
	// fallback; held is what the resume said of the run, if anything.
	resumed bool
	held    protocol.HeldRun
	// lost is the messages_lost event to publish for a gapAccepted, and
	// hidden how many such events were held back before it; lost is
	// false when this one is held back too.
	lost   bool
	hidden uint64
}

// newConn numbers a connection of the channel for admit.
func (b *runBook) newConn() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.conn++
	return b.conn
}

// resumedOn records the agent's resume, read on connection conn: from now
// on, gaps on that connection are real.
func (b *runBook) resumedOn(conn uint64, r protocol.Resume) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.resumed, b.resume, b.speaks = conn, r, true
}

// admit decides how far seq of run, read on connection conn, lets the relay
// acknowledge. A run the relay has not seen starts at its first message,
// or at the oldest seq the connection's resume says the agent holds; on a
// connection without a resume it is taken to start at seq 1 until a resume
// or the fallback says otherwise. A
// known run is acknowledged only up to the end of a contiguous stretch
// from its last ack; a seq past a hole is a gap, accepted or not as the
// book's comment says.
func (b *runBook) admit(conn uint64, run string, seq uint64) admission {
	return b.admitAt(time.Now(), conn, run, seq)
}

func (b *runBook) admitAt(now time.Time, conn uint64, run string, seq uint64) admission {
	b.mu.Lock()
	defer b.mu.Unlock()
	resumed := b.resumed == conn
	var held protocol.HeldRun
	if resumed {
		for _, h := range b.resume.Held {
			if h.Run == run {
				held = h
				break
			}
		}
	}
	rs, ok := b.runs[run]
	if !ok {
		// Without a resume the first seq seen may be the middle of what the
		// agent holds: after a relay restart, a live migration or a run
		// forgotten, with bytes lost in a reconnect the agent did not
		// notice. Only the agent can say where the run starts.
		rs = &runState{unsure: true}
		b.addRun(run, rs)
	}
	if rs.unsure && resumed {
		// What came before the start was acknowledged by someone, or
		// dropped: the relay cannot tell which, and reports no loss.
		rs.acked, rs.unsure = seq-1, false
		if held.Oldest != 0 && held.Oldest <= seq {
			rs.acked = held.Oldest - 1
		}
	}
	b.clock++
	rs.used = b.clock
	first := rs.conn != conn
	if first {
		rs.conn, rs.accepted = conn, rs.acked
	}
	switch {
	case seq <= rs.accepted || seq-rs.accepted == 1: // no overflow at MaxUint64
		rs.accepted = max(rs.accepted, seq)
		rs.unsure = false // seq 1 came, or the start was settled before
		if first {
			rs.gapAt = 0
		}
		return admission{rs: rs, ackTo: rs.accepted}
	case resumed:
		from := rs.accepted + 1
		rs.gapAt, rs.accepted = 0, seq
		return b.lost(admission{rs: rs, ackTo: seq, verdict: gapAccepted, from: from, to: seq - 1, resumed: true, held: held})
	case !b.speaks && first && rs.gapAt != 0 && rs.gapAt == rs.accepted+1 && now.Sub(rs.gapSince) >= b.legacyWait:
		from := rs.accepted + 1
		rs.gapAt, rs.accepted = 0, seq
		if rs.unsure {
			// The start of a run seen mid-way: nothing is known lost.
			rs.unsure = false
			return admission{rs: rs, ackTo: seq}
		}
		return b.lost(admission{rs: rs, ackTo: seq, verdict: gapAccepted, from: from, to: seq - 1})
	default:
		if rs.gapAt != rs.accepted+1 {
			rs.gapSince = now
		}
		rs.gapAt = rs.accepted + 1
		return admission{rs: rs, ackTo: rs.accepted, verdict: gapFound, from: rs.gapAt, to: seq - 1}
	}
}

// lost decides whether an accepted gap is reported as an event now. b.mu
// must be held.
func (b *runBook) lost(a admission) admission {
	if !b.losses.Allow() {
		b.lossesHidden++
		return a
	}
	a.lost, a.hidden = true, b.lossesHidden
	b.lossesHidden = 0
	return a
}

// agentDropped is what the latest resume said the spool dropped.
func (b *runBook) agentDropped() (full, damaged uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.resume.Dropped, b.resume.Damaged
}

// addRun remembers rs, forgetting the least recently used run when full.
func (b *runBook) addRun(run string, rs *runState) {
	if len(b.runs) >= maxRuns {
		var oldest string
		var used uint64 = math.MaxUint64
		for r, s := range b.runs {
			if s.used < used {
				oldest, used = r, s.used
			}
		}
		delete(b.runs, oldest)
	}
	b.runs[run] = rs
}

// acking records that the guest is about to be told seq of rs is stored.
func (b *runBook) acking(rs *runState, seq uint64) {
	b.mu.Lock()
	rs.acked = max(rs.acked, seq)
	b.mu.Unlock()
}
