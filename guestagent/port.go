package guestagent

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ErrPortNotFound means no virtio-serial port has the configured name.
var ErrPortNotFound = errors.New("virtio-serial port not found")

// findPort returns the device path of the virtio-serial port called name.
// sysfs is asked first, because a minimal guest has no udev to create
// /dev/virtio-ports/<name>; that link is the fallback.
func findPort(sysfsRoot, devRoot, name string) (string, error) {
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return "", fmt.Errorf("port name %q: %w", name, ErrPortNotFound)
	}
	files, err := filepath.Glob(filepath.Join(sysfsRoot, "class", "virtio-ports", "*", "name"))
	if err != nil {
		return "", err
	}
	slices.Sort(files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil || string(bytes.TrimSpace(b)) != name {
			continue
		}
		dev := filepath.Join(devRoot, filepath.Base(filepath.Dir(f)))
		if _, err := os.Stat(dev); err != nil {
			return "", fmt.Errorf("port %q is %s in sysfs, but: %w", name, filepath.Base(dev), err)
		}
		return dev, nil
	}
	link := filepath.Join(devRoot, "virtio-ports", name)
	if _, err := os.Stat(link); err == nil {
		return link, nil
	}
	return "", fmt.Errorf("no port named %q under %s or %s: %w",
		name, filepath.Join(sysfsRoot, "class", "virtio-ports"), filepath.Join(devRoot, "virtio-ports"), ErrPortNotFound)
}
