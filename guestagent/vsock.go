package guestagent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"

	"github.com/mdlayher/vsock"
)

// vsockTransport connects to the host over AF_VSOCK: the guest dials CID
// 2, the host, at the configured port, and the host side listens there
// (QEMU's vhost-vsock-pci device; the relay or socat on the host). The
// stream ends when the host closes it.
type vsockTransport struct {
	cid, port uint32
	logger    *slog.Logger
	// dial is vsock.DialContext; tests give it a stand-in.
	dial func(ctx context.Context, cid, port uint32) (net.Conn, error)
}

func newVsockTransport(cfg Config, logger *slog.Logger) *vsockTransport {
	return &vsockTransport{cid: cfg.VsockCID, port: cfg.VsockPort, logger: logger, dial: dialVsock}
}

func dialVsock(ctx context.Context, cid, port uint32) (net.Conn, error) {
	return vsock.DialContext(ctx, cid, port, nil)
}

// Connect dials once. A refused or failed dial returns at once, so that
// the selector moves on to the next transport instead of waiting out
// fallback_after on a host side that is not listening, and paces retries.
func (v *vsockTransport) Connect(ctx context.Context) (io.ReadWriteCloser, error) {
	c, err := v.dial(ctx, v.cid, v.port)
	if err != nil {
		return nil, fmt.Errorf("vsock %d:%d: %w", v.cid, v.port, err)
	}
	v.logger.Info("host_connected", "cid", v.cid, "port", v.port)
	return c, nil
}
