//go:build linux

package vmlab_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/test/vmlab"
)

// lab is what every guest in a test shares.
type lab struct {
	kernel  vmlab.Kernel
	payload string // static portecho binary
}

// setupLab skips unless GUESTDIAG_VMLAB is 1 or "require". With "require" (what
// `make test` sets) or on CI (CI=true), a missing tool fails the test instead,
// so a broken machine cannot pass by skipping.
func setupLab(t *testing.T) lab {
	t.Helper()
	mode := os.Getenv("GUESTDIAG_VMLAB")
	if mode != "1" && mode != "require" {
		t.Skip("boots QEMU guests; enable with GUESTDIAG_VMLAB=1 on a Debian host with qemu-system-x86 and busybox-static installed and apt access to linux-image-cloud-amd64")
	}
	missing := func(err error) {
		t.Helper()
		if mode == "require" || os.Getenv("CI") == "true" {
			t.Fatalf("the VM lab is required here but cannot run: %v", err)
		}
		t.Skipf("lab cannot run here: %v", err)
	}
	if err := vmlab.Prerequisites(); err != nil {
		missing(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	k, err := vmlab.EnsureKernel(ctx, "")
	if errors.Is(err, vmlab.ErrMissingPrerequisite) {
		missing(err)
	}
	if err != nil {
		t.Fatal(err)
	}

	payload := filepath.Join(t.TempDir(), "portecho")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", payload, "./testdata/portecho")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOAMD64=v1")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build payload: %v\n%s", err, out)
	}
	return lab{kernel: k, payload: payload}
}

func (l lab) initramfs(t *testing.T, hostname string, commands ...string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "initrd.gz")
	spec := vmlab.InitramfsSpec{
		Kernel:   l.kernel,
		Files:    []vmlab.File{{HostPath: l.payload, GuestPath: "/usr/bin/portecho", Mode: 0o755}},
		Hostname: hostname,
		Commands: commands,
	}
	if err := vmlab.BuildInitramfs(dst, spec); err != nil {
		t.Fatal(err)
	}
	return dst
}

// boot starts a guest that is stopped when the test ends; a failed test logs its
// console.
func boot(t *testing.T, ctx context.Context, cfg vmlab.VMConfig) *vmlab.VM {
	t.Helper()
	vm, err := vmlab.Boot(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	stopOnCleanup(t, vm, cfg.Name)
	return vm
}

// stopOnCleanup stops the guest when the test ends and logs its console if
// the test failed.
func stopOnCleanup(t *testing.T, vm *vmlab.VM, name string) {
	t.Cleanup(func() {
		if err := vm.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("console of %s:\n%s", name, vm.Console())
		}
	})
}

// shortTempDir is under /tmp: t.TempDir paths can break the 108-byte limit on unix
// socket paths.
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vml")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// dialChannel connects the way the relay does: retrying until QEMU's socket exists.
func dialChannel(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		conn, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			return conn, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("dial %s: %w (last error: %w)", path, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

func TestIntegrationBoot(t *testing.T) {
	l := setupLab(t)

	t.Run("a line the guest writes to its agent port reaches the channel socket", func(t *testing.T) {
		t.Parallel()
		const hostname = "vmlab-echo"
		ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
		defer cancel()
		sock := vmlab.LibvirtChannelPath(shortTempDir(t), 1, hostname)
		initrd := l.initramfs(t, hostname, "portecho -n 3")

		start := time.Now()
		vm := boot(t, ctx, vmlab.VMConfig{
			Name: hostname, Kernel: l.kernel.Vmlinuz, Initrd: initrd, ChannelSocket: sock,
		})
		conn, err := dialChannel(ctx, sock)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if d, ok := ctx.Deadline(); ok {
			conn.SetDeadline(d)
		}

		sc := bufio.NewScanner(conn)
		want := "hello from " + hostname
		for i := range 3 {
			if !sc.Scan() {
				t.Fatalf("channel closed after %d lines: %v", i, sc.Err())
			}
			if got := sc.Text(); got != want {
				t.Errorf("line %d on the channel = %q, want %q", i, got, want)
			}
		}
		if err := vm.WaitConsole(ctx, "portecho: wrote 3 lines"); err != nil {
			t.Error(err)
		}
		t.Logf("qemu start to third line on the channel: %v", time.Since(start).Round(time.Millisecond))
	})

	t.Run("the restricted user network reaches the gateway until set_link cuts it", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
		defer cancel()
		initrd := l.initramfs(t, "vmlab-net",
			"ping -c1 -W2 "+vmlab.GatewayAddr+" >/dev/null && echo 'vmlab: ping gateway ok' || echo 'vmlab: ping gateway failed'",
			"while [ \"$(cat /sys/class/net/eth0/carrier)\" = 1 ]; do sleep 0.1; done",
			"echo 'vmlab: carrier lost'",
			"ping -c1 -W2 "+vmlab.GatewayAddr+" >/dev/null && echo 'vmlab: ping after link down ok' || echo 'vmlab: ping after link down failed'",
		)

		start := time.Now()
		vm := boot(t, ctx, vmlab.VMConfig{
			Name: "vmlab-net", Kernel: l.kernel.Vmlinuz, Initrd: initrd, Network: true,
		})
		if err := vm.WaitConsole(ctx, vmlab.InitDoneMarker); err != nil {
			t.Fatal(err)
		}
		t.Logf("qemu start to %q: %v", vmlab.InitDoneMarker, time.Since(start).Round(time.Millisecond))

		if err := vm.WaitConsole(ctx, "vmlab: ping gateway "); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(vm.Console(), "vmlab: ping gateway ok") {
			t.Fatalf("guest could not ping %s over the user network", vmlab.GatewayAddr)
		}

		if err := vm.SetLink(ctx, vmlab.NetdevID, false); err != nil {
			t.Fatal(err)
		}
		if err := vm.WaitConsole(ctx, "vmlab: ping after link down "); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(vm.Console(), "vmlab: ping after link down failed") {
			t.Errorf("guest still pinged %s after set_link down", vmlab.GatewayAddr)
		}
	})
}
