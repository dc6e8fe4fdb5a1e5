package guestagent

import (
	"os"
	"path/filepath"
)

func defaultStateDir() string {
	base := os.Getenv("ProgramData")
	if base == "" {
		base = `C:\ProgramData`
	}
	return filepath.Join(base, "guestdiag")
}

// DefaultConfigFile is read when --config is not given; its absence is not
// an error.
var DefaultConfigFile = filepath.Join(defaultStateDir(), "agent.yaml")

// LegacyConfigFile is read in its place when only it exists: the JSON file
// of earlier versions, which reads as YAML.
var LegacyConfigFile = filepath.Join(defaultStateDir(), "agent.json")

// mdlayher/vsock is Linux only, so Windows has virtio-serial alone.
func defaultTransports() []string { return []string{TransportVirtioSerial} }
