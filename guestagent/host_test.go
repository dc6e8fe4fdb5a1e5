package guestagent

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
)

// pipeTransport hands the agent one end of a net.Pipe per connection; the
// test plays the host on the other end.
type pipeTransport struct {
	conns chan net.Conn
}

func newPipeTransport() *pipeTransport { return &pipeTransport{conns: make(chan net.Conn)} }

func (p *pipeTransport) Connect(ctx context.Context) (io.ReadWriteCloser, error) {
	select {
	case c := <-p.conns:
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// testHost is the host side of one connection.
type testHost struct {
	conn    net.Conn
	r       *bufio.Reader
	timeout time.Duration
}

// connect waits for the agent to ask for a connection and returns the host
// end of it.
func (p *pipeTransport) connect(t *testing.T, timeout time.Duration) *testHost {
	t.Helper()
	agentEnd, hostEnd := net.Pipe()
	select {
	case p.conns <- agentEnd:
	case <-time.After(timeout):
		t.Fatal("the agent did not connect")
	}
	t.Cleanup(func() { hostEnd.Close() })
	return &testHost{conn: hostEnd, r: bufio.NewReader(hostEnd), timeout: timeout}
}

// line returns the next line the agent wrote, newline included.
func (h *testHost) line(t *testing.T) string {
	t.Helper()
	h.conn.SetReadDeadline(time.Now().Add(h.timeout))
	l, err := h.r.ReadString('\n')
	if err != nil {
		t.Fatalf("reading from the agent: %v (partial %q)", err, l)
	}
	return l
}

// expectNewline checks the lone newline the agent writes on connect, and
// reads the resume that follows it.
func (h *testHost) expectNewline(t *testing.T) protocol.Resume {
	t.Helper()
	if got := h.line(t); got != "\n" {
		t.Fatalf("first line on connect = %q, want a lone newline", got)
	}
	e := h.envelope(t)
	if e.Kind != protocol.KindResume {
		t.Fatalf("second line on connect is a %s, want a resume", e.Kind)
	}
	var r protocol.Resume
	if err := json.Unmarshal(e.Data, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// ids reads n lines and returns their "run/seq".
func (h *testHost) ids(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	for range n {
		var m struct {
			Run string `json:"run"`
			Seq uint64 `json:"seq"`
		}
		l := h.line(t)
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		out = append(out, fmt.Sprintf("%s/%d", m.Run, m.Seq))
	}
	return out
}

// envelope reads and validates the next line as a guest envelope.
func (h *testHost) envelope(t *testing.T) protocol.Envelope {
	t.Helper()
	l := h.line(t)
	e, err := protocol.Decode([]byte(l[:len(l)-1]))
	if err != nil {
		t.Fatalf("agent wrote an invalid envelope %q: %v", l, err)
	}
	return e
}

func (h *testHost) send(t *testing.T, s string) {
	t.Helper()
	h.conn.SetWriteDeadline(time.Now().Add(h.timeout))
	if _, err := io.WriteString(h.conn, s); err != nil {
		t.Fatalf("writing to the agent: %v", err)
	}
}

func (h *testHost) ack(t *testing.T, run string, seq uint64) {
	t.Helper()
	b, err := protocol.Marshal(protocol.NewAck(run, seq))
	if err != nil {
		t.Fatal(err)
	}
	h.send(t, string(b))
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
