package guestagent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/guestdiag/guestdiag/internal/pause"
	"github.com/guestdiag/guestdiag/protocol"
)

// ackLineMax bounds a line from the host. An ack is under 150 bytes.
const ackLineMax = 4 << 10

// connectRetry paces retries after a transport's Connect failed, and after
// a connection ended because the spool could not be read.
const connectRetry = 2 * time.Second

var (
	// errSpoolRead ends a connection when a spooled record could not be
	// read for a reason that may pass. Skipping the record instead would let
	// the next cumulative ack delete it unsent.
	errSpoolRead = errors.New("spool read failed")
	// errAckTimeout ends a connection on which acks stopped advancing.
	errAckTimeout = errors.New("no ack progress")
)

// sender moves spooled messages to the host and acks back into the spool.
type sender struct {
	spool        *spool
	tr           Transport
	ackTimeout   time.Duration
	writeTimeout time.Duration
	logger       *slog.Logger

	// runID is the agent's run, named in the resume each connection starts
	// with.
	runID string

	mu      sync.Mutex
	sentMax map[string]uint64 // highest seq written per run, to bound acks
	conns   uint64            // connections started, numbering the resumes
}

// newSender takes AckTimeout and WriteTimeout from cfg, which must have
// its defaults applied.
func newSender(sp *spool, tr Transport, cfg Config, logger *slog.Logger) *sender {
	return &sender{
		spool: sp, tr: tr, logger: logger,
		ackTimeout: cfg.AckTimeout, writeTimeout: cfg.WriteTimeout,
		sentMax: map[string]uint64{},
	}
}

// run connects, serves the connection until it ends, and connects again,
// until ctx ends. It returns nil then, or the transport's final error.
func (s *sender) run(ctx context.Context) error {
	for {
		conn, err := s.tr.Connect(ctx)
		if ctx.Err() != nil {
			if conn != nil {
				conn.Close()
			}
			return nil
		}
		if err != nil {
			if errors.Is(err, errors.ErrUnsupported) {
				return err
			}
			s.logger.Warn("connect_failed", "err", err, "retry", connectRetry)
			if pause.For(ctx, connectRetry) != nil {
				return nil
			}
			continue
		}
		err = s.serve(ctx, conn)
		if ctx.Err() != nil {
			return nil
		}
		s.logger.Info("host_disconnected", "reason", err, "waiting", s.spool.waiting())
		if errors.Is(err, errSpoolRead) {
			// Connecting again at once would most likely fail the same way.
			if pause.For(ctx, connectRetry) != nil {
				return nil
			}
		}
	}
}

// writeDeadliner is the part of net.Conn and *os.File that bounds a write.
type writeDeadliner interface {
	SetWriteDeadline(t time.Time) error
}

// link is one connection to the host.
type link struct {
	s      *sender
	rw     io.ReadWriteCloser
	dl     writeDeadliner // nil when rw cannot bound a write
	cancel context.CancelCauseFunc

	mu          sync.Mutex
	closed      bool
	lastSent    uint64      // spool id of the newest record written here
	ackDeadline time.Time   // when waiting records end the connection
	ackTimer    *time.Timer // set while records written here may be waiting
}

// serve writes a lone newline, which ends any line a previous connection
// left half-written, then a resume saying what the spool holds, then every
// message waiting for an ack in spool order,
// then new messages as they are spooled. It returns when the connection
// fails or ends, or acks stop advancing, after closing it. The next call
// starts again from the oldest message waiting.
func (s *sender) serve(ctx context.Context, rw io.ReadWriteCloser) error {
	ctx, cancel := context.WithCancelCause(ctx)
	c := &link{s: s, rw: rw, cancel: cancel}
	if dl, ok := rw.(writeDeadliner); ok {
		c.dl = dl
	}
	// Closing is what ends a Read or Write that is blocked.
	stop := context.AfterFunc(ctx, func() { rw.Close() })
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		err := c.readAcks()
		if err == nil || errors.Is(err, io.EOF) {
			err = io.EOF
		}
		cancel(err)
	}()
	defer func() {
		c.stopAckTimer()
		stop()
		rw.Close()
		<-readerDone
	}()

	cancel(c.write(ctx))
	return context.Cause(ctx)
}

func (c *link) write(ctx context.Context) error {
	if err := c.writeLine([]byte{'\n'}); err != nil {
		return err
	}
	resume, err := c.s.resumeLine()
	if err != nil {
		return err
	}
	if err := c.writeLine(resume); err != nil {
		return err
	}
	var cursor uint64
	for {
		changed := c.s.spool.changes()
		rec, ok := c.s.spool.next(cursor)
		if !ok {
			select {
			case <-changed:
				continue
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
		line, err := c.s.spool.read(rec)
		switch {
		case errors.Is(err, errGone), errors.Is(err, errDamaged):
			// Acknowledged or dropped since it was listed, or damaged for
			// good, which read has logged and counted as dropped.
			cursor = rec.id
			continue
		case err != nil:
			c.s.logger.Error("spool_read_failed", "run", rec.run, "seq", rec.seq, "err", err)
			return fmt.Errorf("%w: %s/%d: %w", errSpoolRead, rec.run, rec.seq, err)
		}
		c.s.noteSent(rec.run, rec.seq)
		c.sending(rec.id)
		if err := c.writeLine(line); err != nil {
			return err
		}
		cursor = rec.id
	}
}

// writeLine writes b within the write timeout, where rw supports one.
func (c *link) writeLine(b []byte) error {
	if c.dl != nil {
		if err := c.dl.SetWriteDeadline(time.Now().Add(c.s.writeTimeout)); err != nil {
			// The ack timeout still bounds a write that never ends.
			c.s.logger.Debug("write_deadline_unsupported", "err", err)
			c.dl = nil
		}
	}
	_, err := c.rw.Write(b)
	return err
}

// sending notes that the record with spool id is about to be written. The
// ack clock starts unless records written before it are still waiting: it
// measures how long acks have not advanced, not how old the newest is.
func (c *link) sending(id uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.waiting() {
		c.ackDeadline = time.Now().Add(c.s.ackTimeout)
	}
	c.lastSent = id
	if c.ackTimer == nil && !c.closed {
		c.ackTimer = time.AfterFunc(time.Until(c.ackDeadline), c.ackExpired)
	}
}

// acked restarts the ack clock after an ack removed messages.
func (c *link) acked() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ackDeadline = time.Now().Add(c.s.ackTimeout)
}

// ackExpired runs when the ack clock may have run out. It ends the
// connection if records written here still wait and no ack advanced since
// the deadline was set; otherwise it waits for the new deadline, or stops
// until the next write.
func (c *link) ackExpired() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if !c.waiting() {
		c.ackTimer = nil
		return
	}
	if d := time.Until(c.ackDeadline); d > 0 {
		c.ackTimer.Reset(d)
		return
	}
	c.s.logger.Warn("ack_timeout", "timeout", c.s.ackTimeout, "waiting", c.s.spool.waiting())
	c.cancel(fmt.Errorf("%w for %v", errAckTimeout, c.s.ackTimeout))
}

// waiting says whether a record written on this connection still waits for
// an ack. c.mu must be held.
func (c *link) waiting() bool {
	rec, ok := c.s.spool.next(0)
	return ok && rec.id <= c.lastSent
}

func (c *link) stopAckTimer() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.ackTimer != nil {
		c.ackTimer.Stop()
	}
}

func (s *sender) noteSent(run string, seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq > s.sentMax[run] {
		s.sentMax[run] = seq
	}
}

// readAcks applies the host's acks until the stream ends. The host can say
// nothing else; any other line is logged and ignored.
func (c *link) readAcks() error {
	lr := protocol.NewReader(c.rw, ackLineMax)
	ignored := 0
	for {
		line, err := lr.ReadLine()
		var lineErr *protocol.LineError
		if errors.As(err, &lineErr) {
			ignored++
			c.s.logIgnored(ignored, lineErr)
			continue
		}
		if err != nil {
			return err
		}
		a, err := protocol.DecodeAck(line)
		if err != nil {
			ignored++
			c.s.logIgnored(ignored, err)
			continue
		}
		if c.s.ack(a) > 0 {
			c.acked()
		}
	}
}

// logIgnored warns about the first ignored host line of a connection and
// keeps the rest at debug level, so a confused host cannot flood the log.
func (s *sender) logIgnored(n int, err error) {
	level := slog.LevelDebug
	if n == 1 {
		level = slog.LevelWarn
	}
	s.logger.Log(context.Background(), level, "host_line_ignored", "err", err, "ignored", n)
}

// ack applies a cumulative ack, bounded by what was actually sent: a host
// cannot make the agent forget messages it never received. It returns how
// many messages the ack removed from the spool.
func (s *sender) ack(a protocol.Ack) int {
	s.mu.Lock()
	sent := s.sentMax[a.Run]
	s.mu.Unlock()
	seq := a.Seq
	if seq > sent {
		s.logger.Warn("ack_beyond_sent", "run", a.Run, "seq", a.Seq, "sent", sent)
		if sent == 0 {
			return 0
		}
		seq = sent
	}
	n := s.spool.ack(a.Run, seq)
	if n > 0 {
		s.logger.Debug("acked", "run", a.Run, "seq", seq, "removed", n)
	}
	return n
}
