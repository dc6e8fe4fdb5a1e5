// Package kmsg parses the records of the kernel's /dev/kmsg, which the
// logs check follows for error lines and the processes check for OOM kills.
// Linux only in practice, but it is pure parsing and builds everywhere.
package kmsg
