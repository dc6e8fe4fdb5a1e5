// Package hostrelay is the host side of guestdiag: it finds the virtio-serial
// channels of the VMs on a hypervisor host, reads the guest agents' lines,
// validates and stamps them with the host-side identity of the channel they
// arrived on, publishes them to JetStream and acknowledges each message to
// the guest only after JetStream has stored it. Acks are cumulative, so a
// run is acknowledged only as far as its seqs follow on without a hole.
//
// Channels are unix sockets that QEMU listens on (libvirt's default); the
// relay is the client. The package builds on every GOOS; it is meant for
// Linux hosts.
package hostrelay
