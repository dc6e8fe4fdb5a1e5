package guestagent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/guestdiag/guestdiag/internal/pause"
	"golang.org/x/sys/unix"
)

// Intervals of the virtio-serial transport that need no tuning.
const (
	// portRetry paces retries while the port is missing or cannot be opened.
	portRetry = 2 * time.Second
	// reopenAfter makes a long wait for the host start over with a fresh
	// lookup and open, so that a port that was unplugged and plugged again
	// is not waited on through a stale descriptor.
	reopenAfter = 30 * time.Second
)

var errReopen = errors.New("reopen port")

// virtioPort is the transport over a virtio-serial port.
//
// The port is opened non-blocking and handed to the Go runtime's poller, so
// a Read waits without a thread and a Close ends it. Until the host side
// connects, the port reports POLLHUP (level-triggered) and writes would
// fail with EAGAIN, so Connect re-polls every HostPollInterval until POLLHUP
// is gone. Once connected, a Read returns io.EOF when the host disconnects,
// and a Write waits in the poller for room.
type virtioPort struct {
	cfg    Config
	logger *slog.Logger

	// Replaced in tests, which play an absent host through poll.
	poll   func(f *os.File, timeout time.Duration) (revents int16, err error)
	reopen time.Duration
}

func newPortTransport(cfg Config, logger *slog.Logger) (Transport, error) {
	return &virtioPort{cfg: cfg, logger: logger, poll: pollWritable, reopen: reopenAfter}, nil
}

func (p *virtioPort) Connect(ctx context.Context) (io.ReadWriteCloser, error) {
	var lastErr string
	waiting := false
	for {
		f, err := p.open()
		if err == nil {
			if !waiting {
				p.logger.Info("waiting_for_host", "device", f.Name())
				waiting = true
			}
			if err = p.waitHost(ctx, f); err == nil {
				p.logger.Info("host_connected", "device", f.Name())
				return f, nil
			}
			f.Close()
			if errors.Is(err, errReopen) {
				continue
			}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// Say it once per kind of failure, not every retry.
		if msg := err.Error(); msg != lastErr {
			p.logger.Warn("port_unavailable", "err", err, "retry", portRetry)
			lastErr = msg
		}
		if err := pause.For(ctx, portRetry); err != nil {
			return nil, err
		}
	}
}

func (p *virtioPort) open() (*os.File, error) {
	path := p.cfg.DevicePath
	if path == "" {
		var err error
		if path, err = findPort(p.cfg.SysfsRoot, p.cfg.DevRoot, p.cfg.PortName); err != nil {
			return nil, err
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if st, err := f.Stat(); err != nil || st.Mode()&os.ModeCharDevice == 0 {
		f.Close()
		if err == nil {
			err = fmt.Errorf("%s is not a character device", path)
		}
		return nil, err
	}
	return f, nil
}

// waitHost returns nil once the host side of f is connected, errReopen
// after p.reopen has passed without that, or ctx's error. It polls once
// every HostPollInterval: while the host is absent a poll returns at once,
// so the pause between polls is what keeps this from spinning.
func (p *virtioPort) waitHost(ctx context.Context, f *os.File) error {
	deadline := time.Now().Add(p.reopen)
	for {
		revents, err := p.poll(f, p.cfg.HostPollInterval)
		if err != nil {
			return fmt.Errorf("poll %s: %w", f.Name(), err)
		}
		switch {
		case revents&(unix.POLLERR|unix.POLLNVAL) != 0:
			return fmt.Errorf("poll %s: error condition (revents %#x)", f.Name(), revents)
		case revents&unix.POLLHUP == 0:
			return nil
		case time.Now().After(deadline):
			return errReopen
		}
		if err := pause.For(ctx, p.cfg.HostPollInterval); err != nil {
			return err
		}
	}
}

// pollWritable polls f for POLLOUT, waiting up to timeout, and returns the
// events it reports.
func pollWritable(f *os.File, timeout time.Duration) (int16, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var (
		revents int16
		perr    error
	)
	err = rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		for {
			// While connected but full, this waits up to timeout; while
			// disconnected, POLLHUP makes it return at once.
			_, perr = unix.Poll(fds, int(timeout.Milliseconds()))
			if perr != unix.EINTR {
				break
			}
		}
		revents = fds[0].Revents
	})
	if err == nil {
		err = perr
	}
	return revents, err
}
