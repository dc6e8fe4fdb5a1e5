package hostrelay

import (
	"fmt"
	"unicode/utf8"
)

// maxSocketPath is the longest path a unix socket can be connected to by
// name on Linux: sun_path holds 108 bytes, the last one the terminating NUL.
const maxSocketPath = 107

// checkVMName refuses a VM name that cannot be carried without loss. The
// relay's envelope and channel events are JSON, whose strings are UTF-8:
// encoding would turn each invalid byte into U+FFFD, so "bad\xffname" and
// "bad\xfename" would reach the collector as one VM. Carrying the raw bytes
// in another field would leave every consumer to choose which of the two
// names is the VM's, and no hypervisor we relay for writes such names, so
// they are refused instead.
func checkVMName(name string) error {
	if name == "" {
		return fmt.Errorf("empty VM name")
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("VM name %q is not valid UTF-8: JSON would merge it with other names", name)
	}
	return nil
}

// checkSocketPath refuses a channel path too long to connect to, which
// would otherwise fail at every attempt with nothing but EINVAL.
func checkSocketPath(path string) error {
	if len(path) > maxSocketPath {
		return fmt.Errorf("socket path is %d bytes, over the %d a unix socket address holds", len(path), maxSocketPath)
	}
	return nil
}
