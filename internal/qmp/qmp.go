package qmp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// MaxLine bounds one line from QEMU. Events and the replies a watcher asks
// for are a few hundred bytes; a larger line ends the connection.
const MaxLine = 1 << 20

// eventBuffer is how many events may wait unread. A reader that falls this
// far behind has lost track anyway: the connection ends, and whoever dials
// again asks QEMU for its state.
const eventBuffer = 256

// Errors a Conn ends with.
var (
	ErrLineTooLong   = errors.New("qmp: line too long")
	ErrEventOverflow = errors.New("qmp: events not read in time")
	ErrNoGreeting    = errors.New("qmp: no greeting")
	ErrClosed        = errors.New("qmp: connection closed")
)

// Event is one asynchronous QMP event.
type Event struct {
	Name string
	Data json.RawMessage
	// Time is QEMU's timestamp of the event.
	Time time.Time
}

// Error is an error reply to a command.
type Error struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *Error) Error() string { return "qmp: " + e.Class + ": " + e.Desc }

// Conn is a QMP connection in command mode.
type Conn struct {
	conn   net.Conn
	events chan Event

	cmdMu sync.Mutex // one command at a time
	id    uint64

	mu      sync.Mutex
	waiting map[string]chan reply
	err     error
	done    chan struct{}
}

type reply struct {
	ret json.RawMessage
	err error
}

// wire is any line QEMU sends.
type wire struct {
	QMP       json.RawMessage `json:"QMP"`
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	Timestamp *struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
	Return json.RawMessage `json:"return"`
	Error  *Error          `json:"error"`
	ID     json.RawMessage `json:"id"`
}

// Dial connects to the QMP socket at path and returns the connection in
// command mode. ctx bounds the handshake only.
func Dial(ctx context.Context, path string) (*Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("qmp %s: %w", path, err)
	}
	q, err := New(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("qmp %s: %w", path, err)
	}
	return q, nil
}

// New takes over c, reads QEMU's greeting and enters command mode. On
// failure c is closed.
func New(ctx context.Context, c net.Conn) (*Conn, error) {
	q := &Conn{conn: c, events: make(chan Event, eventBuffer), waiting: make(map[string]chan reply), done: make(chan struct{})}
	greeted := make(chan error, 1)
	go q.read(greeted)
	stop := context.AfterFunc(ctx, func() { q.fail(ctx.Err()) })
	defer stop()
	select {
	case err := <-greeted:
		if err != nil {
			q.Close()
			return nil, err
		}
	case <-q.done:
		return nil, q.Err()
	}
	if _, err := q.Execute(ctx, "qmp_capabilities", nil); err != nil {
		q.Close()
		return nil, err
	}
	return q, nil
}

// Events delivers QEMU's events in order; it is closed when the
// connection ends, after which Err says why.
func (q *Conn) Events() <-chan Event { return q.events }

// Done is closed when the connection has ended.
func (q *Conn) Done() <-chan struct{} { return q.done }

// Err is why the connection ended: io.EOF when QEMU closed it, nil while
// it lasts.
func (q *Conn) Err() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.err
}

// Close ends the connection.
func (q *Conn) Close() error {
	q.fail(ErrClosed)
	return nil
}

// Execute runs cmd with args (nil for none) and returns its "return" value.
func (q *Conn) Execute(ctx context.Context, cmd string, args any) (json.RawMessage, error) {
	q.cmdMu.Lock()
	defer q.cmdMu.Unlock()
	q.id++
	id := strconv.FormatUint(q.id, 10)
	req := struct {
		Execute   string `json:"execute"`
		Arguments any    `json:"arguments,omitempty"`
		ID        string `json:"id"`
	}{cmd, args, id}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("qmp %s: %w", cmd, err)
	}
	ch := make(chan reply, 1)
	q.mu.Lock()
	if q.err != nil {
		err := q.err
		q.mu.Unlock()
		return nil, fmt.Errorf("qmp %s: %w", cmd, err)
	}
	q.waiting[`"`+id+`"`] = ch
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		delete(q.waiting, `"`+id+`"`)
		q.mu.Unlock()
	}()
	if dl, ok := ctx.Deadline(); ok {
		q.conn.SetWriteDeadline(dl)
	}
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		q.fail(err)
		return nil, fmt.Errorf("qmp %s: %w", cmd, err)
	}
	var r reply
	select {
	case r = <-ch:
	case <-q.done:
		// The reader hands a reply over before it ends the connection,
		// so a reply followed at once by QEMU closing (as after quit) is
		// here; without this select could pick the end instead.
		select {
		case r = <-ch:
		default:
			return nil, fmt.Errorf("qmp %s: %w", cmd, q.Err())
		}
	case <-ctx.Done():
		return nil, fmt.Errorf("qmp %s: %w", cmd, ctx.Err())
	}
	if r.err != nil {
		return nil, fmt.Errorf("qmp %s: %w", cmd, r.err)
	}
	return r.ret, nil
}

// Status runs query-status and returns QEMU's run state, such as
// "running", "paused", "inmigrate" or "postmigrate".
func (q *Conn) Status(ctx context.Context) (string, error) {
	ret, err := q.Execute(ctx, "query-status", nil)
	if err != nil {
		return "", err
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(ret, &st); err != nil {
		return "", fmt.Errorf("qmp query-status answered %.200q: %w", ret, err)
	}
	return st.Status, nil
}

// fail ends the connection with err unless it has ended already.
func (q *Conn) fail(err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err != nil {
		return
	}
	q.err = err
	q.conn.Close()
	close(q.done)
}

// read reads lines until the connection ends. The first must be the
// greeting, reported on greeted.
func (q *Conn) read(greeted chan<- error) {
	defer close(q.events)
	r := bufio.NewReaderSize(q.conn, 64<<10)
	first := true
	for {
		line, err := readLine(r)
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = io.EOF
			}
			if first {
				greeted <- fmt.Errorf("%w: %w", ErrNoGreeting, err)
			}
			q.fail(err)
			return
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var m wire
		err = json.Unmarshal(line, &m)
		if first {
			first = false
			if err != nil || m.QMP == nil {
				// Say what came instead: it is QEMU's, or a stranger's,
				// which is rarely JSON.
				err := fmt.Errorf("%w: the first line is %.200q", ErrNoGreeting, line)
				greeted <- err
				q.fail(err)
				return
			}
			greeted <- nil
			continue
		}
		if err != nil {
			q.fail(fmt.Errorf("qmp: bad line: %w", err))
			return
		}
		switch {
		case m.Event != "":
			ev := Event{Name: m.Event, Data: m.Data}
			if ts := m.Timestamp; ts != nil && ts.Seconds > 0 {
				ev.Time = time.Unix(ts.Seconds, ts.Microseconds*1000).UTC()
			}
			select {
			case q.events <- ev:
			default:
				q.fail(ErrEventOverflow)
				return
			}
		case m.Return != nil || m.Error != nil:
			q.mu.Lock()
			ch := q.waiting[string(m.ID)]
			q.mu.Unlock()
			if ch == nil {
				continue // a reply nobody waits for any more
			}
			rep := reply{ret: m.Return}
			if m.Error != nil {
				rep.err = m.Error
			}
			ch <- rep
		}
	}
}

// readLine returns the next line without its newline, or ErrLineTooLong
// once a line passes MaxLine.
func readLine(r *bufio.Reader) ([]byte, error) {
	var long []byte
	for {
		frag, err := r.ReadSlice('\n')
		if len(long)+len(frag) > MaxLine+1 {
			return nil, ErrLineTooLong
		}
		switch {
		case err == nil && long == nil:
			return frag, nil
		case err == nil:
			return append(long, frag...), nil
		case errors.Is(err, bufio.ErrBufferFull):
			long = append(long, frag...)
		case errors.Is(err, io.EOF) && len(long)+len(frag) > 0:
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}
