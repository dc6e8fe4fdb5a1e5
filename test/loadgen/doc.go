// Package loadgen plays a fleet of VMs' agents through real relays, so that
// the whole pipeline can be loaded at fleet rates. Each VM is a unix socket
// that listens as QEMU's chardev server socket does; what is written on it
// is what the agent writes: a lone newline and a resume on every
// connection, a hello, heartbeats, the six checks' results at their default
// intervals with payloads captured from the real agent, and bursts of log
// findings, resent from the last ack after a reconnect. It is a test tool,
// not shipped in any package.
package loadgen
