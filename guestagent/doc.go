// Package guestagent is the guestdiag agent that runs inside a guest: it runs
// the checks of package checks on their intervals, sends a hello and
// heartbeats, and writes every message through an on-disk spool, bounded by
// bytes and by age, to the host, keeping each message until the host's
// cumulative ack covers it. Transports (virtio-serial, AF_VSOCK) are tried
// in a configured order of preference, one active at a time.
//
// virtio-serial and vsock exist on Linux; on Windows the virtio-serial
// transport is the only one, and without it Run fails with an error
// wrapping errors.ErrUnsupported unless Config.Transport supplies one. The
// package builds on every GOOS and never imports NATS or HTTP code.
package guestagent
