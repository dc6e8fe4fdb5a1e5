// Package processes is the guest agent's processes check: processes hung
// in uninterruptible sleep (D), stopped (T) or left as zombies (Z), failed
// or stuck services, and optional liveness probes. It registers itself as
// "processes".
//
// OS scope: on Linux it reads /proc/<pid>/stat of every process (and wchan,
// cmdline and context switches of those in D, T or Z) and asks systemd
// over D-Bus for failed and watched units; on Windows, which has no such
// process states, it asks the service control manager about the watched
// services only; elsewhere every run is unknown. Probes run everywhere.
package processes
