// Package qmp is a small client for QEMU's machine protocol: JSON objects,
// one per line, on a unix socket. It reads the greeting, enters command
// mode, runs one command at a time and hands over the asynchronous events
// QEMU sends. Lines are bounded: QMP is host-side, but a relay must not
// grow without limit on anyone's output. It builds on every GOOS.
package qmp
