// Package checks is what the guest agent's diagnostic checks share: the
// Check interface and its Result, the registry they join with Register,
// the Runner that runs one on its interval and on its Watcher's triggers,
// and the State that keeps its snapshots across restarts. The checks
// themselves live in the packages under it (checks/network,
// checks/processes, ...), and checks/all links in all six.
//
// Checks only read the system. They never change it.
package checks
