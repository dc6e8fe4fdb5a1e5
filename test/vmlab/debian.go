//go:build linux

package vmlab

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// DebianImageScript builds the lab's Debian guest; the cache is keyed by a
// hash of its contents.
const DebianImageScript = "scripts/vmlab-debian-image.sh"

// GuestAgentChannelName is the port qemu-guest-agent's udev rule and unit
// wait for, as libvirt names it.
const GuestAgentChannelName = "org.qemu.guest_agent.0"

// PayloadLabel is the ext4 label of the disk whose boot.sh the image's
// vmlab-payload.service runs at every boot, mounted read-only at
// PayloadMount.
const (
	PayloadLabel = "VMLAB"
	PayloadMount = "/run/vmlab"
)

// DebianImage is a built Debian bookworm guest: a raw ext4 root disk and
// the kernel and initrd that boot it. Never boot Disk itself; boot an
// Overlay of it so the cached image stays as built.
type DebianImage struct {
	Dir     string
	Disk    string
	Vmlinuz string
	Initrd  string
	// Built is how long building took, zero when it came from the cache.
	Built time.Duration
}

// DebianPrerequisites reports the host tools the Debian guest needs beyond
// Prerequisites. The error wraps ErrMissingPrerequisite.
func DebianPrerequisites() error {
	var missing []string
	for tool, pkg := range map[string]string{"mmdebstrap": "mmdebstrap", "mkfs.ext4": "e2fsprogs", "qemu-img": "qemu-utils", "dpkg-deb": "dpkg"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool+" (Debian package "+pkg+")")
		}
	}
	if os.Geteuid() != 0 {
		missing = append(missing, "root (mmdebstrap builds the image in root mode)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s; run scripts/deps.sh as root", ErrMissingPrerequisite, strings.Join(missing, ", "))
	}
	return nil
}

// EnsureDebianImage returns the Debian guest built by DebianImageScript
// under cacheDir (DefaultCacheDir when empty), building it first when no
// image for the script's current contents exists.
func EnsureDebianImage(ctx context.Context, cacheDir string) (DebianImage, error) {
	if cacheDir == "" {
		dir, err := DefaultCacheDir()
		if err != nil {
			return DebianImage{}, err
		}
		cacheDir = dir
	}
	root, err := moduleRoot(ctx)
	if err != nil {
		return DebianImage{}, err
	}
	script := filepath.Join(root, DebianImageScript)
	recipe, err := os.ReadFile(script)
	if err != nil {
		return DebianImage{}, fmt.Errorf("debian image recipe: %w", err)
	}
	sum := sha256.Sum256(recipe)
	dir := filepath.Join(cacheDir, "debian-bookworm-"+hex.EncodeToString(sum[:6]))
	img := DebianImage{Dir: dir, Disk: filepath.Join(dir, "disk.raw"), Vmlinuz: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd.img")}
	// The script moves disk.raw into place last.
	if _, err := os.Stat(img.Disk); err == nil {
		return img, nil
	}
	if err := DebianPrerequisites(); err != nil {
		return DebianImage{}, err
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return DebianImage{}, fmt.Errorf("debian image cache: %w", err)
	}
	start := time.Now()
	cmd := exec.CommandContext(ctx, "bash", script, dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return DebianImage{}, fmt.Errorf("build debian image with %s: %w\n%s", DebianImageScript, err, tail(string(out), 30))
	}
	img.Built = time.Since(start)
	return img, nil
}

// Overlay creates a qcow2 disk at dst whose unwritten blocks come from the
// image's disk, so a guest's writes never reach the cache.
func (img DebianImage) Overlay(ctx context.Context, dst string) error {
	if _, err := runTool(ctx, "", "qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", img.Disk, dst); err != nil {
		return fmt.Errorf("overlay of %s: %w", img.Disk, err)
	}
	return nil
}

// BuildPayload writes an ext4 disk image at dst labelled PayloadLabel that
// holds files (GuestPath relative to PayloadMount) and boot.sh, which the
// image runs with /bin/sh at every boot.
func BuildPayload(ctx context.Context, dst string, bootScript string, files []File) error {
	dir, err := os.MkdirTemp(filepath.Dir(dst), "payload")
	if err != nil {
		return fmt.Errorf("payload: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "boot.sh"), []byte(bootScript), 0o755); err != nil {
		return fmt.Errorf("payload: %w", err)
	}
	var size int64 = 16 << 20 // ext4's own metadata and some slack
	for _, f := range files {
		n, err := copyInto(filepath.Join(dir, filepath.Clean("/"+f.GuestPath)), f)
		if err != nil {
			return fmt.Errorf("payload %s: %w", f.GuestPath, err)
		}
		size += n + 4096
	}
	if _, err := runTool(ctx, "", "mkfs.ext4", "-q", "-F", "-d", dir, "-L", PayloadLabel, dst, fmt.Sprintf("%dK", size/1024)); err != nil {
		return fmt.Errorf("payload: %w", err)
	}
	return nil
}

func copyInto(dst string, f File) (int64, error) {
	src, err := os.Open(f.HostPath)
	if err != nil {
		return 0, err
	}
	defer src.Close()
	info, err := src.Stat()
	if err != nil {
		return 0, err
	}
	mode := f.Mode
	if mode == 0 {
		mode = info.Mode().Perm()
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return 0, err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, src)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// DebianBoot is one boot of a Debian guest.
type DebianBoot struct {
	Name    string
	Disk    string // an Overlay; it keeps what the guest wrote from boot to boot
	Payload string // from BuildPayload
	// ChannelSocket attaches the agent's port, as VMConfig.ChannelSocket.
	ChannelSocket string
	// GuestAgentSocket attaches qemu-guest-agent's port as a listening unix
	// socket, as libvirt does.
	GuestAgentSocket string
	LabPort          bool
	Network          bool
	MemoryMiB        int // default 512
}

// Boot starts QEMU on the image's kernel with b.Disk as the root disk
// (/dev/vda) and the payload as /dev/vdb. Under TCG unless
// GUESTDIAG_VMLAB_KVM=1, since /dev/kvm does not work on the lab machines.
func (img DebianImage) Boot(ctx context.Context, b DebianBoot) (*VM, error) {
	if b.MemoryMiB == 0 {
		b.MemoryMiB = 512
	}
	for _, p := range []string{b.Disk, b.Payload, b.GuestAgentSocket} {
		if strings.Contains(p, ",") {
			return nil, fmt.Errorf("vm %s: path %q contains a comma", b.Name, p)
		}
	}
	extra := []string{
		"-drive", "file=" + b.Disk + ",if=virtio,format=qcow2",
		"-drive", "file=" + b.Payload + ",if=virtio,format=raw,readonly=on",
	}
	if b.GuestAgentSocket != "" {
		if b.ChannelSocket == "" && !b.LabPort {
			return nil, fmt.Errorf("vm %s: the guest agent's port needs the agent's or the lab's port (they bring the virtio-serial bus)", b.Name)
		}
		extra = append(extra,
			"-chardev", "socket,id=qga0,path="+b.GuestAgentSocket+",server=on,wait=off",
			"-device", "virtserialport,bus=vser0.0,chardev=qga0,name="+GuestAgentChannelName,
		)
	}
	return Boot(ctx, VMConfig{
		Name:          b.Name,
		Kernel:        img.Vmlinuz,
		Initrd:        img.Initrd,
		MemoryMiB:     b.MemoryMiB,
		ChannelSocket: b.ChannelSocket,
		LabPort:       b.LabPort,
		Network:       b.Network,
		KVM:           os.Getenv("GUESTDIAG_VMLAB_KVM") == "1",
		Cmdline:       "root=/dev/vda rw",
		ExtraArgs:     extra,
	})
}

// WaitExit waits until QEMU exits by itself, as it does when the guest
// powers off (the lab starts it with -no-reboot).
func (vm *VM) WaitExit(ctx context.Context) error {
	select {
	case <-vm.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("vm %s: still running: %w; last lines: %s", vm.name, ctx.Err(), tail(vm.Console(), 10))
	}
}

// BuildAgentVersion is BuildAgent with the version the binary reports (in
// hello and --version) set to version.
func BuildAgentVersion(ctx context.Context, dst, version string) error {
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	// As Build: static, GOAMD64=v1 for TCG's default CPU.
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", dst,
		"-ldflags", "-s -w -X github.com/guestdiag/guestdiag/internal/version.Version="+version, "./cmd/guestdiag-agent")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOAMD64=v1")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build guestdiag-agent %s: %w\n%s", version, err, out)
	}
	return nil
}
