package hostrelay

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"

	"github.com/guestdiag/guestdiag/internal/pause"
)

// listenOn serves a channel in listen mode: the relay owns the socket and
// QEMU connects to it (a chardev socket with server=off and reconnect=N),
// so a relay restart never needs QEMU to listen again. One connection is
// served at a time; QEMU's next attempt waits in the backlog.
func (r *Relay) listenOn(ctx context.Context, ch Channel) {
	book := newRunBook(r.cfg.LegacyGapWait)
	for ctx.Err() == nil {
		ln, err := listenUnix(ch.Path)
		if err != nil {
			r.log.Warn("channel_listen_failed", "vm", ch.Name, "channel", ch.Path, "err", err)
			if pause.For(ctx, r.cfg.BackoffMax) != nil {
				return
			}
			continue
		}
		stop := context.AfterFunc(ctx, func() { ln.Close() })
		r.log.Info("channel_listening", "vm", ch.Name, "channel", ch.Path)
		for {
			conn, err := ln.Accept()
			if err != nil {
				break
			}
			end := r.serve(ctx, conn, ch, book)
			if end.throttled && pause.For(ctx, r.vm(ch.Name).refillDelay()) != nil {
				break
			}
		}
		stop()
		ln.Close()
	}
	_ = os.Remove(ch.Path)
}

// listenUnix listens on path, first removing a socket a previous relay left
// there. Anything else at path is left alone and reported.
func listenUnix(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	// Closing removes the socket file too; the next listen makes it again.
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	return ln, nil
}
