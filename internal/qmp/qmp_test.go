package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// fakeQEMU speaks QEMU's side of QMP on one end of a pipe, as far as the
// tests need: the greeting, replies that echo the id, and events on demand.
type fakeQEMU struct {
	conn net.Conn
	r    *bufio.Reader
}

func startFake(t *testing.T) (*fakeQEMU, net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return &fakeQEMU{conn: a, r: bufio.NewReader(a)}, b
}

func (f *fakeQEMU) send(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(f.conn, line+"\n"); err != nil {
		t.Errorf("fake qemu write: %v", err)
	}
}

// command reads one command and returns its name and id.
func (f *fakeQEMU) command(t *testing.T) (name, id string) {
	t.Helper()
	line, err := f.r.ReadBytes('\n')
	if err != nil {
		t.Errorf("fake qemu read: %v", err)
		return "", ""
	}
	var c struct {
		Execute string `json:"execute"`
		ID      string `json:"id"`
	}
	if err := json.Unmarshal(line, &c); err != nil {
		t.Errorf("fake qemu got %q: %v", line, err)
	}
	return c.Execute, c.ID
}

const greeting = `{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": ["oob"]}}`

// handshake plays the greeting and accepts qmp_capabilities.
func (f *fakeQEMU) handshake(t *testing.T) {
	t.Helper()
	f.send(t, greeting)
	if name, id := f.command(t); name != "qmp_capabilities" {
		t.Errorf("first command %q, want qmp_capabilities", name)
	} else {
		f.send(t, `{"return": {}, "id": "`+id+`"}`)
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestCommandsAndEvents(t *testing.T) {
	f, c := startFake(t)
	go func() {
		f.handshake(t)
		_, id := f.command(t)
		// An event between command and reply must not be taken for the reply.
		f.send(t, `{"timestamp": {"seconds": 1700000000, "microseconds": 250000}, "event": "STOP"}`)
		f.send(t, `{"return": {"status": "paused", "running": false}, "id": "`+id+`"}`)
		_, id = f.command(t)
		f.send(t, `{"error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}, "id": "`+id+`"}`)
		f.conn.Close()
	}()
	q, err := New(ctx(t), c)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()

	ret, err := q.Execute(ctx(t), "query-status", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(ret), `{"status": "paused", "running": false}`; got != want {
		t.Errorf("query-status returned %s, want %s", got, want)
	}
	ev := <-q.Events()
	if ev.Name != "STOP" || !ev.Time.Equal(time.Unix(1700000000, 250000000)) {
		t.Errorf("event %+v, want STOP at 1700000000.25", ev)
	}

	_, err = q.Execute(ctx(t), "nope", nil)
	var qe *Error
	if !errors.As(err, &qe) || qe.Class != "CommandNotFound" {
		t.Errorf("unknown command gave %v, want a CommandNotFound *Error", err)
	}

	if _, open := <-q.Events(); open {
		t.Error("events still open after QEMU closed the socket")
	}
	if err := q.Err(); !errors.Is(err, io.EOF) {
		t.Errorf("Err after QEMU closed = %v, want io.EOF", err)
	}
}

func TestStatusIsQEMUsRunState(t *testing.T) {
	f, c := startFake(t)
	go func() {
		f.handshake(t)
		_, id := f.command(t)
		f.send(t, `{"return": {"status": "inmigrate", "singlestep": false, "running": false}, "id": "`+id+`"}`)
		_, id = f.command(t)
		f.send(t, `{"return": [], "id": "`+id+`"}`)
	}()
	q, err := New(ctx(t), c)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if got, err := q.Status(ctx(t)); err != nil || got != "inmigrate" {
		t.Errorf("Status = %q, %v, want inmigrate", got, err)
	}
	if got, err := q.Status(ctx(t)); err == nil {
		t.Errorf("Status of a reply that is no object = %q, want an error", got)
	}
}

func TestAPeerThatIsNotQEMUIsNamedByItsFirstLine(t *testing.T) {
	f, c := startFake(t)
	go f.send(t, "SSH-2.0-OpenSSH_9.2 "+strings.Repeat("x", 300))
	_, err := New(ctx(t), c)
	if !errors.Is(err, ErrNoGreeting) {
		t.Fatalf("New gave %v, want ErrNoGreeting", err)
	}
	if !strings.Contains(err.Error(), "SSH-2.0-OpenSSH_9.2") || strings.Contains(err.Error(), strings.Repeat("x", 300)) {
		t.Errorf("New gave %q, want the peer's first line in it, clipped", err)
	}
}

func TestConnectionEnds(t *testing.T) {
	tests := []struct {
		name  string
		play  func(t *testing.T, f *fakeQEMU)
		want  error
		inNew bool
	}{
		{"a peer that sends no greeting is refused", func(t *testing.T, f *fakeQEMU) {
			f.send(t, `{"return": {}}`)
		}, ErrNoGreeting, true},
		{"a peer that closes before greeting is refused", func(t *testing.T, f *fakeQEMU) {
			f.conn.Close()
		}, ErrNoGreeting, true},
		{"an over-long line ends the connection", func(t *testing.T, f *fakeQEMU) {
			f.handshake(t)
			f.send(t, `{"event": "X", "data": "`+strings.Repeat("a", MaxLine)+`"}`)
		}, ErrLineTooLong, false},
		{"events nobody reads end the connection", func(t *testing.T, f *fakeQEMU) {
			f.handshake(t)
			for range eventBuffer + 1 {
				f.send(t, `{"event": "RESUME"}`)
			}
		}, ErrEventOverflow, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, c := startFake(t)
			go tt.play(t, f)
			q, err := New(ctx(t), c)
			if tt.inNew {
				if !errors.Is(err, tt.want) {
					t.Errorf("New gave %v, want %v", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			select {
			case <-q.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("connection did not end")
			}
			if err := q.Err(); !errors.Is(err, tt.want) {
				t.Errorf("Err = %v, want %v", err, tt.want)
			}
		})
	}
}
