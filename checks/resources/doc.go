// Package resources is the guest agent's resources check: CPU, steal,
// memory, swap, load, disk space and inodes against thresholds, with the
// processes that use the most CPU and memory and, on Linux, pressure
// stall information. It registers itself as "resources".
//
// OS scope: it reads through gopsutil everywhere it builds; on Linux the
// per-process sample and PSI come from /proc (or gopsutil's HOST_PROC and
// HOST_ETC roots), on Windows from NtQuerySystemInformation; elsewhere
// the per-process sample is unknown.
package resources
