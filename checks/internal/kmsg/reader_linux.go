package kmsg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrEmpty is returned by ReadNow when no record is there yet.
var ErrEmpty = errors.New("no kmsg record yet")

// Reader reads /dev/kmsg one record at a time. It waits for records in
// the Go runtime's poller (epoll), not in a blocking syscall or a timed
// poll(2), so an idle reader holds no thread and wakes nothing until the
// kernel logs a line or its context ends.
type Reader struct {
	f    *os.File
	rc   syscall.RawConn
	ctx  context.Context
	stop func() bool
}

// Open opens path for reading. When ctx ends, a Read waiting for a record
// returns ctx's error at once, and so does every Read after.
func Open(ctx context.Context, path string) (*Reader, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// A non-blocking fd given to os.NewFile is registered with the poller
	// when the kernel lets epoll watch it, which /dev/kmsg does.
	f := os.NewFile(uintptr(fd), path)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// A deadline is what wakes a Read parked in the poller; a file the
	// poller cannot watch refuses one, and a Read on it could not be woken.
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		f.Close()
		return nil, fmt.Errorf("open %s: cannot wait for records in the poller: %w", path, err)
	}
	r := &Reader{f: f, rc: rc, ctx: ctx}
	r.stop = context.AfterFunc(ctx, func() { f.SetReadDeadline(time.Unix(1, 0)) })
	return r, nil
}

// SeekEnd moves past the records there are now, so that only later ones
// are read.
func (r *Reader) SeekEnd() error {
	var serr error
	err := r.rc.Control(func(fd uintptr) { _, serr = unix.Seek(int(fd), 0, io.SeekEnd) })
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("seek %s: %w", r.f.Name(), err)
	}
	return nil
}

// Read reads one record into buf, waiting until one arrives or the
// context ends. Like read(2) on /dev/kmsg it fails with unix.EPIPE when
// records were overwritten before they were read (the next Read goes on
// after them) and with unix.EINVAL when buf is too small for the record.
func (r *Reader) Read(buf []byte) (int, error) { return r.read(buf, true) }

// ReadNow is Read without waiting: ErrEmpty when no record is there.
func (r *Reader) ReadNow(buf []byte) (int, error) { return r.read(buf, false) }

func (r *Reader) read(buf []byte, wait bool) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	var n int
	var rerr error
	err := r.rc.Read(func(fd uintptr) bool {
		for {
			n, rerr = unix.Read(int(fd), buf)
			if rerr != unix.EINTR {
				break
			}
		}
		// false parks the goroutine in the poller until fd is readable.
		return !wait || rerr != unix.EAGAIN
	})
	switch {
	case err != nil && r.ctx.Err() != nil:
		return 0, r.ctx.Err()
	case err != nil:
		return 0, fmt.Errorf("read %s: %w", r.f.Name(), err)
	case rerr == unix.EAGAIN:
		return 0, ErrEmpty
	case rerr != nil:
		return 0, fmt.Errorf("read %s: %w", r.f.Name(), rerr)
	}
	return n, nil
}

// Close releases the file; a Read waiting on it returns.
func (r *Reader) Close() error {
	r.stop()
	return r.f.Close()
}
