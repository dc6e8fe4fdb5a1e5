package logs

import (
	"context"
	"errors"
	"os"
	"strings"
	"time"

	"github.com/guestdiag/guestdiag/checks/internal/kmsg"
	"golang.org/x/sys/unix"
)

// kmsgReader reads the kernel's ring buffer through /dev/kmsg, for systems
// without journald. Its position is the sequence number of the next record
// and the boot id, since sequence numbers start over at every boot.
type kmsgReader struct {
	path       string
	bootIDPath string
	filter     *entryFilter
	scanWindow time.Duration
}

const kmsgSource = "kmsg"

func (r *kmsgReader) name() string { return kmsgSource }

func (r *kmsgReader) read(ctx context.Context, follow bool, sink entrySink) error {
	pos, saved := sink.position(kmsgSource)
	bootID := ""
	if b, err := os.ReadFile(r.bootIDPath); err == nil {
		bootID = strings.TrimSpace(string(b))
	}
	kr, err := kmsg.Open(ctx, r.path)
	if err != nil {
		return err
	}
	defer kr.Close()

	// Records before next are not reported; a scan without position skips
	// records older than the scan window, a follow without position skips
	// everything there is now.
	var next, minUsec uint64
	skipAll := false
	switch {
	case saved && pos.BootID == bootID && pos.NextSeq > 0:
		next = pos.NextSeq
		sink.started(kmsgSource, "kmsg", "saved_position")
	case saved && pos.BootID != "" && pos.BootID != bootID:
		sink.started(kmsgSource, "kmsg", "beginning") // a new boot
	case follow:
		skipAll = true
		sink.started(kmsgSource, "kmsg", "end")
	default:
		if up := monotonic(); up > r.scanWindow {
			minUsec = uint64((up - r.scanWindow) / time.Microsecond)
		}
		sink.started(kmsgSource, "kmsg", "recent_tail")
	}
	boot := time.Now().Add(-monotonic())

	buf := make([]byte, 16<<10)
	var entries []entry
	var read uint64
	pushed := next
	flush := func() {
		if read > 0 || len(entries) > 0 || next != pushed {
			sink.push(kmsgSource, Position{NextSeq: next, BootID: bootID}, read, entries)
		}
		entries, read, pushed = entries[:0], 0, next
	}
	for {
		n, err := kr.ReadNow(buf)
		if errors.Is(err, kmsg.ErrEmpty) {
			skipAll = false
			flush()
			if !follow {
				return nil
			}
			n, err = kr.Read(buf) // parked in the poller until a record comes
		}
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, unix.EPIPE):
			continue // overwritten before we read them; the next read goes on
		case err != nil:
			return err
		case n == 0:
			flush()
			return nil
		}
		rec, err := kmsg.Parse(buf[:n])
		if err != nil || rec.Seq < next {
			continue
		}
		next = rec.Seq + 1
		if skipAll || rec.Usec < minUsec {
			continue
		}
		read++
		if e, ok := r.entry(rec, boot); ok {
			entries = append(entries, e)
		}
		if read >= 512 {
			flush()
		}
	}
}

func (r *kmsgReader) entry(rec kmsg.Record, boot time.Time) (entry, bool) {
	if rec.Level > r.filter.minPri {
		return entry{}, false
	}
	pri, ok := r.filter.classify(rec.Level, []byte(rec.Message))
	if !ok {
		return entry{}, false
	}
	e := entry{Source: kmsgSource, Unit: "kernel", Priority: pri, Message: rec.Message,
		Time: boot.Add(time.Duration(rec.Usec) * time.Microsecond)}
	if rec.Facility != 0 {
		e.Unit, e.PID, e.Message = kmsgIdent(rec.Message)
	}
	return e, true
}

// monotonic is the time since boot on the clock kmsg stamps records
// with.
func monotonic() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
