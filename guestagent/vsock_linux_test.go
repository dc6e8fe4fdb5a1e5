package guestagent

import (
	"bufio"
	"os"
	"testing"
	"time"

	"github.com/mdlayher/vsock"
)

// TestIntegrationVsockLoopback runs the vsock transport over real AF_VSOCK
// through the kernel's loopback transport (CID 1), since no host side
// exists in a test. It needs the vsock_loopback module.
func TestIntegrationVsockLoopback(t *testing.T) {
	const port = 46021
	l, err := vsock.ListenContextID(vsock.Local, port, nil)
	if err != nil {
		if os.Getenv("GUESTDIAG_REQUIRE_VSOCK") != "" {
			t.Fatalf("AF_VSOCK loopback: %v", err)
		}
		t.Skipf("AF_VSOCK loopback unavailable (%v): load vsock_loopback (modprobe vsock_loopback) to run this; GUESTDIAG_REQUIRE_VSOCK=1 makes it fail instead", err)
	}
	defer l.Close()
	accepted := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			accepted <- "accept: " + err.Error()
			return
		}
		defer c.Close()
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			line = "read: " + err.Error()
		}
		accepted <- line
	}()
	cfg := Config{VsockPort: port}.withDefaults()
	cfg.VsockCID = vsock.Local
	v := newVsockTransport(cfg, discardLogger())
	ctx := t.Context()
	conn, err := v.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("hello over vsock\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-accepted:
		if got != "hello over vsock\n" {
			t.Errorf("host side got %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the host side got nothing")
	}
}
