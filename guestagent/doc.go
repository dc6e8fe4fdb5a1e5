// Package guestagent is the guestdiag agent that runs inside a guest: it runs
// the checks of package checks on their intervals, sends a hello and
// heartbeats, and writes every message through an on-disk spool to the host
// over a virtio-serial port, keeping each message until the host's
// cumulative ack covers it.
//
// The virtio-serial transport exists on Linux and Windows; on other systems
// Run fails with an error wrapping errors.ErrUnsupported unless
// Config.Transport supplies one. The package builds on every GOOS and never
// imports NATS or HTTP code.
package guestagent
