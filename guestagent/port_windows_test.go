package guestagent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
)

// These tests run where Windows named pipes exist: on Windows, and under
// Wine through test/wine (TestIntegrationWineGuestagentPort). A named pipe
// stands in for the virtio-serial device: both are opened with CreateFile
// and read and written with overlapped I/O; what a pipe cannot show is
// vioserial's HostConnected answer, which the pipe lacks (it counts as
// connected once open).

var pipeSeq atomic.Int64

// pipeServer creates a named pipe with small buffers and returns its name
// and a function that waits for the client and returns the server's end.
func pipeServer(t *testing.T) (string, func() *os.File) {
	t.Helper()
	name := fmt.Sprintf(`\\.\pipe\guestdiag-test-%d-%d`, os.Getpid(), pipeSeq.Add(1))
	u16, _ := windows.UTF16PtrFromString(name)
	h, err := windows.CreateNamedPipe(u16, windows.PIPE_ACCESS_DUPLEX,
		windows.PIPE_TYPE_BYTE|windows.PIPE_READMODE_BYTE|windows.PIPE_WAIT, 1, 512, 512, 0, nil)
	if err != nil {
		t.Fatalf("create pipe %s: %v", name, err)
	}
	f := os.NewFile(uintptr(h), name)
	t.Cleanup(func() { f.Close() })
	return name, func() *os.File {
		// ERROR_PIPE_CONNECTED: the client came first; ERROR_NO_DATA: it
		// came and already left, as a test that closes at once may.
		err := windows.ConnectNamedPipe(h, nil)
		if err != nil && err != windows.ERROR_PIPE_CONNECTED && err != windows.ERROR_NO_DATA {
			t.Errorf("connect pipe: %v", err)
		}
		return f
	}
}

func connectPipe(t *testing.T, name string) io.ReadWriteCloser {
	t.Helper()
	tr, _ := newPortTransport(Config{DevicePath: name, HostPollInterval: 20 * time.Millisecond}.withDefaults(), discardLogger())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := tr.Connect(ctx)
	if err != nil {
		t.Fatalf("connect %s: %v", name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestWinPortCarriesBytesBothWays(t *testing.T) {
	name, accept := pipeServer(t)
	served := make(chan *os.File, 1)
	go func() { served <- accept() }()
	c := connectPipe(t, name)
	srv := <-served

	if _, err := c.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(srv, buf); err != nil || string(buf) != "hello\n" {
		t.Fatalf("server read %q, %v; want hello", buf, err)
	}
	// More than one overlapped write's worth, through a 512-byte pipe.
	big := make([]byte, 100<<10)
	for i := range big {
		big[i] = byte('a' + i%26)
	}
	go srv.Write(big)
	got := make([]byte, len(big))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != string(big) {
		t.Fatalf("agent read %d bytes, %v; want the %d sent", len(got), err, len(big))
	}
}

func TestWinPortReadsEOFWhenTheHostLeaves(t *testing.T) {
	name, accept := pipeServer(t)
	served := make(chan *os.File, 1)
	go func() { served <- accept() }()
	c := connectPipe(t, name)
	(<-served).Close()
	if _, err := c.Read(make([]byte, 10)); err != io.EOF {
		t.Fatalf("read after the server closed: %v, want io.EOF", err)
	}
}

func TestWinPortCloseEndsAPendingRead(t *testing.T) {
	name, accept := pipeServer(t)
	go accept()
	c := connectPipe(t, name)
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 10))
		done <- err
	}()
	// The read must be pending for Close to have to cancel it: the kernel
	// marks its OVERLAPPED STATUS_PENDING once it is issued.
	oc := c.(*overlappedConn)
	deadline := time.Now().Add(10 * time.Second)
	for atomic.LoadUintptr(&oc.rd.ov.Internal) != uintptr(windows.STATUS_PENDING) {
		if time.Now().After(deadline) {
			t.Fatal("the read was never pending")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Fatalf("pending read ended with %v, want os.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end the pending read (CancelIoEx)")
	}
}

func TestWinPortWriteDeadlineEndsAWriteNobodyReads(t *testing.T) {
	name, accept := pipeServer(t)
	go accept()
	c := connectPipe(t, name)
	if err := c.(writeDeadliner).SetWriteDeadline(time.Now().Add(300 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := c.Write(make([]byte, 1<<20))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write into a full pipe: %v, want os.ErrDeadlineExceeded", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("write took %v to give up, deadline was 300ms", took)
	}
}

func TestWinPortConnectRetriesUntilThePortAppears(t *testing.T) {
	name := fmt.Sprintf(`\\.\pipe\guestdiag-test-late-%d`, os.Getpid())
	tr, _ := newPortTransport(Config{DevicePath: name, HostPollInterval: 20 * time.Millisecond}.withDefaults(), discardLogger())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	connected := make(chan error, 1)
	go func() {
		c, err := tr.Connect(ctx)
		if err == nil {
			c.Close()
		}
		connected <- err
	}()
	select {
	case err := <-connected:
		t.Fatalf("Connect returned %v before the pipe existed", err)
	case <-time.After(500 * time.Millisecond):
	}
	u16, _ := windows.UTF16PtrFromString(name)
	h, err := windows.CreateNamedPipe(u16, windows.PIPE_ACCESS_DUPLEX, windows.PIPE_TYPE_BYTE|windows.PIPE_WAIT, 1, 512, 512, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer windows.CloseHandle(h)
	go windows.ConnectNamedPipe(h, nil)
	if err := <-connected; err != nil {
		t.Fatalf("Connect after the pipe appeared: %v", err)
	}
}

func TestWinPortConnectEndsWithItsContext(t *testing.T) {
	tr, _ := newPortTransport(Config{DevicePath: `\\.\pipe\guestdiag-test-never`}.withDefaults(), discardLogger())
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := tr.Connect(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Connect with no port: %v, want the context's deadline", err)
	}
}

func TestWinPortDefaultPathIsTheGlobalPortName(t *testing.T) {
	p := &winPort{cfg: DefaultConfig()}
	if got, want := p.path(), `\\.\Global\org.guestdiag.agent.0`; got != want {
		t.Errorf("path = %s, want %s", got, want)
	}
}

func TestWinPortTakesAHandleWithoutPortInformationAsConnected(t *testing.T) {
	name, accept := pipeServer(t)
	go accept()
	c := connectPipe(t, name).(*overlappedConn)
	// What the pipe answers vioserial's IOCTL_GET_INFORMATION with: one of
	// the "not this device's call" errors that hostConnected accepts.
	ok, err := c.start(&c.rd, func(ov *windows.Overlapped) error {
		return windows.DeviceIoControl(c.h, ioctlGetInformation, nil, 0,
			(*byte)(unsafe.Pointer(&c.info)), uint32(unsafe.Sizeof(c.info)), nil, ov)
	})
	if ok {
		_, err = c.finish(&c.rd, time.Now().Add(5*time.Second))
	}
	t.Logf("a named pipe answers IOCTL_GET_INFORMATION with: %v (%#x)", err, uint32(errnoOf(err)))
	if !errors.Is(err, windows.ERROR_INVALID_FUNCTION) && !errors.Is(err, windows.ERROR_NOT_SUPPORTED) {
		t.Errorf("IOCTL_GET_INFORMATION on a pipe: %v, want one of the errors hostConnected takes as no port information", err)
	}
	if up, err := hostConnected(c); !up || err != nil {
		t.Errorf("hostConnected(pipe) = %v, %v; want true", up, err)
	}
}

func errnoOf(err error) windows.Errno {
	var e windows.Errno
	errors.As(err, &e)
	return e
}
