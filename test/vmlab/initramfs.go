//go:build linux

package vmlab

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// InitDoneMarker is the console line the guest's init prints once devices, modules
// and network are set up, just before it runs the payload.
const InitDoneMarker = "vmlab: init done"

// PayloadExitMarker starts the console line "vmlab: payload exit <status>" that init
// prints when the payload commands return.
const PayloadExitMarker = "vmlab: payload exit"

// Guest network addresses on QEMU's user network.
const (
	GuestAddr   = "10.0.2.15"
	GatewayAddr = "10.0.2.2"
	DNSAddr     = "10.0.2.3"
)

// Modules loaded by init, in order, relative to Kernel.ModulesDir and without the
// .ko suffix: virtio-serial first, then virtio-net.
var baseModules = []string{
	"drivers/virtio/virtio_ring",
	"drivers/virtio/virtio",
	"drivers/virtio/virtio_pci_modern_dev",
	"drivers/virtio/virtio_pci_legacy_dev",
	"drivers/virtio/virtio_pci",
	"drivers/char/virtio_console",
	"net/core/failover",
	"drivers/net/net_failover",
	"drivers/net/virtio_net",
}

// InitramfsSpec describes a busybox guest.
type InitramfsSpec struct {
	Kernel Kernel
	// ExtraModules are loaded after the virtio-serial and virtio-net modules, in
	// order; paths are relative to Kernel.ModulesDir without the .ko suffix, for
	// example "net/vmw_vsock/vsock".
	ExtraModules []string
	Files        []File
	Hostname     string
	// Commands run, one per line, in a busybox sh after setup. Their output goes to
	// the console. End a command with & to leave it running in the background.
	Commands []string
	// Busybox defaults to BusyboxPath.
	Busybox string
}

// File is copied from the host into the guest.
type File struct {
	HostPath  string
	GuestPath string      // absolute
	Mode      fs.FileMode // permission bits; zero keeps the host file's
}

var hostnameRE = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$`)

// BuildInitramfs writes a gzip-compressed newc cpio archive to dst. It is written
// directly from Go, so no staging tree and no root privileges (for /dev/console) are
// needed.
func BuildInitramfs(dst string, spec InitramfsSpec) (err error) {
	if !hostnameRE.MatchString(spec.Hostname) {
		return fmt.Errorf("initramfs: hostname %q is not a valid DNS label", spec.Hostname)
	}
	if spec.Kernel.ModulesDir == "" || spec.Kernel.Version == "" {
		return errors.New("initramfs: spec.Kernel is empty, use EnsureKernel")
	}
	busybox := spec.Busybox
	if busybox == "" {
		busybox = BusyboxPath
	}
	if err := checkStaticBusybox(busybox); err != nil {
		return fmt.Errorf("initramfs: %w: %w", ErrMissingPrerequisite, err)
	}

	a := newArchive()
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "run", "root", "var/lib"} {
		a.dir(d)
	}
	a.add(entry{name: "dev/console", mode: modeCharDev | 0o600, rdevMajor: 5, rdevMinor: 1})
	a.add(entry{name: "bin/busybox", mode: modeRegular | 0o755, hostPath: busybox})
	a.add(entry{name: "bin/sh", mode: modeSymlink | 0o777, data: []byte("busybox")})

	guestMods := make([]string, 0, len(baseModules)+len(spec.ExtraModules))
	for _, rel := range slices.Concat(baseModules, spec.ExtraModules) {
		data, err := readModule(spec.Kernel.ModulesDir, rel)
		if err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
		name := path.Join("lib/modules", spec.Kernel.Version, "kernel", rel+".ko")
		a.add(entry{name: name, mode: modeRegular | 0o644, data: data})
		guestMods = append(guestMods, "/"+name)
	}

	for _, f := range spec.Files {
		name, err := guestName(f.GuestPath)
		if err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
		mode := f.Mode.Perm()
		if mode == 0 {
			st, err := os.Stat(f.HostPath)
			if err != nil {
				return fmt.Errorf("initramfs: %w", err)
			}
			mode = st.Mode().Perm()
		}
		a.add(entry{name: name, mode: modeRegular | uint32(mode), hostPath: f.HostPath})
	}

	var payload strings.Builder
	for _, c := range spec.Commands {
		payload.WriteString(c)
		payload.WriteByte('\n')
	}
	a.add(entry{name: "etc/vmlab/payload", mode: modeRegular | 0o755, data: []byte(payload.String())})
	a.add(entry{name: "init", mode: modeRegular | 0o755, data: initScript(spec.Hostname, guestMods)})

	out, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	defer func() {
		if cerr := out.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("initramfs: %w", cerr)
		}
		if err != nil {
			os.Remove(dst)
		}
	}()
	bw := bufio.NewWriterSize(out, 1<<20)
	zw := gzip.NewWriter(bw)
	if err := a.writeTo(zw); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return nil
}

func guestName(p string) (string, error) {
	if !path.IsAbs(p) || path.Clean(p) != p || p == "/" {
		return "", fmt.Errorf("guest path %q must be absolute and clean", p)
	}
	return p[1:], nil
}

// initScript is PID 1. It must never exit: the kernel panics when init dies, and
// with panic=-1 and -no-reboot that stops QEMU, which tests would see as a crash.
func initScript(hostname string, modules []string) []byte {
	var b bytes.Buffer
	b.WriteString(`#!/bin/busybox sh
/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mkdir -p /var/lib/guestdiag
`)
	for _, m := range modules {
		fmt.Fprintf(&b, "insmod %s || echo 'vmlab: insmod %s failed'\n", m, path.Base(m))
	}
	fmt.Fprintf(&b, `ip link set lo up
hostname %s
if [ -e /sys/class/net/eth0 ]; then
	ip link set eth0 up
	ip addr add %s/24 dev eth0
	ip route add default via %s
	# Packets sent before the kernel's link watcher marks eth0 up are dropped.
	i=0
	while [ "$(cat /sys/class/net/eth0/operstate)" != up ] && [ $i -lt 100 ]; do
		sleep 0.05
		i=$((i+1))
	done
	[ "$(cat /sys/class/net/eth0/operstate)" = up ] || echo 'vmlab: eth0 did not come up'
fi
echo '%s'
sh /etc/vmlab/payload
echo "%s $?"
while :; do sleep 3600; done
`, hostname, GuestAddr, GatewayAddr, InitDoneMarker, PayloadExitMarker)
	return b.Bytes()
}

// readModule returns an uncompressed module. Debian 12 ships plain .ko files, but
// other kernels compress them and busybox insmod may not decompress, so the host
// does it.
func readModule(modulesDir, rel string) ([]byte, error) {
	base := filepath.Join(modulesDir, filepath.FromSlash(rel))
	if data, err := os.ReadFile(base + ".ko"); err == nil {
		return data, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("module %s: %w", rel, err)
	}
	if f, err := os.Open(base + ".ko.gz"); err == nil {
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("module %s.ko.gz: %w", rel, err)
		}
		data, err := io.ReadAll(zr)
		if err != nil {
			return nil, fmt.Errorf("module %s.ko.gz: %w", rel, err)
		}
		return data, nil
	}
	for _, c := range []struct{ ext, tool, pkg string }{{".ko.xz", "xz", "xz-utils"}, {".ko.zst", "zstd", "zstd"}} {
		p := base + c.ext
		if _, err := os.Stat(p); err != nil {
			continue
		}
		if _, err := exec.LookPath(c.tool); err != nil {
			return nil, fmt.Errorf("%w: module %s%s is compressed and %s is not installed (apt-get install %s)",
				ErrMissingPrerequisite, rel, c.ext, c.tool, c.pkg)
		}
		var stderr bytes.Buffer
		cmd := exec.Command(c.tool, "-dc", p)
		cmd.Stderr = &stderr
		data, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("module %s%s: %s -dc: %w: %s", rel, c.ext, c.tool, err, strings.TrimSpace(stderr.String()))
		}
		return data, nil
	}
	return nil, fmt.Errorf("module %s.ko{,.gz,.xz,.zst} not found under %s", rel, modulesDir)
}

// cpio newc file types (the S_IF* bits of st_mode).
const (
	modeDir     = 0o040000
	modeRegular = 0o100000
	modeSymlink = 0o120000
	modeCharDev = 0o020000
)

type entry struct {
	name                 string // without a leading slash
	mode                 uint32
	rdevMajor, rdevMinor uint32
	data                 []byte // contents, or the target of a symlink
	hostPath             string // contents come from this file instead of data
}

type archive struct {
	entries map[string]entry
}

func newArchive() *archive {
	return &archive{entries: make(map[string]entry)}
}

func (a *archive) dir(name string) {
	for d := name; d != "." && d != "/"; d = path.Dir(d) {
		if _, ok := a.entries[d]; !ok {
			a.entries[d] = entry{name: d, mode: modeDir | 0o755}
		}
	}
}

// add stores e, replacing an earlier entry of the same name so spec.Files can
// override a default.
func (a *archive) add(e entry) {
	a.dir(path.Dir(e.name))
	a.entries[e.name] = e
}

// writeTo writes entries in lexical order, which puts every directory before its
// contents, then the trailer.
func (a *archive) writeTo(w io.Writer) error {
	names := make([]string, 0, len(a.entries))
	for n := range a.entries {
		names = append(names, n)
	}
	slices.Sort(names)
	cw := &cpioWriter{w: w}
	for i, n := range names {
		e := a.entries[n]
		if e.hostPath != "" {
			data, err := os.ReadFile(e.hostPath)
			if err != nil {
				return err
			}
			e.data = data
		}
		if err := cw.write(uint32(i+1), e); err != nil {
			return err
		}
	}
	return cw.write(0, entry{name: "TRAILER!!!"})
}

type cpioWriter struct {
	w   io.Writer
	off int64
	err error
}

// write emits one newc record: a 110-byte ASCII header, the NUL-terminated name
// padded to 4 bytes, then the data padded to 4 bytes.
func (c *cpioWriter) write(ino uint32, e entry) error {
	nlink := uint32(1)
	if e.mode&0o170000 == modeDir {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, e.mode, 0, 0, nlink, 0, len(e.data), 0, 0, e.rdevMajor, e.rdevMinor, len(e.name)+1, 0)
	c.put([]byte(hdr))
	c.put(append([]byte(e.name), 0))
	c.pad()
	c.put(e.data)
	c.pad()
	return c.err
}

func (c *cpioWriter) put(b []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(b)
	c.off += int64(n)
	c.err = err
}

func (c *cpioWriter) pad() {
	if r := c.off % 4; r != 0 {
		c.put(make([]byte, 4-r))
	}
}
