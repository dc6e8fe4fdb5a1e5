package hostrelay

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// listenVsock listens on a vsock port of the host for connections from any
// guest.
func listenVsock(port uint32) (vsockListener, error) {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("vsock socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_ANY, Port: port}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("vsock bind port %d: %w", port, err)
	}
	if err := unix.Listen(fd, 128); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("vsock listen: %w", err)
	}
	// Non-blocking, so that the runtime's poller waits in Accept and
	// Close ends it.
	return &vsockLn{f: os.NewFile(uintptr(fd), "vsock")}, nil
}

type vsockLn struct{ f *os.File }

func (l *vsockLn) Accept() (net.Conn, uint32, error) {
	rc, err := l.f.SyscallConn()
	if err != nil {
		return nil, 0, err
	}
	var (
		nfd  int
		peer unix.Sockaddr
		aerr error
	)
	err = rc.Read(func(fd uintptr) bool {
		nfd, peer, aerr = unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		return !errors.Is(aerr, syscall.EAGAIN)
	})
	if err == nil {
		err = aerr
	}
	if err != nil {
		return nil, 0, fmt.Errorf("vsock accept: %w", err)
	}
	vm, ok := peer.(*unix.SockaddrVM)
	if !ok {
		unix.Close(nfd)
		return nil, 0, errors.New("vsock accept: peer is not a vsock address")
	}
	return &vsockConn{File: os.NewFile(uintptr(nfd), "vsock-conn"), cid: vm.CID, port: vm.Port}, vm.CID, nil
}

func (l *vsockLn) Close() error { return l.f.Close() }

// vsockConn is a vsock connection as a net.Conn; the net package has no
// vsock support, but an os.File on a non-blocking socket has reads,
// writes and deadlines through the poller.
type vsockConn struct {
	*os.File
	cid, port uint32
}

type vsockAddr struct{ cid, port uint32 }

func (a vsockAddr) Network() string { return "vsock" }
func (a vsockAddr) String() string  { return fmt.Sprintf("%d:%d", a.cid, a.port) }

func (c *vsockConn) LocalAddr() net.Addr  { return vsockAddr{unix.VMADDR_CID_HOST, 0} }
func (c *vsockConn) RemoteAddr() net.Addr { return vsockAddr{c.cid, c.port} }
