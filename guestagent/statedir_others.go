//go:build !windows

package guestagent

func defaultStateDir() string { return "/var/lib/guestdiag" }

// DefaultConfigFile is read when --config is not given; its absence is not
// an error.
const DefaultConfigFile = "/etc/guestdiag/agent.yaml"

// vsock is Linux only (AF_VSOCK through mdlayher/vsock); other Unix
// systems are not built for, but keep to the same rule.
func defaultTransports() []string {
	return []string{TransportVirtioSerial, TransportVsock}
}
