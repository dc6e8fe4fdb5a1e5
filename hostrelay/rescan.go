package hostrelay

import (
	"path/filepath"
	"slices"
	"strings"
)

// watchDirs lists the folders whose changes may add or remove a channel:
// the fixed part of every glob, the folder of every channel found, and
// where libvirt and Proxmox keep what names a VM. A change in any of them
// triggers a rescan at once instead of at the next tick.
func watchDirs(cfg Config, found map[string]target) []string {
	var dirs []string
	for _, g := range cfg.Globs {
		dirs = append(dirs, literalDir(g))
		// libvirt's folders are domain-*/: the folder matching the
		// pattern's last-but-one element appears first, the socket in it
		// later, so the folders themselves are watched too.
		if parent := filepath.Dir(g); hasMeta(parent) {
			m, _ := filepath.Glob(parent)
			dirs = append(dirs, m...)
		}
	}
	if cfg.ProxmoxGlob != "-" {
		dirs = append(dirs, literalDir(cfg.ProxmoxGlob))
	}
	for p := range found {
		dirs = append(dirs, filepath.Dir(p))
	}
	dirs = append(dirs, cfg.LibvirtRunDir)
	slices.Sort(dirs)
	return slices.Compact(dirs)
}

// literalDir is the longest leading folder of a glob with no pattern in it.
func literalDir(glob string) string {
	d := filepath.Dir(glob)
	for hasMeta(d) {
		d = filepath.Dir(d)
	}
	return d
}

func hasMeta(p string) bool { return strings.ContainsAny(p, `*?[\`) }
