//go:build linux

package vmlab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

// StandInAgentDeb describes a package of agentBin with the unit and udev
// rule from packaging/: a stand-in for the package `make packages` builds,
// for use until that exists. Its postinst reloads systemd and udev and
// restarts a running agent on upgrade; it does not enable the unit, so the
// agent starts only when udev sees its port.
func StandInAgentDeb(ctx context.Context, agentBin, version string) (Deb, error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return Deb{}, err
	}
	return Deb{
		Package:     "guestdiag-agent",
		Version:     strings.TrimPrefix(version, "v"),
		Arch:        "amd64",
		Description: "guestdiag agent (vmlab stand-in package)",
		Files: []File{
			{HostPath: agentBin, GuestPath: "/usr/bin/guestdiag-agent", Mode: 0o755},
			{HostPath: filepath.Join(root, "packaging/systemd/guestdiag-agent.service"), GuestPath: "/lib/systemd/system/guestdiag-agent.service", Mode: 0o644},
			{HostPath: filepath.Join(root, "packaging/udev/70-guestdiag.rules"), GuestPath: "/lib/udev/rules.d/70-guestdiag.rules", Mode: 0o644},
		},
		Postinst: `#!/bin/sh
set -e
if [ "$1" = configure ]; then
	systemctl daemon-reload || true
	udevadm control --reload || true
	if [ -n "$2" ]; then
		systemctl try-restart guestdiag-agent.service || true
	fi
fi
`,
		Prerm: `#!/bin/sh
set -e
if [ "$1" = remove ]; then
	systemctl stop guestdiag-agent.service || true
fi
`,
	}, nil
}
