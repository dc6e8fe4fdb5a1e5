// Package logs is the guest agent's logs check: it follows the system's
// logs from a saved position and reports new errors and critical entries,
// grouped and bounded. It registers itself as "logs".
//
// OS scope: on Linux it reads the systemd journal (through journalctl),
// the kernel's /dev/kmsg, and syslog files; on Windows it subscribes to
// the event log through wevtapi; elsewhere it follows only configured
// files.
package logs
