//go:build !windows

package guestagent

func defaultStateDir() string { return "/var/lib/guestdiag" }

// DefaultConfigFile is read when --config is not given; its absence is not
// an error.
const DefaultConfigFile = "/etc/guestdiag/agent.yaml"

// LegacyConfigFile is read in its place when only it exists: the JSON file
// of earlier versions, which reads as YAML.
const LegacyConfigFile = "/etc/guestdiag/agent.json"

// vsock is Linux only (AF_VSOCK through mdlayher/vsock); other Unix
// systems are not built for, but keep to the same rule.
func defaultTransports() []string {
	return []string{TransportVirtioSerial, TransportVsock}
}
