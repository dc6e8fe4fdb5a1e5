// Package checks holds the guest agent's diagnostic checks and the registry
// they join. Each check lives in its own file and registers itself with a
// name, whether it runs by default, and its default interval; OS-specific
// gathering stays small and unexported so that the evaluation logic can be
// tested against fixtures on any OS.
//
// Checks only read the system. They never change it.
package checks
