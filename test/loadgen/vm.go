package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
)

// writeTimeout bounds one write to the relay, as the agent's does.
const writeTimeout = 10 * time.Second

// entry is one spooled message.
type entry struct {
	seq  uint64
	line []byte
	crit bool
}

// vm plays one agent behind one channel socket.
type vm struct {
	f    *Fleet
	name string
	path string
	ln   net.Listener
	run  string
	rng  *rand.Rand
	boot time.Time

	mu       sync.Mutex
	seq      uint64  // newest seq produced
	spool    []entry // unacknowledged, in seq order
	sentMax  uint64  // newest seq written on any connection
	progress time.Time
	changed  chan struct{} // closed and replaced when the spool grows
	conns    uint64
	conn     net.Conn
	closed   bool
}

func newVM(f *Fleet, name, path string, ln net.Listener, seed uint64) *vm {
	rng := rand.New(rand.NewPCG(seed, 0x6c6f616467656e))
	run := make([]byte, 22)
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := range run {
		run[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return &vm{
		f: f, name: name, path: path, ln: ln, run: string(run), rng: rng,
		boot:    time.Now().Add(-time.Duration(3600+rng.IntN(30*86400)) * time.Second),
		changed: make(chan struct{}),
	}
}

// emit spools one message made by mk from its seq and the time, unless
// Drain has stopped production: a generator that was past its own check of
// the context when Drain began must not add a message after Drain counted.
func (v *vm) emit(crit bool, mk func(b []byte, seq uint64, now time.Time, spooled int) []byte) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.f.produce.Err() != nil {
		return
	}
	v.seq++
	line := mk(nil, v.seq, time.Now(), len(v.spool))
	v.spool = append(v.spool, entry{seq: v.seq, line: line, crit: crit})
	close(v.changed)
	v.changed = make(chan struct{})
	v.f.messages.Add(1)
}

func (v *vm) emitTemplate(t template, crit bool) {
	v.emit(crit, func(b []byte, seq uint64, now time.Time, _ int) []byte { return t.line(b, v.run, seq, now) })
}

func (v *vm) emitCrit() { v.emitTemplate(v.f.mix.crit, true) }

// generate produces the VM's messages until ctx ends: a hello, then
// heartbeats, each check's results and bursts of log findings, each on its
// own clock with a random phase so that a fleet's load is even.
func (v *vm) generate(ctx context.Context) {
	m, speed := v.f.mix, v.f.cfg.Speed
	scale := func(d time.Duration) time.Duration { return time.Duration(float64(d) / speed) }
	v.emitTemplate(m.hello, false)

	type clock struct {
		next     time.Time
		interval time.Duration
		emit     func()
	}
	now := time.Now()
	phase := func(d time.Duration) time.Time { return now.Add(time.Duration(v.rng.Int64N(int64(d) + 1))) }
	beat := scale(m.beat)
	clocks := []*clock{{next: phase(beat), interval: beat, emit: func() {
		v.emit(false, func(b []byte, seq uint64, at time.Time, spooled int) []byte {
			up := uint64(at.Sub(v.boot).Seconds())
			return heartbeat(b, v.run, seq, at, up, uint64(spooled))
		})
	}}}
	for _, c := range m.checks {
		t := m.ok[c.Name]
		iv := scale(c.Interval)
		clocks = append(clocks, &clock{next: phase(iv), interval: iv, emit: func() { v.emitTemplate(t, false) }})
	}
	if v.f.cfg.BurstLen > 0 {
		mean := scale(v.f.cfg.BurstEvery)
		left := 0
		var b *clock
		b = &clock{next: now.Add(v.expo(mean)), emit: func() {
			v.emitTemplate(m.burst, false)
			if left == 0 {
				left = v.f.cfg.BurstLen
			}
			left--
			if left > 0 {
				b.interval = scale(time.Second)
			} else {
				b.interval = v.expo(mean)
			}
		}}
		clocks = append(clocks, b)
	}

	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		first := clocks[0]
		for _, c := range clocks[1:] {
			if c.next.Before(first.next) {
				first = c
			}
		}
		timer.Reset(time.Until(first.next))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		first.emit()
		first.next = first.next.Add(first.interval)
		if late := time.Now(); first.next.Before(late) {
			// Behind (the machine is overloaded): skip rather than catch up
			// in a rush no agent would make.
			first.next = late.Add(first.interval)
		}
	}
}

// expo draws an exponential wait of the given mean.
func (v *vm) expo(mean time.Duration) time.Duration {
	return time.Duration(v.rng.ExpFloat64() * float64(mean))
}

// listen accepts the relay's connections one at a time, as QEMU's chardev
// server socket does, until ctx ends.
func (v *vm) listen(ctx context.Context) {
	stop := context.AfterFunc(ctx, v.close)
	defer stop()
	for {
		conn, err := v.ln.Accept()
		if err != nil {
			return
		}
		v.mu.Lock()
		if v.closed {
			v.mu.Unlock()
			conn.Close()
			return
		}
		v.conn = conn
		v.mu.Unlock()
		v.f.connects.Add(1)
		err = v.serve(ctx, conn)
		v.f.cfg.Logger.Debug("channel_ended", "vm", v.name, "err", err)
	}
}

func (v *vm) close() {
	v.mu.Lock()
	v.closed = true
	c := v.conn
	v.mu.Unlock()
	v.ln.Close()
	if c != nil {
		c.Close()
	}
}

var errAckTimeout = errors.New("no ack progress")

// serve writes the newline, the resume and every unacknowledged message,
// then new ones as they come, while reading acks, until the connection
// ends or acks stop advancing.
func (v *vm) serve(ctx context.Context, conn net.Conn) error {
	defer conn.Close()
	readDone := make(chan error, 1)
	go func() { readDone <- v.readAcks(conn) }()
	defer func() { conn.Close(); <-readDone }()

	if err := v.write(conn, []byte{'\n'}); err != nil {
		return err
	}
	if err := v.write(conn, v.resumeLine()); err != nil {
		return err
	}
	v.mu.Lock()
	v.progress = time.Now()
	v.mu.Unlock()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var cursor uint64 // newest seq written on this connection
	var buf []byte
	for {
		v.mu.Lock()
		changed := v.changed
		buf = buf[:0]
		var crits []bool
		if !(len(v.spool) > 0 && v.spool[0].seq <= cursor) {
			// Nothing written here is waiting: the ack clock starts with
			// what is written now.
			v.progress = time.Now()
		}
		for _, e := range v.spool {
			if e.seq <= cursor {
				continue
			}
			buf = append(buf, e.line...)
			if e.seq > v.sentMax {
				v.sentMax = e.seq
				v.f.written.Add(1)
				v.f.bytes.Add(uint64(len(e.line)))
				crits = append(crits, e.crit)
			} else {
				v.f.resent.Add(1)
			}
			cursor = e.seq
		}
		waiting := len(v.spool) > 0 && v.spool[0].seq <= cursor
		stalled := waiting && time.Since(v.progress) > v.f.cfg.AckTimeout
		v.mu.Unlock()
		if stalled {
			return errAckTimeout
		}
		if len(buf) > 0 {
			if err := v.write(conn, buf); err != nil {
				return err
			}
			if on := v.f.cfg.OnCrit; on != nil {
				for _, c := range crits {
					if c {
						on(v.name, time.Now())
					}
				}
			}
			continue
		}
		select {
		case <-changed:
		case <-tick.C:
		case err := <-readDone:
			readDone <- err
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (v *vm) write(conn net.Conn, b []byte) error {
	_ = conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := conn.Write(b)
	return err
}

// resumeLine says which seqs of the run the spool still holds, as the
// agent's resume does at the start of every connection.
func (v *vm) resumeLine() []byte {
	v.mu.Lock()
	v.conns++
	held := []protocol.HeldRun{}
	if len(v.spool) > 0 {
		held = append(held, protocol.HeldRun{Run: v.run, Oldest: v.spool[0].seq, Newest: v.spool[len(v.spool)-1].seq})
	}
	n := v.conns
	v.mu.Unlock()
	data, _ := json.Marshal(protocol.Resume{Held: held})
	line, _ := protocol.Marshal(protocol.Envelope{V: protocol.Version, Kind: protocol.KindResume, Run: v.run, Seq: n, TS: time.Now().UTC(), Data: data})
	return line
}

// readAcks applies the relay's cumulative acks until the connection ends.
func (v *vm) readAcks(conn net.Conn) error {
	r := protocol.NewReader(conn, 4<<10)
	for {
		line, err := r.ReadLine()
		var le *protocol.LineError
		if errors.As(err, &le) {
			v.f.ackErrors.Add(1)
			continue
		}
		if err != nil {
			return err
		}
		a, err := protocol.DecodeAck(line)
		if err != nil || a.Run != v.run {
			v.f.ackErrors.Add(1)
			continue
		}
		v.ack(a.Seq)
	}
}

// ack forgets every message up to seq, bounded by what was written: a host
// cannot make the agent forget what it never received.
func (v *vm) ack(seq uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	seq = min(seq, v.sentMax)
	n := 0
	for n < len(v.spool) && v.spool[n].seq <= seq {
		n++
	}
	if n == 0 {
		return
	}
	v.spool = append(v.spool[:0:0], v.spool[n:]...)
	v.progress = time.Now()
	v.f.acked.Add(uint64(n))
}
