//go:build linux

package vmlab

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ErrMissingPrerequisite marks errors caused by a tool or package that is not
// installed on the host, so tests can tell "cannot run here" from "broken".
var ErrMissingPrerequisite = errors.New("vmlab prerequisite missing")

// KernelMetaPackage is the Debian package whose dependency names the current cloud
// kernel package.
const KernelMetaPackage = "linux-image-cloud-amd64"

// BusyboxPath is where Debian's busybox-static installs its binary.
const BusyboxPath = "/bin/busybox"

const installHint = "apt-get install -y --no-install-recommends qemu-system-x86 busybox-static"

// Kernel is an extracted Debian kernel package.
type Kernel struct {
	Vmlinuz    string // boot/vmlinuz-<version>
	ModulesDir string // lib/modules/<version>/kernel
	Version    string // for example 6.1.0-56-cloud-amd64
}

// DefaultCacheDir is $GUESTDIAG_VMLAB_CACHE, or $HOME/.cache/guestdiag/vmlab.
func DefaultCacheDir() (string, error) {
	if dir := os.Getenv("GUESTDIAG_VMLAB_CACHE"); dir != "" {
		return dir, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("vmlab cache dir: set GUESTDIAG_VMLAB_CACHE: %w", err)
	}
	return filepath.Join(home, ".cache", "guestdiag", "vmlab"), nil
}

// Prerequisites reports every host tool the lab needs that is missing, with the
// command that installs them. The error wraps ErrMissingPrerequisite.
func Prerequisites() error {
	var missing []string
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		missing = append(missing, "qemu-system-x86_64 (Debian package qemu-system-x86)")
	}
	if err := checkStaticBusybox(BusyboxPath); err != nil {
		missing = append(missing, err.Error())
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s; install with: %s", ErrMissingPrerequisite,
			strings.Join(missing, ", "), installHint)
	}
	return nil
}

// checkStaticBusybox rejects the dynamically linked busybox of the plain "busybox"
// package, which lives at the same path but cannot run inside an initramfs without
// its libc.
func checkStaticBusybox(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s (Debian package busybox-static): %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked (install busybox-static instead of busybox)", path)
		}
	}
	return nil
}

// EnsureKernel returns the current Debian cloud kernel, extracted under cacheDir
// (DefaultCacheDir when empty). It downloads and extracts the package only when no
// extraction for the current package name exists yet.
func EnsureKernel(ctx context.Context, cacheDir string) (Kernel, error) {
	if cacheDir == "" {
		dir, err := DefaultCacheDir()
		if err != nil {
			return Kernel{}, err
		}
		cacheDir = dir
	}
	pkg, err := currentKernelPackage(ctx)
	if err != nil {
		return Kernel{}, err
	}
	root := filepath.Join(cacheDir, pkg)
	if _, err := os.Stat(root); err == nil {
		return kernelAt(root)
	}
	if err := fetchKernel(ctx, cacheDir, pkg, root); err != nil {
		return Kernel{}, err
	}
	return kernelAt(root)
}

func currentKernelPackage(ctx context.Context) (string, error) {
	if _, err := exec.LookPath("apt-cache"); err != nil {
		return "", fmt.Errorf("%w: apt-cache not found: the lab needs a Debian host with the package %s available (run apt-get update)",
			ErrMissingPrerequisite, KernelMetaPackage)
	}
	out, err := runTool(ctx, "", "apt-cache", "depends", KernelMetaPackage)
	if err != nil {
		return "", fmt.Errorf("%w: resolve %s (run apt-get update): %w", ErrMissingPrerequisite, KernelMetaPackage, err)
	}
	pkg, err := parseKernelDepends(out)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", KernelMetaPackage, err)
	}
	return pkg, nil
}

// parseKernelDepends picks the linux-image-* dependency out of `apt-cache depends`
// output such as "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-56-cloud-amd64".
func parseKernelDepends(out []byte) (string, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimLeft(strings.TrimSpace(sc.Text()), "|")
		dep, ok := strings.CutPrefix(line, "Depends:")
		if !ok {
			continue
		}
		dep = strings.TrimSpace(dep)
		if strings.HasPrefix(dep, "linux-image-") && !strings.ContainsAny(dep, "<>/ ") {
			return dep, nil
		}
	}
	return "", fmt.Errorf("no linux-image-* dependency in apt-cache output %q", out)
}

// fetchKernel downloads and extracts pkg next to root and renames the result into
// place, so a concurrent or interrupted run never leaves a half-extracted root.
func fetchKernel(ctx context.Context, cacheDir, pkg, root string) error {
	for _, tool := range []string{"apt-get", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%w: %s not found: install the Debian package %s on a Debian host, or unpack it by hand into %s",
				ErrMissingPrerequisite, tool, pkg, root)
		}
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return fmt.Errorf("kernel cache: %w", err)
	}
	tmp, err := os.MkdirTemp(cacheDir, pkg+".tmp")
	if err != nil {
		return fmt.Errorf("kernel cache: %w", err)
	}
	defer os.RemoveAll(tmp)

	if _, err := runTool(ctx, tmp, "apt-get", "download", pkg); err != nil {
		return fmt.Errorf("download %s: %w", pkg, err)
	}
	debs, err := filepath.Glob(filepath.Join(tmp, pkg+"_*.deb"))
	if err != nil || len(debs) != 1 {
		return fmt.Errorf("download %s: want one .deb in %s, found %d", pkg, tmp, len(debs))
	}
	extracted := filepath.Join(tmp, "root")
	if _, err := runTool(ctx, "", "dpkg-deb", "-x", debs[0], extracted); err != nil {
		return fmt.Errorf("extract %s: %w", debs[0], err)
	}
	if _, err := kernelAt(extracted); err != nil {
		return fmt.Errorf("extract %s: %w", pkg, err)
	}
	if err := os.Rename(extracted, root); err != nil {
		// Another process may have published the same package first.
		if _, statErr := os.Stat(root); statErr == nil {
			return nil
		}
		return fmt.Errorf("kernel cache: %w", err)
	}
	return nil
}

// kernelAt finds the kernel image and modules in an extracted package.
func kernelAt(root string) (Kernel, error) {
	mods, err := filepath.Glob(filepath.Join(root, "lib", "modules", "*", "kernel"))
	if err != nil || len(mods) != 1 {
		return Kernel{}, fmt.Errorf("kernel cache %s: want one lib/modules/<version>/kernel, found %d (delete the directory to refetch)", root, len(mods))
	}
	version := filepath.Base(filepath.Dir(mods[0]))
	vmlinuz := filepath.Join(root, "boot", "vmlinuz-"+version)
	if _, err := os.Stat(vmlinuz); err != nil {
		return Kernel{}, fmt.Errorf("kernel cache %s (delete the directory to refetch): %w", root, err)
	}
	return Kernel{Vmlinuz: vmlinuz, ModulesDir: mods[0], Version: version}, nil
}

// runTool runs a host tool and returns its stdout; its stderr goes into the error.
func runTool(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}
