// Command standin is test equipment for the Wine tests, never shipped: a
// named-pipe server standing in for the host side of the agent's
// virtio-serial port, which cannot exist under Wine. It serves one client
// on the pipe, prints every line the client sends to stdout, fails on a line
// the protocol refuses, and with -ack answers each with the protocol's
// cumulative ack.
package main
