package guestagent

import (
	"os"
	"path/filepath"

	"golang.org/x/sys/windows"
)

// defaultStateDir is ProgramData\guestdiag, where the MSI puts the config
// (its CommonAppDataFolder). The known folder comes first: a service's
// %ProgramData% need not agree with it (under Wine 8 it is
// C:\users\Public while the folder is C:\ProgramData).
func defaultStateDir() string {
	base, err := windows.KnownFolderPath(windows.FOLDERID_ProgramData, 0)
	if err != nil || base == "" {
		base = os.Getenv("ProgramData")
	}
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
