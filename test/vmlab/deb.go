//go:build linux

package vmlab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// Deb describes a Debian binary package for BuildDeb.
type Deb struct {
	Package     string
	Version     string
	Arch        string // default "all"
	Description string
	Files       []File // GuestPath is where dpkg installs it
	// Postinst and Prerm are maintainer scripts (a shebang line first);
	// empty means none.
	Postinst string
	Prerm    string
}

// BuildDeb builds d with dpkg-deb --build into dst.
func BuildDeb(ctx context.Context, dst string, d Deb) error {
	if d.Arch == "" {
		d.Arch = "all"
	}
	dir, err := os.MkdirTemp(filepath.Dir(dst), "deb")
	if err != nil {
		return fmt.Errorf("deb %s: %w", d.Package, err)
	}
	defer os.RemoveAll(dir)
	for _, f := range d.Files {
		if _, err := copyInto(filepath.Join(dir, filepath.Clean("/"+f.GuestPath)), f); err != nil {
			return fmt.Errorf("deb %s: %s: %w", d.Package, f.GuestPath, err)
		}
	}
	control := fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: %s\nMaintainer: guestdiag vmlab <vmlab@localhost>\nSection: admin\nPriority: optional\nDescription: %s\n",
		d.Package, d.Version, d.Arch, d.Description)
	if err := os.MkdirAll(filepath.Join(dir, "DEBIAN"), 0o755); err != nil {
		return fmt.Errorf("deb %s: %w", d.Package, err)
	}
	scripts := map[string]string{"control": control, "postinst": d.Postinst, "prerm": d.Prerm}
	for name, body := range scripts {
		if body == "" {
			continue
		}
		mode := os.FileMode(0o755)
		if name == "control" {
			mode = 0o644
		}
		if err := os.WriteFile(filepath.Join(dir, "DEBIAN", name), []byte(body), mode); err != nil {
			return fmt.Errorf("deb %s: %w", d.Package, err)
		}
	}
	if _, err := runTool(ctx, "", "dpkg-deb", "--root-owner-group", "--build", dir, dst); err != nil {
		return fmt.Errorf("deb %s: %w", d.Package, err)
	}
	return nil
}
