package hostrelay

import (
	"os"
	"path/filepath"
	"strings"
)

// globFiles returns what filepath.Glob(pattern) returns, more cheaply for
// the common shape of a channel glob, a wildcard folder and a fixed file
// name (/run/libvirt/qemu/channel/*/org.guestdiag.0): filepath.Glob opens
// and lists every matching folder to find one name in it, five system calls
// a folder, where one lstat of the joined path gives the same answer. With
// 1,000 channels rescanned every 2 s the listing was a sixth of the relay's
// CPU time.
func globFiles(pattern string) ([]string, error) {
	dir, file := filepath.Split(pattern)
	if file == "" || hasGlobMeta(file) || !hasGlobMeta(dir) {
		return filepath.Glob(pattern)
	}
	dirs, err := filepath.Glob(filepath.Clean(dir))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, d := range dirs {
		p := filepath.Join(d, file)
		if _, err := os.Lstat(p); err == nil {
			out = append(out, p)
		}
	}
	return out, nil
}

// hasGlobMeta is filepath's own test for a pattern character.
func hasGlobMeta(s string) bool { return strings.ContainsAny(s, `*?[\`) }
