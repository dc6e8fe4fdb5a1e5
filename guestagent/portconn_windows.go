package guestagent

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/windows"
)

// writeFullRetry paces write retries while the port's out queue is full:
// vioserial fails an overlapped write at once instead of queueing it.
// These answers are read from the virtio-win driver's source; they have not
// been seen from a real port.
const writeFullRetry = 50 * time.Millisecond

// overlappedConn is an open port handle (FILE_FLAG_OVERLAPPED) read and
// written with overlapped I/O, one event per direction. Close cancels what
// is pending with CancelIoEx and waits for it to finish before closing the
// handle: the kernel writes into the caller's buffer and OVERLAPPED until
// then, and a handle left open would hold the port's device and block a
// driver update.
type overlappedConn struct {
	h    windows.Handle
	name string

	mu       sync.Mutex // orders issuing I/O with Close
	closed   bool
	inflight sync.WaitGroup
	done     chan struct{} // closed by Close; ends write retries

	rd, wr   ioOp
	info     portInfo  // IOCTL_GET_INFORMATION's answer; under rd.rw
	deadline time.Time // write deadline; zero means none; guarded by mu
}

// ioOp is the OVERLAPPED, event and buffer of one direction. The kernel
// writes into them until the operation completes, so they live on the heap
// with the connection, never on a goroutine stack that may move. rw lets
// one operation per direction run at a time.
type ioOp struct {
	rw  sync.Mutex
	ov  windows.Overlapped
	buf []byte
}

func newOverlappedConn(h windows.Handle, name string) (*overlappedConn, error) {
	c := &overlappedConn{h: h, name: name, done: make(chan struct{})}
	c.rd.buf = make([]byte, 4<<10)
	// vioserial's limit per write request.
	c.wr.buf = make([]byte, 32<<10)
	for _, op := range []*ioOp{&c.rd, &c.wr} {
		// Manual reset, as GetOverlappedResult expects.
		ev, err := windows.CreateEvent(nil, 1, 0, nil)
		if err != nil {
			c.closeEvents()
			return nil, fmt.Errorf("create event: %w", err)
		}
		op.ov.HEvent = ev
	}
	return c, nil
}

func (c *overlappedConn) Name() string { return c.name }

// start issues one overlapped operation unless the connection is closed.
// It returns whether the operation is pending (or done) and must be
// finished with finish.
func (c *overlappedConn) start(op *ioOp, issue func(ov *windows.Overlapped) error) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false, os.ErrClosed
	}
	windows.ResetEvent(op.ov.HEvent)
	op.ov.Internal, op.ov.InternalHigh, op.ov.Offset, op.ov.OffsetHigh = 0, 0, 0, 0
	if err := issue(&op.ov); err != nil && err != windows.ERROR_IO_PENDING {
		return false, err
	}
	c.inflight.Add(1)
	return true, nil
}

// finish waits for op up to deadline (zero: no limit) and returns the bytes
// moved. When the deadline passes it cancels op and still waits for the
// cancellation to land, so op's buffer is free when finish returns.
func (c *overlappedConn) finish(op *ioOp, deadline time.Time) (uint32, error) {
	defer c.inflight.Done()
	if !deadline.IsZero() {
		wait := time.Until(deadline)
		ms := uint32(max(wait.Milliseconds(), 0))
		if ev, _ := windows.WaitForSingleObject(op.ov.HEvent, ms); ev == uint32(windows.WAIT_TIMEOUT) {
			windows.CancelIoEx(c.h, &op.ov)
			var n uint32
			if err := windows.GetOverlappedResult(c.h, &op.ov, &n, true); err == nil {
				// It completed while being cancelled.
				return n, nil
			}
			return 0, os.ErrDeadlineExceeded
		}
	}
	var n uint32
	err := windows.GetOverlappedResult(c.h, &op.ov, &n, true)
	return n, err
}

// Read reads what the host sent. A port whose host side went away fails
// reads with ERROR_NO_SYSTEM_RESOURCES (vioserial's
// STATUS_INSUFFICIENT_RESOURCES), a pipe with ERROR_BROKEN_PIPE: both are
// the end of this connection, io.EOF.
func (c *overlappedConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rd.rw.Lock()
	defer c.rd.rw.Unlock()
	buf := c.rd.buf[:min(len(p), len(c.rd.buf))]
	ok, err := c.start(&c.rd, func(ov *windows.Overlapped) error {
		return windows.ReadFile(c.h, buf, nil, ov)
	})
	if ok {
		var n uint32
		n, err = c.finish(&c.rd, time.Time{})
		if err == nil && n == 0 {
			err = io.EOF
		}
		if err == nil {
			return copy(p, buf[:n]), nil
		}
	}
	return 0, c.mapErr("read", err)
}

// Write writes all of p, in chunks of at most 32 KiB (older vioserial
// takes no more per request), retrying while the queue to the host is
// full, within the write deadline.
func (c *overlappedConn) Write(p []byte) (int, error) {
	c.wr.rw.Lock()
	defer c.wr.rw.Unlock()
	written := 0
	for written < len(p) {
		c.mu.Lock()
		deadline := c.deadline
		c.mu.Unlock()
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			return written, c.mapErr("write", os.ErrDeadlineExceeded)
		}
		chunk := c.wr.buf[:copy(c.wr.buf, p[written:])]
		ok, err := c.start(&c.wr, func(ov *windows.Overlapped) error {
			return windows.WriteFile(c.h, chunk, nil, ov)
		})
		var n uint32
		if ok {
			n, err = c.finish(&c.wr, deadline)
		}
		written += int(n)
		switch {
		case err == nil:
		case errors.Is(err, windows.ERROR_CANT_WAIT), errors.Is(err, windows.ERROR_NO_SYSTEM_RESOURCES):
			// The queue to the host is full, or the host just left (the
			// reader sees that): current vioserial answers an overlapped
			// write then with STATUS_CANT_WAIT, older ones with
			// STATUS_INSUFFICIENT_RESOURCES.
			t := time.NewTimer(writeFullRetry)
			select {
			case <-t.C:
			case <-c.done:
				t.Stop()
				return written, c.mapErr("write", os.ErrClosed)
			}
		default:
			return written, c.mapErr("write", err)
		}
	}
	return written, nil
}

// SetWriteDeadline bounds the writes that follow, as on an *os.File.
func (c *overlappedConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return os.ErrClosed
	}
	c.deadline = t
	return nil
}

// Close cancels pending I/O, waits for it to end and closes the handle. It
// may be called more than once and from any goroutine.
func (c *overlappedConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.done)
	// Under mu, so no operation can be issued after the cancel.
	windows.CancelIoEx(c.h, nil)
	c.mu.Unlock()
	c.inflight.Wait()
	err := windows.CloseHandle(c.h)
	c.closeEvents()
	return err
}

func (c *overlappedConn) closeEvents() {
	for _, op := range []*ioOp{&c.rd, &c.wr} {
		if op.ov.HEvent != 0 {
			windows.CloseHandle(op.ov.HEvent)
			op.ov.HEvent = 0
		}
	}
}

// mapErr turns the system's answers into the errors the sender knows.
func (c *overlappedConn) mapErr(op string, err error) error {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	switch {
	case closed:
		return &os.PathError{Op: op, Path: c.name, Err: os.ErrClosed}
	case errors.Is(err, io.EOF), errors.Is(err, windows.ERROR_BROKEN_PIPE),
		errors.Is(err, windows.ERROR_PIPE_NOT_CONNECTED), errors.Is(err, windows.ERROR_NO_SYSTEM_RESOURCES) && op == "read":
		return io.EOF
	}
	return &os.PathError{Op: op, Path: c.name, Err: err}
}
