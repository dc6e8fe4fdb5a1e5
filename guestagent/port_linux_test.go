package guestagent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY returns a raw pseudo-terminal's master and the path of its slave.
// A pty slave behaves enough like a virtio-serial port for the transport:
// a character device that polls writable while the other side is there,
// and reports a hangup when it goes.
func openPTY(t *testing.T) (*os.File, string) {
	t.Helper()
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here (%v); this test needs /dev/ptmx", err)
	}
	master := os.NewFile(uintptr(fd), "ptmx")
	t.Cleanup(func() { master.Close() })
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	// Termios requests on the master apply to the slave: make it raw, so
	// bytes pass unchanged (no echo, no CR/LF translation).
	tio, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	tio.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	tio.Oflag &^= unix.OPOST
	tio.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	tio.Cflag = tio.Cflag&^(unix.CSIZE|unix.PARENB) | unix.CS8
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, tio); err != nil {
		t.Fatal(err)
	}
	return master, fmt.Sprintf("/dev/pts/%d", n)
}

func TestPortTransportOverPTY(t *testing.T) {
	master, slave := openPTY(t)
	cfg := Config{DevicePath: slave, HostPollInterval: 50 * time.Millisecond}.withDefaults()
	tr, err := newPortTransport(cfg, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := tr.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	// The sender bounds each write with a deadline; that needs the port to
	// be in the runtime's poller.
	if dl, ok := conn.(writeDeadliner); !ok {
		t.Errorf("the port's connection %T has no SetWriteDeadline", conn)
	} else if err := dl.SetWriteDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Errorf("SetWriteDeadline on the port: %v", err)
	}
	if _, err := conn.Write([]byte("\n{\"seq\":1}\n")); err != nil {
		t.Fatal(err)
	}
	master.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	var got []byte
	for len(got) < 11 {
		n, err := master.Read(buf)
		if err != nil {
			t.Fatalf("host read: %v (got %q)", err, got)
		}
		got = append(got, buf[:n]...)
	}
	if string(got) != "\n{\"seq\":1}\n" {
		t.Errorf("host read %q", got)
	}

	if _, err := master.Write([]byte("ack\n")); err != nil {
		t.Fatal(err)
	}
	gotAck := make(chan error, 1)
	hangupErr := make(chan error, 1)
	go func() {
		b := make([]byte, 16)
		n, err := io.ReadAtLeast(conn, b, 4)
		if err == nil && string(b[:n]) != "ack\n" {
			err = fmt.Errorf("agent read %q", b[:n])
		}
		gotAck <- err
		if err != nil {
			return
		}
		_, err = conn.Read(b)
		hangupErr <- err
	}()
	select {
	case err := <-gotAck:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the agent side did not receive the host's line")
	}
	master.Close()
	select {
	case err := <-hangupErr:
		if err == nil {
			t.Error("a read after the host hung up succeeded, want an error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a read did not end when the host side hung up")
	}
}

func TestPortTransportGivesUpWhenCancelled(t *testing.T) {
	cfg := Config{DevicePath: filepath.Join(t.TempDir(), "vport9p9")}.withDefaults()
	tr, err := newPortTransport(cfg, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := tr.Connect(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Connect to a missing port = %v, want the context's deadline error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Connect took %v to notice the cancellation", d)
	}
}

func TestPortRefusesRegularFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "not-a-port")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	p := &virtioPort{cfg: Config{DevicePath: path}, logger: discardLogger()}
	if f, err := p.open(); err == nil {
		f.Close()
		t.Error("open of a regular file succeeded, want an error")
	}
}

// absentHost plays a host that is not there for a virtioPort: until
// arrive is called its polls report POLLHUP, as a virtio-serial port does
// while no host side is connected; then they poll the file for real.
type absentHost struct {
	mu      sync.Mutex
	here    bool
	polls   int
	files   []*os.File  // each file polled, in the order first seen
	first   []time.Time // when each was first and last polled
	last    []time.Time
	reopens chan struct{} // receives when a new file is first polled
}

func (h *absentHost) poll(f *os.File, timeout time.Duration) (int16, error) {
	h.mu.Lock()
	if h.here {
		h.mu.Unlock()
		return pollWritable(f, timeout)
	}
	defer h.mu.Unlock()
	h.polls++
	now := time.Now()
	if len(h.files) == 0 || h.files[len(h.files)-1] != f {
		h.files = append(h.files, f)
		h.first = append(h.first, now)
		h.last = append(h.last, now)
		select {
		case h.reopens <- struct{}{}:
		default:
		}
	}
	h.last[len(h.last)-1] = now
	return unix.POLLHUP, nil
}

func TestPortTransportWaitsForAbsentHostWithoutSpinning(t *testing.T) {
	const (
		interval = 10 * time.Millisecond
		reopen   = 100 * time.Millisecond
	)
	master, slave := openPTY(t)
	sp := openTestSpool(t, t.TempDir(), 1<<20)
	mustAppend(t, sp, "A", 1, 80)
	mustAppend(t, sp, "A", 2, 80)

	host := &absentHost{reopens: make(chan struct{}, 1)}
	cfg := Config{DevicePath: slave, HostPollInterval: interval}.withDefaults()
	tr := &virtioPort{cfg: cfg, logger: discardLogger(), poll: host.poll, reopen: reopen}
	start := time.Now()
	runSenderOn(t, sp, tr, cfg)

	// Wait through two reopens: the port is opened a third time.
	deadline := time.After(10 * time.Second)
	for opened := 0; opened < 3; opened++ {
		select {
		case <-host.reopens:
		case <-deadline:
			t.Fatalf("the port was opened %d times in 10s while the host was absent, want 3 (it reopens every %v)", opened, reopen)
		}
	}
	host.mu.Lock()
	elapsed := time.Since(start)
	opened := len(host.files)
	// One poll per interval slept, and one more for each file opened.
	if limit := int(elapsed/interval) + opened + 1; host.polls > limit {
		t.Errorf("%d polls in %v while the host was absent, want at most %d (one per %v)", host.polls, elapsed, limit, interval)
	}
	for i := range opened - 1 {
		// The last poll may come just before the deadline is checked.
		if d := host.last[i].Sub(host.first[i]); d < reopen-interval {
			t.Errorf("port opening %d was given up after %v, want it kept for %v", i+1, d, reopen)
		}
	}
	host.here = true
	host.mu.Unlock()

	// The host is there: the agent connects and sends.
	master.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(master)
	var got []string
	for range 4 {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("host read: %v (got %q, then %q)", err, got, l)
		}
		got = append(got, l)
	}
	if got[0] != "\n" {
		t.Errorf("first line from the agent = %q, want a lone newline", got[0])
	}
	if !strings.Contains(got[1], `"kind":"resume"`) {
		t.Errorf("second line from the agent = %q, want its resume", got[1])
	}
	for i, l := range got[2:] {
		if want := string(testLine("A", uint64(i+1), 80)); l != want {
			t.Errorf("line %d from the agent = %q, want %q", i+3, l, want)
		}
	}
}
