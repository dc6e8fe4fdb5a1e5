//go:build !windows

package guestagent

func defaultStateDir() string { return "/var/lib/guestdiag" }

// DefaultConfigFile is read when --config is not given; its absence is not
// an error.
const DefaultConfigFile = "/etc/guestdiag/agent.json"
