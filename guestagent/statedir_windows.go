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

// mdlayher/vsock is Linux only, so Windows has virtio-serial alone.
func defaultTransports() []string { return []string{TransportVirtioSerial} }
