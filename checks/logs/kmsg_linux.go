package logs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

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
	fd, err := unix.Open(r.path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", r.path, err)
	}
	defer unix.Close(fd)

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
		n, err := unix.Read(fd, buf)
		switch {
		case errors.Is(err, unix.EAGAIN):
			skipAll = false
			flush()
			if !follow {
				return nil
			}
			if err := waitReadable(ctx, fd); err != nil {
				return err
			}
			if ctx.Err() != nil {
				return nil
			}
			continue
		case errors.Is(err, unix.EPIPE):
			continue // overwritten before we read them; the next read goes on
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return fmt.Errorf("read %s: %w", r.path, err)
		case n == 0:
			flush()
			return nil
		}
		rec, err := parseKmsg(buf[:n])
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

func (r *kmsgReader) entry(rec kmsgRecord, boot time.Time) (entry, bool) {
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

// waitReadable waits until fd has a record or ctx ends, checking ctx
// every 250 ms.
func waitReadable(ctx context.Context, fd int) error {
	for ctx.Err() == nil {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 250)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("poll kmsg: %w", err)
		}
		if n > 0 {
			return nil
		}
	}
	return nil
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
