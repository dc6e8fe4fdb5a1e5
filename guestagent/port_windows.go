package guestagent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"

	"github.com/guestdiag/guestdiag/internal/pause"
)

// Intervals of the Windows virtio-serial transport that need no tuning.
const (
	// portRetryMin and portRetryMax bound the backoff between failed
	// opens: the port is missing until the virtio-serial driver is
	// installed, which may be never on a template that lacks it.
	portRetryMin = time.Second
	portRetryMax = 30 * time.Second
	// reopenAfter makes a long wait for the host start over with a fresh
	// open, as on Linux, so a port that was removed and added again (a
	// driver update) is not waited on through a stale handle.
	reopenAfter = 30 * time.Second
)

// ioctlGetInformation is vioserial's IOCTL_GET_INFORMATION:
// CTL_CODE(FILE_DEVICE_UNKNOWN, 0x800, METHOD_OUT_DIRECT, FILE_ANY_ACCESS).
// It answers a VIRTIO_PORT_INFO, whose HostConnected says whether the
// host side of the port is open.
const ioctlGetInformation = 0x22<<16 | 0x800<<2 | 2

// portInfo is the fixed head of VIRTIO_PORT_INFO (UINT Id; BOOLEAN
// OutVqFull, HostConnected, GuestConnected; CHAR Name[]), with room for
// the name the driver appends.
type portInfo struct {
	ID             uint32
	OutVqFull      byte
	HostConnected  byte
	GuestConnected byte
	Name           [256]byte
}

var errReopen = errors.New("reopen port")

// winPort is the transport over a virtio-serial port on Windows, opened as
// \\.\Global\<PortName> (the name vioserial gives the port's symbolic
// link) or Config.DevicePath.
//
// While the host side is closed, vioserial fails reads and writes at once,
// so Connect asks the driver (IOCTL_GET_INFORMATION) every
// HostPollInterval until HostConnected is set. A handle that does not
// answer that IOCTL (a named pipe, which the tests use as a stand-in for
// the device) counts as connected once it is open.
type winPort struct {
	cfg    Config
	logger *slog.Logger
	reopen time.Duration
}

func newPortTransport(cfg Config, logger *slog.Logger) (Transport, error) {
	return &winPort{cfg: cfg, logger: logger, reopen: reopenAfter}, nil
}

func (p *winPort) path() string {
	if p.cfg.DevicePath != "" {
		return p.cfg.DevicePath
	}
	return `\\.\Global\` + p.cfg.PortName
}

func (p *winPort) Connect(ctx context.Context) (io.ReadWriteCloser, error) {
	var lastErr string
	waiting := false
	retry := portRetryMin
	for {
		c, err := p.open()
		if err == nil {
			if !waiting {
				p.logger.Info("waiting_for_host", "device", c.Name())
				waiting = true
			}
			if err = p.waitHost(ctx, c); err == nil {
				p.logger.Info("host_connected", "device", c.Name())
				return c, nil
			}
			c.Close()
			if errors.Is(err, errReopen) {
				retry = portRetryMin
				continue
			}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// Say it once per kind of failure, not every retry.
		if msg := err.Error(); msg != lastErr {
			p.logger.Warn("port_unavailable", "err", err, "retry", retry)
			lastErr = msg
		}
		if err := pause.For(ctx, retry); err != nil {
			return nil, err
		}
		retry = min(retry*2, portRetryMax)
	}
}

func (p *winPort) open() (*overlappedConn, error) {
	name := p.path()
	u16, err := windows.UTF16PtrFromString(name)
	if err != nil {
		return nil, fmt.Errorf("port path %q: %w", name, err)
	}
	// No sharing: one agent talks on a port, and vioserial keeps one
	// guest-side connection per port.
	h, err := windows.CreateFile(u16, windows.GENERIC_READ|windows.GENERIC_WRITE, 0, nil,
		windows.OPEN_EXISTING, windows.FILE_ATTRIBUTE_NORMAL|windows.FILE_FLAG_OVERLAPPED, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	c, err := newOverlappedConn(h, name)
	if err != nil {
		windows.CloseHandle(h)
		return nil, err
	}
	return c, nil
}

// waitHost returns nil once the host side of c is connected, errReopen
// after p.reopen has passed without that, or ctx's error.
func (p *winPort) waitHost(ctx context.Context, c *overlappedConn) error {
	deadline := time.Now().Add(p.reopen)
	for {
		up, err := hostConnected(c)
		switch {
		case err != nil:
			return err
		case up:
			return nil
		case time.Now().After(deadline):
			return errReopen
		}
		if err := pause.For(ctx, p.cfg.HostPollInterval); err != nil {
			return err
		}
	}
}

// hostConnected asks vioserial whether the host side of the port is open.
// A handle whose driver does not know the IOCTL is taken as connected.
func hostConnected(c *overlappedConn) (bool, error) {
	info := &c.info
	c.rd.rw.Lock()
	defer c.rd.rw.Unlock()
	ok, err := c.start(&c.rd, func(ov *windows.Overlapped) error {
		return windows.DeviceIoControl(c.h, ioctlGetInformation, nil, 0,
			(*byte)(unsafe.Pointer(info)), uint32(unsafe.Sizeof(*info)), nil, ov)
	})
	if ok {
		var n uint32
		n, err = c.finish(&c.rd, time.Now().Add(5*time.Second))
		if err == nil && n < 7 {
			return false, fmt.Errorf("port information from %s: %d bytes, want at least 7", c.Name(), n)
		}
	}
	switch {
	case err == nil:
		return info.HostConnected != 0, nil
	case errors.Is(err, windows.ERROR_INVALID_FUNCTION), errors.Is(err, windows.ERROR_NOT_SUPPORTED):
		// Not a vioserial port (Wine's named pipes answer
		// ERROR_NOT_SUPPORTED): it cannot say, so it counts as connected.
		return true, nil
	}
	return false, fmt.Errorf("port information from %s: %w", c.Name(), err)
}
