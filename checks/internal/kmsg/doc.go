// Package kmsg parses the records of the kernel's /dev/kmsg, which the
// logs check follows for error lines and the processes check for OOM kills.
// The parser is pure and builds everywhere; Reader (Linux) waits for
// records in the Go runtime's poller, so an idle follower wakes nothing.
package kmsg
