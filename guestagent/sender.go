package guestagent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
)

// ackLineMax bounds a line from the host. An ack is under 150 bytes.
const ackLineMax = 4 << 10

// connectRetry paces retries after a transport's Connect failed.
const connectRetry = 2 * time.Second

// sender moves spooled messages to the host and acks back into the spool.
type sender struct {
	spool  *spool
	tr     Transport
	logger *slog.Logger

	mu      sync.Mutex
	sentMax map[string]uint64 // highest seq written per run, to bound acks
}

func newSender(sp *spool, tr Transport, logger *slog.Logger) *sender {
	return &sender{spool: sp, tr: tr, logger: logger, sentMax: map[string]uint64{}}
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
			if sleepCtx(ctx, connectRetry) != nil {
				return nil
			}
			continue
		}
		err = s.serve(ctx, conn)
		if ctx.Err() != nil {
			return nil
		}
		s.logger.Info("host_disconnected", "reason", err, "waiting", s.spool.waiting())
	}
}

// serve writes a lone newline, which ends any line a previous connection
// left half-written, then every message waiting for an ack in spool order,
// then new messages as they are spooled. It returns when the connection
// fails or ends, after closing it.
func (s *sender) serve(ctx context.Context, conn io.ReadWriteCloser) error {
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		err := s.readAcks(conn)
		if err == nil || errors.Is(err, io.EOF) {
			err = io.EOF
		}
		cancel(err)
	}()
	defer func() {
		stop()
		conn.Close()
		<-readerDone
	}()

	err := s.write(ctx, conn)
	cancel(err)
	return context.Cause(ctx)
}

func (s *sender) write(ctx context.Context, conn io.Writer) error {
	if _, err := conn.Write([]byte{'\n'}); err != nil {
		return err
	}
	var cursor uint64
	for {
		changed := s.spool.changes()
		rec, ok := s.spool.next(cursor)
		if !ok {
			select {
			case <-changed:
				continue
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
		line, err := s.spool.read(rec)
		if err != nil {
			cursor = rec.id
			if !errors.Is(err, errGone) {
				// It stays spooled and is tried again on the next connection.
				s.logger.Error("spool_read_failed", "run", rec.run, "seq", rec.seq, "err", err)
			}
			continue
		}
		s.noteSent(rec.run, rec.seq)
		if _, err := conn.Write(line); err != nil {
			return err
		}
		cursor = rec.id
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
func (s *sender) readAcks(r io.Reader) error {
	lr := protocol.NewReader(r, ackLineMax)
	ignored := 0
	for {
		line, err := lr.ReadLine()
		var lineErr *protocol.LineError
		if errors.As(err, &lineErr) {
			ignored++
			s.logIgnored(ignored, lineErr)
			continue
		}
		if err != nil {
			return err
		}
		a, err := protocol.DecodeAck(line)
		if err != nil {
			ignored++
			s.logIgnored(ignored, err)
			continue
		}
		s.ack(a)
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
// cannot make the agent forget messages it never received.
func (s *sender) ack(a protocol.Ack) {
	s.mu.Lock()
	sent := s.sentMax[a.Run]
	s.mu.Unlock()
	seq := a.Seq
	if seq > sent {
		s.logger.Warn("ack_beyond_sent", "run", a.Run, "seq", a.Seq, "sent", sent)
		if sent == 0 {
			return
		}
		seq = sent
	}
	if n := s.spool.ack(a.Run, seq); n > 0 {
		s.logger.Debug("acked", "run", a.Run, "seq", seq, "removed", n)
	}
}

// sleepCtx waits for d or until ctx ends, and then returns ctx's error.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
