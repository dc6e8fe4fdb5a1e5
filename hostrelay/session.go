package hostrelay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/guestdiag/guestdiag/protocol"
)

// ackWriteTimeout bounds one write of acks to a guest that does not read.
const ackWriteTimeout = 10 * time.Second

// session is one connection to one channel.
type session struct {
	r      *Relay
	conn   net.Conn
	ch     Channel
	vm     *vmState
	book   *runBook
	connNo uint64 // for book.admit
	// key is the VM part of every message id.
	key           string
	enc           reportEncoder
	heartbeatSubj string
	subjects      map[string]string // report subject by check name

	// pending holds published messages in arrival order until JetStream
	// confirms them.
	pending chan inflight
	// held counts the bytes of the messages in pending, bounded by
	// MaxInFlightBytes; the ack loop signals freed when it lowers it.
	held  atomic.Int64
	freed chan struct{}
	// failed is set, and dead closed, once a publish or an ack write
	// failed: nothing more is acknowledged on this connection, so the agent
	// will resend.
	failed atomic.Bool
	dead   chan struct{}
	// deadCtx is done once dead is closed, for waits on the relay's
	// shared byte budget.
	deadCtx  context.Context
	stopDead context.CancelFunc
}

type inflight struct {
	paf  jetstream.PubAckFuture // nil for a message the relay refused
	run  string
	rs   *runState
	seq  uint64
	size int64
	sent time.Time // for the publish latency metric
	// ackTo is how far the run may be acknowledged once this message and
	// every one before it are stored.
	ackTo uint64
}

// sessionEnd says why a connection ended.
type sessionEnd struct {
	reason    string
	throttled bool
}

// msgKey is the VM part of a message id. The UUID when known, because it is
// unique everywhere and survives migration to another host, so that a resend
// to the new host is recognised as a duplicate. Otherwise host and VM name:
// names are unique only per host, and the run id is chosen by the guest, so a
// hostile guest must not be able to pick ids that collide with another host's
// VM of the same name. Escaped tokens keep the two parts unambiguous.
func msgKey(host string, ch Channel) string {
	if ch.UUID != "" {
		return ch.UUID
	}
	return protocol.EscapeToken(host) + ":" + protocol.EscapeToken(ch.Name)
}

// serve relays one connection until it ends, then drains it: what was
// published before the end is still acknowledged when JetStream confirms it.
func (r *Relay) serve(ctx context.Context, conn net.Conn, ch Channel, book *runBook) sessionEnd {
	vm := r.vm(ch.Name)
	s := &session{
		r:             r,
		conn:          conn,
		ch:            ch,
		vm:            vm,
		book:          book,
		connNo:        book.newConn(),
		key:           msgKey(r.cfg.Host, ch),
		enc:           newReportEncoder(r.cfg.Host, ch),
		heartbeatSubj: protocol.HeartbeatSubject(r.cfg.Host, ch.Name),
		subjects:      make(map[string]string),
		pending:       make(chan inflight, r.cfg.MaxInFlight),
		freed:         make(chan struct{}, 1),
		dead:          make(chan struct{}),
	}
	s.deadCtx, s.stopDead = context.WithCancel(context.Background())
	defer s.stopDead()
	vm.conns.Add(1)
	defer vm.conns.Add(-1)
	vm.connects.Add(1)
	r.log.Info("channel_connected", "vm", ch.Name, "uuid", ch.UUID, "channel", ch.Path)
	r.publishChannelEvent(ch, protocol.ChannelConnected, "")

	// Cancelling stops reading only; acks for what is in flight still go out.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	acked := make(chan error, 1)
	go func() { acked <- s.ackLoop() }()
	end := s.readLoop(ctx)
	close(s.pending)
	if err := <-acked; err != nil {
		end.reason = err.Error()
	}
	stop()
	_ = conn.Close()

	r.log.Info("channel_disconnected", "vm", ch.Name, "channel", ch.Path, "reason", end.reason)
	r.publishChannelEvent(ch, protocol.ChannelDisconnected, end.reason)
	return end
}

// readLoop reads, checks, rate-limits and publishes lines until the
// connection ends, the VM goes over its rate, a run skips seqs, or a
// publish fails.
func (s *session) readLoop(ctx context.Context) sessionEnd {
	src := &throttledReader{ctx: ctx, r: s.conn, lim: s.vm.bytes, n: &s.vm.read}
	pr := protocol.NewReaderSize(src, protocol.MaxLineLen, readBufSize)
	for !s.failed.Load() {
		env, line, err := pr.Next()
		if err != nil {
			var le *protocol.LineError
			if !errors.As(err, &le) {
				return s.endOf(ctx, err)
			}
			s.vm.lines.Add(1)
			reason := dropReason(le.Err)
			s.vm.drop(reason)
			s.vm.logGuest(ctx, s.r.log, slog.LevelWarn, "guest_line_dropped",
				slog.String("vm", s.ch.Name), slog.String("channel", s.ch.Path),
				slog.Uint64("line", le.Line), slog.Int64("offset", le.Offset),
				slog.String("reason", string(reason)), slog.String("err", le.Err.Error()))
			// Invalid lines cost a token too, or garbage would be free.
			if reason != DropTruncated && !s.vm.limiter.Allow() {
				return s.throttle(ctx, slog.Uint64("line", le.Line), slog.Int64("offset", le.Offset))
			}
			continue
		}
		s.vm.lines.Add(1)
		received := time.Now()
		// While NATS is away a publish would only fill the client's
		// reconnect buffer with messages whose PubAcks time out; the line
		// is not acknowledged, so the agent keeps it and resends it after
		// the relay has reconnected (watch does not dial until then).
		if !s.r.nc.IsConnected() {
			return sessionEnd{reason: "nats disconnected"}
		}
		if !s.vm.limiter.Allow() {
			return s.throttle(ctx, slog.String("run", env.Run), slog.Uint64("seq", env.Seq))
		}
		if env.Kind == protocol.KindResume {
			s.resumed(ctx, env)
			continue
		}
		refused, ok := s.vm.screen(&env)
		adm := s.book.admit(s.connNo, env.Run, env.Seq)
		if adm.verdict == gapAccepted {
			s.vm.gaps.Add(1)
			s.vm.logGuest(ctx, s.r.log, slog.LevelWarn, "guest_seq_gap_accepted",
				slog.String("vm", s.ch.Name), slog.String("channel", s.ch.Path), slog.String("run", env.Run),
				slog.Uint64("missing_from", adm.from), slog.Uint64("missing_to", adm.to), slog.Bool("resumed", adm.resumed))
			s.reportLoss(env.Run, adm)
		}
		if !ok {
			// Refused, the message is still taken: it is acknowledged in
			// its turn, so the agent lets it go and its seq leaves no gap.
			s.refuse(ctx, env, refused)
			s.pending <- inflight{run: env.Run, rs: adm.rs, seq: env.Seq, ackTo: adm.ackTo}
			if adm.verdict == gapFound {
				return sessionEnd{reason: "seq gap"}
			}
			continue
		}
		msg := &nats.Msg{Subject: s.subject(env), Data: s.enc.encode(received, line)}
		size := int64(len(msg.Data))
		if !s.reserve(size) {
			return sessionEnd{} // the ack loop says why
		}
		// No client-side retries: a retry that lands after this connection
		// has given up would store an old message behind newer ones. The
		// agent's resend after a reconnect is the retry.
		paf, err := s.r.js.PublishMsgAsync(msg,
			jetstream.WithMsgID(protocol.MsgID(s.key, env.Run, env.Seq)),
			s.r.noRetry, s.r.stallWait)
		if err != nil {
			s.release(size)
			s.vm.drop(DropPublishFailed)
			s.r.log.Warn("publish_failed", "vm", s.ch.Name, "run", env.Run, "seq", env.Seq, "err", err)
			return sessionEnd{reason: "publish failed: " + err.Error()}
		}
		s.pending <- inflight{paf: paf, run: env.Run, rs: adm.rs, seq: env.Seq, size: size, sent: time.Now(), ackTo: adm.ackTo}
		if adm.verdict == gapFound {
			// What came before the gap is still acknowledged; the agent
			// connects again, resumes and resends the rest from its oldest
			// unacknowledged message (see runBook).
			s.vm.logGuest(ctx, s.r.log, slog.LevelInfo, "guest_seq_gap",
				slog.String("vm", s.ch.Name), slog.String("channel", s.ch.Path), slog.String("run", env.Run),
				slog.Uint64("missing_from", adm.from), slog.Uint64("missing_to", adm.to))
			return sessionEnd{reason: "seq gap"}
		}
	}
	return sessionEnd{}
}

// maxCachedSubjects bounds a connection's report subjects kept for reuse;
// an agent reports six checks, and screen has already refused names that
// are not check names.
const maxCachedSubjects = 32

// subject is where env is published. Report subjects are escaped once per
// check and connection rather than for every message.
func (s *session) subject(env protocol.Envelope) string {
	if env.Kind != protocol.KindResult && env.Kind != protocol.KindEvent {
		return s.heartbeatSubj
	}
	if subj, ok := s.subjects[env.Check]; ok {
		return subj
	}
	subj := protocol.ReportSubject(s.r.cfg.Host, s.ch.Name, env.Check)
	if len(s.subjects) < maxCachedSubjects {
		// A copy: env's strings share one buffer with the whole message.
		s.subjects[strings.Clone(env.Check)] = subj
	}
	return subj
}

// reserve waits until size more bytes may be in flight, and reports false
// if the ack loop failed first. One message always goes, however large.
func (s *session) reserve(size int64) bool {
	for {
		// Only this goroutine adds, so held can only have fallen by the
		// time Add runs.
		held := s.held.Load()
		if held == 0 || held+size <= int64(s.r.cfg.MaxInFlightBytes) {
			if !s.r.budget.acquire(s.deadCtx, size) {
				return false
			}
			s.held.Add(size)
			return true
		}
		select {
		case <-s.freed:
		case <-s.dead:
			return false
		}
	}
}

func (s *session) release(size int64) {
	if size == 0 {
		return // a refused message: it reserved nothing
	}
	s.held.Add(-size)
	s.r.budget.release(size)
	select {
	case s.freed <- struct{}{}:
	default: // a wake-up is already waiting
	}
}

// throttledReader reads no faster than lim allows. It pays for what each
// read returned, so it runs at most one read ahead of its budget; reads are
// cut to the burst so that one payment never exceeds it. Waiting here is
// back-pressure: the guest's writes block in the channel and nothing is
// lost.
type throttledReader struct {
	ctx context.Context
	r   io.Reader
	lim *rate.Limiter
	n   *atomic.Uint64
}

func (t *throttledReader) Read(p []byte) (int, error) {
	if b := t.lim.Burst(); len(p) > b && t.lim.Limit() != rate.Inf {
		p = p[:b]
	}
	n, err := t.r.Read(p)
	if n > 0 {
		t.n.Add(uint64(n))
		if werr := t.lim.WaitN(t.ctx, n); werr != nil && err == nil {
			err = werr
		}
	}
	return n, err
}

// throttle ends a connection whose VM went over its rate. The line over the
// limit and everything after it are neither published nor acknowledged;
// everything before it is. Acks are cumulative, so acknowledging a later
// line would acknowledge the dropped one: ending the connection instead
// makes the agent resend from the dropped line when the relay reconnects,
// after the VM's bucket has filled again.
func (s *session) throttle(ctx context.Context, which ...slog.Attr) sessionEnd {
	s.vm.drop(DropRateLimited)
	attrs := append([]slog.Attr{slog.String("vm", s.ch.Name), slog.String("channel", s.ch.Path),
		slog.String("reason", string(DropRateLimited))}, which...)
	s.vm.logGuest(ctx, s.r.log, slog.LevelWarn, "guest_rate_limited", attrs...)
	return sessionEnd{reason: string(DropRateLimited), throttled: true}
}

func (s *session) endOf(ctx context.Context, err error) sessionEnd {
	switch {
	case ctx.Err() != nil:
		if cause := context.Cause(ctx); errors.Is(cause, errVanished) {
			return sessionEnd{reason: cause.Error()}
		}
		return sessionEnd{reason: errShutdown.Error()}
	case s.failed.Load():
		return sessionEnd{} // the ack loop says why
	case errors.Is(err, io.EOF):
		return sessionEnd{reason: "closed by peer"}
	}
	return sessionEnd{reason: "read: " + err.Error()}
}

func dropReason(err error) DropReason {
	switch {
	case errors.Is(err, protocol.ErrLineTooLong):
		return DropOversized
	case errors.Is(err, protocol.ErrTruncated):
		return DropTruncated
	case errors.Is(err, protocol.ErrUnsupportedVersion):
		return DropVersion
	case errors.Is(err, protocol.ErrMalformed):
		return DropMalformed
	}
	return DropInvalid
}

// ackLoop takes published messages in arrival order and, as JetStream
// confirms them, acknowledges each run as far as the newest confirmed
// message allows. It batches whatever is already confirmed into one write.
// If a publish fails, the messages before it are still acknowledged,
// nothing after it is, and the connection is closed so that the agent
// resends.
func (s *session) ackLoop() error {
	var (
		batch ackBatch
		next  inflight
		have  bool
	)
	for {
		if !have {
			in, ok := <-s.pending
			if !ok {
				return nil
			}
			next = in
		}
		have = false
		if err := s.await(next); err != nil {
			return s.fail(err)
		}
		batch.add(next)
	gather:
		for batch.n < cap(s.pending) {
			select {
			case in, ok := <-s.pending:
				if !ok {
					break gather
				}
				done, err := s.poll(in)
				if err != nil {
					if werr := s.writeAcks(&batch); werr != nil {
						return s.fail(werr)
					}
					return s.fail(err)
				}
				if !done {
					next, have = in, true
					break gather
				}
				batch.add(in)
			default:
				break gather
			}
		}
		if err := s.writeAcks(&batch); err != nil {
			if have {
				// Taken off the queue but not awaited: fail frees only
				// what is still queued.
				s.release(next.size)
			}
			return s.fail(err)
		}
	}
}

// await blocks until JetStream confirms or refuses in. The async publish
// timeout bounds the wait.
func (s *session) await(in inflight) error {
	defer s.release(in.size)
	if in.paf == nil {
		return nil // refused: nothing was published
	}
	select {
	case pa := <-in.paf.Ok():
		s.r.metrics.publish.Observe(time.Since(in.sent).Seconds())
		s.confirmed(pa)
		return nil
	case err := <-in.paf.Err():
		return s.publishErr(in, err)
	}
}

// poll is await without waiting.
func (s *session) poll(in inflight) (bool, error) {
	if in.paf == nil {
		return true, nil // refused: nothing was published
	}
	select {
	case pa := <-in.paf.Ok():
		s.release(in.size)
		s.r.metrics.publish.Observe(time.Since(in.sent).Seconds())
		s.confirmed(pa)
		return true, nil
	case err := <-in.paf.Err():
		s.release(in.size)
		return false, s.publishErr(in, err)
	default:
		return false, nil
	}
}

func (s *session) confirmed(pa *jetstream.PubAck) {
	s.vm.published.Add(1)
	if pa.Duplicate {
		s.vm.duplicates.Add(1)
	}
}

func (s *session) publishErr(in inflight, err error) error {
	s.vm.drop(DropPublishFailed)
	s.r.log.Warn("publish_failed", "vm", s.ch.Name, "run", in.run, "seq", in.seq, "err", err)
	return fmt.Errorf("publish failed: %w", err)
}

// fail stops acknowledging, closes the connection so the reader stops, and
// discards what is still pending: it is not acknowledged, so the agent
// resends it and JetStream drops the copies it already holds.
func (s *session) fail(err error) error {
	s.failed.Store(true)
	close(s.dead)
	s.stopDead()
	_ = s.conn.Close()
	for in := range s.pending {
		s.release(in.size)
	}
	return err
}

func (s *session) writeAcks(b *ackBatch) error {
	if b.n == 0 {
		return nil
	}
	buf := b.buf[:0]
	n := 0
	for i, run := range b.runs {
		seq := b.seqs[i]
		if seq == 0 {
			continue // nothing of the run may be acknowledged yet
		}
		line, err := protocol.Marshal(protocol.NewAck(run, seq))
		if err != nil {
			return fmt.Errorf("encode ack: %w", err)
		}
		buf = append(buf, line...)
		// Recorded before the write: if it fails, the agent may or may
		// not have read the ack, and either way it resends nothing that
		// the relay would take for a gap.
		s.book.acking(b.states[i], seq)
		n++
	}
	b.buf = buf
	b.reset()
	if n == 0 {
		return nil
	}
	if err := s.conn.SetWriteDeadline(time.Now().Add(ackWriteTimeout)); err != nil {
		return fmt.Errorf("write ack: %w", err)
	}
	if _, err := s.conn.Write(buf); err != nil {
		return fmt.Errorf("write ack: %w", err)
	}
	s.vm.acks.Add(uint64(n))
	return nil
}

// ackBatch holds how far each run may be acknowledged after the messages
// confirmed since the last write, in the order runs first appeared.
type ackBatch struct {
	runs   []string
	states []*runState
	seqs   []uint64
	n      int // messages in the batch
	buf    []byte
}

func (b *ackBatch) add(in inflight) {
	b.n++
	for i, r := range b.runs {
		if r == in.run {
			b.seqs[i] = max(b.seqs[i], in.ackTo)
			return
		}
	}
	b.runs = append(b.runs, in.run)
	b.states = append(b.states, in.rs)
	b.seqs = append(b.seqs, in.ackTo)
}

func (b *ackBatch) reset() {
	clear(b.states) // let forgotten runs go
	b.runs, b.states, b.seqs, b.n = b.runs[:0], b.states[:0], b.seqs[:0], 0
}
