package guestagent

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
)

// The spool is a directory of append-only segment files plus a small file
// of acknowledged sequence numbers:
//
//	<dir>/00000000000000000007.seg   records, oldest segment has the lowest number
//	<dir>/acks.json                  {"<run>": <highest acked seq>, ...}
//
// A record is a 21-byte little-endian header, the run id and the wire line
// (newline included):
//
//	magic u32 "GDS1" | crc32c u32 | seq u64 | run length u8 | line length u32 | run | line
//
// The CRC covers everything after itself. Reading a segment stops at the
// first record that is short, has a bad magic, an impossible length or a
// wrong CRC: that is a write cut short by a crash, and what follows it is
// skipped and logged. A new process never appends to an old segment, so a
// damaged tail is never built upon; the segment is deleted once its intact
// records are acknowledged.
//
// A segment file is deleted as soon as none of its records is waiting for
// an ack. The byte bound counts whole segment files; when an append would
// exceed it, the oldest segments are deleted with their unacknowledged
// records, which are counted as dropped. The age bound drops, and counts,
// records spooled longer ago than the maximum age, by this process's
// clock: a record's age is taken from when it was appended, or, after a
// restart, from when the spool was opened again.
//
// Each read of a record for sending checks it again. A record whose bytes
// are gone or no longer match their CRC will never be readable: it is
// dropped, logged and counted as damaged, not skipped, because skipping it
// would let the next cumulative ack delete it unnoticed.
const (
	segSuffix   = ".seg"
	acksFile    = "acks.json"
	recMagic    = 0x31534447 // "GDS1" read as little-endian
	recHeader   = 21
	minSegBytes = 4 << 10
	maxSegBytes = 1 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrMessageTooLarge means a message does not fit in the spool at all.
var ErrMessageTooLarge = errors.New("message larger than the spool")

// errGone says a record was acknowledged or dropped after it was listed.
var errGone = errors.New("record no longer spooled")

// errDamaged says a record's bytes are gone or corrupt for good; the read
// that found it has dropped it from the spool.
var errDamaged = errors.New("spooled record damaged")

// errLocked says another process holds the spool.
var errLocked = errors.New("in use by another agent process")

type segment struct {
	num  uint64
	path string
	size int64
	live int             // records still waiting for an ack
	runs map[string]bool // runs with records here, live or not
	rf   *os.File        // read handle, opened on first read
}

type record struct {
	id  uint64 // position in the spool, increasing in append order
	run string
	seq uint64
	seg *segment
	off int64     // offset of the line in the segment file
	n   int       // length of the line
	at  time.Time // when it was spooled
}

type spool struct {
	dir    string
	max    int64
	maxAge time.Duration // 0: no age bound
	segMax int64
	logger *slog.Logger
	lock   *os.File // held open, and locked, while the spool is open

	mu      sync.Mutex
	segs    []*segment // oldest first
	active  *segment   // the segment appends go to; nil until the first append
	af      *os.File   // append handle of active
	recs    []*record  // records waiting for an ack, in id order
	nextID  uint64
	nextSeg uint64
	acked   map[string]uint64
	bytes   int64  // sum of segment sizes
	dropped uint64 // records dropped because the spool was full
	expired uint64 // records dropped because they were older than maxAge
	damaged uint64 // records dropped because they could not be read back
	changed chan struct{}

	fsync func(*os.File) error // (*os.File).Sync; replaced in tests
	now   func() time.Time
}

// openSpool opens or creates the spool in dir and recovers what an earlier
// process left there.
func openSpool(dir string, maxBytes int64, logger *slog.Logger) (*spool, error) {
	if maxBytes < minSegBytes {
		return nil, fmt.Errorf("spool: bound of %d bytes is below the minimum of %d", maxBytes, minSegBytes)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	s := &spool{
		dir:     dir,
		max:     maxBytes,
		segMax:  min(max(maxBytes/8, minSegBytes), maxSegBytes),
		logger:  logger,
		nextID:  1,
		nextSeg: 1,
		acked:   map[string]uint64{},
		changed: make(chan struct{}),
		fsync:   (*os.File).Sync,
		now:     time.Now,
	}
	// Two processes appending to one spool would interleave records and
	// delete each other's segments.
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	if err := lockFile(lock); err != nil {
		lock.Close()
		return nil, fmt.Errorf("spool %s: %w", dir, err)
	}
	s.lock = lock
	if err := s.recover(); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *spool) recover() error {
	if b, err := os.ReadFile(filepath.Join(s.dir, acksFile)); err == nil {
		if err := json.Unmarshal(b, &s.acked); err != nil {
			// Losing the ack state only means resending; the relay de-duplicates.
			s.logger.Warn("spool_acks_unreadable", "err", err)
			s.acked = map[string]uint64{}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("spool: %w", err)
	}

	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	var nums []uint64
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, segSuffix) {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(name, segSuffix), 10, 64)
		if err != nil {
			continue
		}
		nums = append(nums, n)
	}
	slices.Sort(nums)
	for _, n := range nums {
		if err := s.loadSegment(n); err != nil {
			return err
		}
		s.nextSeg = n + 1
	}
	s.pruneAcks()
	if len(s.recs) > 0 {
		s.logger.Info("spool_recovered", "messages", len(s.recs), "bytes", s.bytes, "segments", len(s.segs))
	}
	return nil
}

func (s *spool) loadSegment(num uint64) error {
	seg := &segment{num: num, path: filepath.Join(s.dir, segName(num)), runs: map[string]bool{}}
	b, err := os.ReadFile(seg.path)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	seg.size = int64(len(b))
	// A recovered record's age starts again now. Its ts, or the file's
	// time, come from a clock that may have been set since (a guest's
	// clock corrected at boot), which would expire a whole spool at once.
	opened := s.now()
	off := 0
	for off < len(b) {
		run, seq, line, n, ok := parseRecord(b[off:])
		if !ok {
			s.logger.Warn("spool_tail_skipped", "segment", seg.path, "offset", off, "bytes", len(b)-off)
			break
		}
		seg.runs[run] = true
		if seq > s.acked[run] {
			s.recs = append(s.recs, &record{
				id: s.nextID, run: run, seq: seq, seg: seg,
				off: int64(off + n - len(line)), n: len(line), at: opened,
			})
			s.nextID++
			seg.live++
		}
		off += n
	}
	if seg.live == 0 {
		if err := os.Remove(seg.path); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		return nil
	}
	s.segs = append(s.segs, seg)
	s.bytes += seg.size
	return nil
}

// parseRecord decodes the record at the start of b and returns its length.
func parseRecord(b []byte) (run string, seq uint64, line []byte, n int, ok bool) {
	if len(b) < recHeader || binary.LittleEndian.Uint32(b) != recMagic {
		return "", 0, nil, 0, false
	}
	runLen := int(b[16])
	lineLen := binary.LittleEndian.Uint32(b[17:])
	if runLen == 0 || runLen > protocol.MaxRunLen || lineLen == 0 || lineLen > protocol.MaxLineLen+1 {
		return "", 0, nil, 0, false
	}
	n = recHeader + runLen + int(lineLen)
	if len(b) < n || crc32.Checksum(b[8:n], crcTable) != binary.LittleEndian.Uint32(b[4:]) {
		return "", 0, nil, 0, false
	}
	return string(b[recHeader : recHeader+runLen]), binary.LittleEndian.Uint64(b[8:]), b[recHeader+runLen : n], n, true
}

func encodeRecord(run string, seq uint64, line []byte) []byte {
	b := make([]byte, recHeader, recHeader+len(run)+len(line))
	binary.LittleEndian.PutUint32(b, recMagic)
	binary.LittleEndian.PutUint64(b[8:], seq)
	b[16] = byte(len(run))
	binary.LittleEndian.PutUint32(b[17:], uint32(len(line)))
	b = append(b, run...)
	b = append(b, line...)
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(b[8:], crcTable))
	return b
}

func segName(num uint64) string { return fmt.Sprintf("%020d%s", num, segSuffix) }

// append adds one wire line. It does not wait for the disk: sync does.
func (s *spool) append(run string, seq uint64, line []byte) error {
	if run == "" || len(run) > protocol.MaxRunLen || len(line) == 0 || len(line) > protocol.MaxLineLen+1 {
		return fmt.Errorf("spool: run %q, line of %d bytes: %w", run, len(line), protocol.ErrInvalid)
	}
	rec := encodeRecord(run, seq, line)
	size := int64(len(rec))
	if size > s.max {
		return fmt.Errorf("spool: %d bytes: %w", size, ErrMessageTooLarge)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.expireLocked(now)
	for s.bytes+size > s.max && len(s.segs) > 0 {
		s.dropOldest()
	}
	if s.active == nil || s.active.size >= s.segMax {
		if err := s.roll(); err != nil {
			return err
		}
	}
	seg := s.active
	off := seg.size
	if _, err := s.af.Write(rec); err != nil {
		// Whatever part was written is skipped on recovery; start afresh.
		s.closeActive()
		return fmt.Errorf("spool: %w", err)
	}
	seg.size += size
	s.bytes += size
	seg.live++
	seg.runs[run] = true
	s.recs = append(s.recs, &record{id: s.nextID, run: run, seq: seq, seg: seg, off: off + int64(recHeader+len(run)), n: len(line), at: now})
	s.nextID++
	close(s.changed)
	s.changed = make(chan struct{})
	return nil
}

// sync returns once every line appended before the call is on disk. It
// holds no lock while it waits for the disk, so appends, reads and acks go
// on meanwhile.
func (s *spool) sync() error {
	s.mu.Lock()
	f := s.af
	s.mu.Unlock()
	if f == nil {
		return nil // nothing appended since the last roll, which synced
	}
	err := s.fsync(f)
	if errors.Is(err, os.ErrClosed) {
		// The segment was closed meanwhile: rolled, which synced it first;
		// dropped, so its lines are gone anyway; or abandoned after a
		// failed write, which was reported.
		return nil
	}
	if err != nil {
		// What the failed sync covered may not be on disk, whatever a later
		// sync of the same file says; later lines go to a new segment.
		s.mu.Lock()
		if s.af == f {
			s.closeActive()
		}
		s.mu.Unlock()
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}

// roll starts a new segment for appends.
func (s *spool) roll() error {
	if s.af != nil {
		// Lines appended without a sync of their own, such as heartbeats,
		// rely on a later sync; that only covers the active segment.
		if err := s.fsync(s.af); err != nil {
			s.logger.Warn("spool_sync_failed", "segment", s.active.path, "err", err)
		}
	}
	s.closeActive()
	seg := &segment{num: s.nextSeg, runs: map[string]bool{}}
	seg.path = filepath.Join(s.dir, segName(seg.num))
	f, err := os.OpenFile(seg.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.nextSeg++
	syncDir(s.dir)
	s.segs = append(s.segs, seg)
	s.active, s.af = seg, f
	return nil
}

// closeActive stops appending to the active segment and deletes it if
// nothing in it waits for an ack.
func (s *spool) closeActive() {
	if s.af != nil {
		s.af.Close()
	}
	seg := s.active
	s.active, s.af = nil, nil
	if seg != nil && seg.live == 0 {
		s.removeSegment(seg)
	}
}

func (s *spool) removeSegment(seg *segment) {
	if seg.rf != nil {
		seg.rf.Close()
		seg.rf = nil
	}
	if err := os.Remove(seg.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.logger.Warn("spool_remove_failed", "segment", seg.path, "err", err)
	}
	s.segs = slices.DeleteFunc(s.segs, func(x *segment) bool { return x == seg })
	s.bytes -= seg.size
}

// ack removes the records of run up to and including seq, deletes segments
// left without records waiting, and returns how many records it removed.
// Other runs' records are untouched.
func (s *spool) ack(run string, seq uint64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq <= s.acked[run] {
		return 0
	}
	s.acked[run] = seq
	n := 0
	s.recs = slices.DeleteFunc(s.recs, func(r *record) bool {
		if r.run != run || r.seq > seq {
			return false
		}
		r.seg.live--
		n++
		return true
	})
	for _, seg := range slices.Clone(s.segs) {
		if seg.live == 0 && seg != s.active {
			s.removeSegment(seg)
		}
	}
	s.pruneAcks()
	s.writeAcks()
	return n
}

// pruneAcks forgets runs that no segment holds any more.
func (s *spool) pruneAcks() {
	for run := range s.acked {
		held := false
		for _, seg := range s.segs {
			if seg.runs[run] {
				held = true
				break
			}
		}
		if !held {
			delete(s.acked, run)
		}
	}
}

// writeAcks replaces the ack file. It is not fsynced: after a crash an older
// ack state only makes the agent resend, and the relay de-duplicates.
func (s *spool) writeAcks() {
	b, err := json.Marshal(s.acked)
	if err == nil {
		tmp := filepath.Join(s.dir, acksFile+".tmp")
		if err = os.WriteFile(tmp, b, 0o600); err == nil {
			err = os.Rename(tmp, filepath.Join(s.dir, acksFile))
		}
	}
	if err != nil {
		s.logger.Warn("spool_acks_write_failed", "err", err)
	}
}

// next returns the first record waiting for an ack whose id is above after.
func (s *spool) next(after uint64) (record, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := sort.Search(len(s.recs), func(i int) bool { return s.recs[i].id > after })
	if i == len(s.recs) {
		return record{}, false
	}
	return *s.recs[i], true
}

// read returns the wire line of r. It returns errGone if r has left the
// spool, and an error wrapping errDamaged if r's bytes are missing or
// corrupt, after dropping r. Other errors may pass: r stays spooled.
func (s *spool) read(r record) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := sort.Search(len(s.recs), func(i int) bool { return s.recs[i].id >= r.id })
	if i == len(s.recs) || s.recs[i].id != r.id {
		return nil, errGone
	}
	seg := s.recs[i].seg
	if seg.rf == nil {
		f, err := os.Open(seg.path)
		if errors.Is(err, os.ErrNotExist) {
			return nil, s.dropDamaged(i, err)
		}
		if err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
		seg.rf = f
	}
	// The whole record, so that its CRC can be checked again.
	head := int64(recHeader + len(r.run))
	b := make([]byte, head+int64(r.n))
	if _, err := seg.rf.ReadAt(b, r.off-head); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, s.dropDamaged(i, io.ErrUnexpectedEOF)
		}
		// A fresh handle next time, in case this one went bad.
		seg.rf.Close()
		seg.rf = nil
		return nil, fmt.Errorf("spool: %s: %w", seg.path, err)
	}
	run, seq, line, _, ok := parseRecord(b)
	if !ok || run != r.run || seq != r.seq || len(line) != r.n {
		return nil, s.dropDamaged(i, errors.New("record does not match its checksum or index"))
	}
	return line, nil
}

// waiting returns the number of records waiting for an ack.
func (s *spool) waiting() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.recs)
}

// size returns the bytes the spool's segments take on disk.
func (s *spool) size() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// changes returns a channel that is closed at the next append.
func (s *spool) changes() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

func (s *spool) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	if s.af != nil {
		err = s.af.Close()
		s.af, s.active = nil, nil
	}
	for _, seg := range s.segs {
		if seg.rf != nil {
			seg.rf.Close()
			seg.rf = nil
		}
	}
	if s.lock != nil {
		s.lock.Close()
		s.lock = nil
	}
	return err
}

// syncDir makes a new directory entry durable. Not every OS can fsync a
// directory (Windows cannot), and failing here would lose nothing that the
// file's own fsync did not already promise, so errors are ignored.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
