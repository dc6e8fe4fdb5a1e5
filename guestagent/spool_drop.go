package guestagent

import (
	"fmt"
	"slices"
	"time"
)

// How the spool drops records it cannot keep: the byte bound, the age
// bound and damage found on reading, each counted apart.

// setMaxAge sets the age bound and applies it at once.
func (s *spool) setMaxAge(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maxAge = d
	s.expireLocked(s.now())
}

// expireLocked drops the records spooled before now less the age bound.
// Records are in append order, so they are the oldest ones. s.mu must be
// held.
func (s *spool) expireLocked(now time.Time) {
	if s.maxAge <= 0 || len(s.recs) == 0 {
		return
	}
	cut := now.Add(-s.maxAge)
	n := 0
	for n < len(s.recs) && s.recs[n].at.Before(cut) {
		s.recs[n].seg.live--
		n++
	}
	if n == 0 {
		return
	}
	oldest := s.recs[0].at
	s.recs = slices.Delete(s.recs, 0, n)
	s.expired += uint64(n)
	for _, seg := range slices.Clone(s.segs) {
		if seg.live == 0 && seg != s.active {
			s.removeSegment(seg)
		}
	}
	s.logger.Warn("spool_expired_dropped", "messages", n, "oldest", oldest, "max_age", s.maxAge, "expired_total", s.expired)
}

// dropOldest deletes the oldest segment to make room, with its records.
func (s *spool) dropOldest() {
	seg := s.segs[0]
	if seg == s.active {
		s.af.Close()
		s.active, s.af = nil, nil
	}
	n := seg.live
	s.recs = slices.DeleteFunc(s.recs, func(r *record) bool { return r.seg == seg })
	seg.live = 0
	s.dropped += uint64(n)
	s.removeSegment(seg)
	s.logger.Warn("spool_full_dropped", "messages", n, "bytes", seg.size, "dropped_total", s.dropped, "bound", s.max)
}

// dropDamaged drops s.recs[i], which can never be read, logs and counts it,
// and returns an error wrapping errDamaged. s.mu must be held.
func (s *spool) dropDamaged(i int, cause error) error {
	r := s.recs[i]
	s.recs = slices.Delete(s.recs, i, i+1)
	r.seg.live--
	s.damaged++
	s.logger.Error("spool_record_damaged_dropped", "run", r.run, "seq", r.seq, "segment", r.seg.path,
		"err", cause, "damaged_total", s.damaged)
	if r.seg == s.active {
		// Recovery stops at a segment's first damaged record, so nothing
		// more may be appended after one.
		s.closeActive()
	} else if r.seg.live == 0 {
		s.removeSegment(r.seg)
	}
	return fmt.Errorf("spool: %s/%d in %s: %w: %w", r.run, r.seq, r.seg.path, errDamaged, cause)
}

// droppedCount returns how many unacknowledged records this process
// dropped, for any reason of dropCounts.
func (s *spool) droppedCount() uint64 {
	d := s.dropCounts()
	return d.full + d.expired + d.damaged
}

// drops counts records dropped unacknowledged, by reason.
type drops struct {
	full    uint64 // to stay within the byte bound
	expired uint64 // older than the age bound
	damaged uint64 // could not be read back
}

// dropCounts returns how many unacknowledged records this process dropped,
// by reason.
func (s *spool) dropCounts() drops {
	s.mu.Lock()
	defer s.mu.Unlock()
	return drops{full: s.dropped, expired: s.expired, damaged: s.damaged}
}
