package hostrelay

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/guestdiag/guestdiag/internal/natstest"
)

// dialChannel plays QEMU with a chardev socket,server=off: it connects to
// the relay's socket, retrying until the relay listens.
func dialChannel(t *testing.T, path string) *fakeGuest {
	t.Helper()
	var conn *net.UnixConn
	eventually(t, "the relay to listen on "+path, func() bool {
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
		conn = c
		return err == nil
	})
	t.Cleanup(func() { conn.Close() })
	g := newFakeGuest(conn)
	g.send(t, []byte("\n"))
	return g
}

func TestRelayListensForQEMUInListenMode(t *testing.T) {
	srv := natstest.Start(t)
	dir := socketDir(t)
	path := filepath.Join(dir, "web01.sock")
	// A socket left by a relay that was killed does not stop the next one.
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()

	cfg := testConfig(dir)
	cfg.Globs = []string{}
	cfg.Static = []Channel{{Name: "web01", Path: path, Listen: true}}
	log, _ := newTestLogger(t)
	_, js := startRelay(t, srv, cfg, log)

	g := dialChannel(t, path)
	g.send(t, helloLine(t, "r1", 1, "web01"), resultLine(t, "r1", 2, "resources"))
	g.mustAck(t, "r1", 2)
	// QEMU reconnects after a VM reboot; the relay takes the new connection.
	g.conn.Close()
	g2 := dialChannel(t, path)
	g2.send(t, resultLine(t, "r1", 3, "resources"))
	g2.mustAck(t, "r1", 3)
	checkStreamHolds(t, js, "hv1:web01", "r1", 3)
}

func TestListenUnixLeavesAFileThatIsNotASocket(t *testing.T) {
	path := filepath.Join(socketDir(t), "precious")
	if err := os.WriteFile(path, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := listenUnix(path); err == nil {
		t.Fatal("listenUnix replaced a regular file")
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "data" {
		t.Errorf("the file now holds %q (%v), want it untouched", b, err)
	}
}
