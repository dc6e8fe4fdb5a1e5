//go:build linux

// Command vmlab-demo is what `make demo` runs: it boots two QEMU guests with
// the agent inside, starts `guestdiag up` against their libvirt-style channel
// sockets, waits until both guests report, prints the fleet table and where
// to look, and keeps everything running until interrupted.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/guestdiag/guestdiag/test/vmlab"
)

// demoAgentConfig keeps every probe on QEMU's restricted user network:
// 10.0.2.3 (its DNS address) stands in for the internet.
const demoAgentConfig = `{"checks": {
	"network":   {"config": {"internet_targets": ["10.0.2.3"], "dns_name": ""}},
	"resources": {"interval": "5s"}
}}`

func main() {
	bin := flag.String("bin", "bin", "`dir`ectory holding the built guestdiag binaries")
	api := flag.String("http", "127.0.0.1:8470", "`address` for the collector API")
	natsAddr := flag.String("nats", "127.0.0.1:4222", "`address` for the embedded NATS server")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *bin, *api, *natsAddr); err != nil {
		fmt.Fprintln(os.Stderr, "vmlab-demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, bin, api, natsAddr string) error {
	if err := vmlab.Prerequisites(); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "gdemo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	say("fetching the guest kernel (cached after the first run)")
	kernel, err := vmlab.EnsureKernel(ctx, "")
	if err != nil {
		return err
	}
	lab := &vmlab.AgentLab{
		Kernel:      kernel,
		Agent:       filepath.Join(bin, "guestdiag-agent"),
		ChannelRoot: filepath.Join(work, "ch"),
		WorkDir:     work,
	}
	for i, name := range []string{"web01", "db01"} {
		vm, err := lab.Boot(ctx, vmlab.AgentGuest{Name: name, ID: i + 1, Network: true, Modules: vmlab.NFTablesModules, AgentConfig: demoAgentConfig,
			// A small Debian package list, so the software check has a database.
			Files: []vmlab.File{{HostPath: "test/vmlab/testdata/guest/dpkg-status", GuestPath: "/var/lib/dpkg/status", Mode: 0o644}}})
		if err != nil {
			return err
		}
		defer vm.Stop()
		say("booted guest %s (QEMU pid %d, channel under %s)", name, vm.Pid(), lab.ChannelRoot)
	}

	host, _ := os.Hostname()
	up := exec.CommandContext(ctx, filepath.Join(bin, "guestdiag"), "up",
		"--store", filepath.Join(work, "store"), "--http", api, "--nats-listen", natsAddr,
		"--host", host, "--glob", lab.ChannelGlob(), "--log-level", "warn")
	up.Stdout, up.Stderr = os.Stdout, os.Stderr
	up.Cancel = func() error { return up.Process.Signal(os.Interrupt) }
	up.WaitDelay = 10 * time.Second
	if err := up.Start(); err != nil {
		return fmt.Errorf("start guestdiag up: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- up.Wait() }()

	apiURL := "http://" + api
	if err := waitForVMs(ctx, apiURL, 2, exited); err != nil {
		return err
	}
	status := exec.CommandContext(ctx, filepath.Join(bin, "guestdiag"), "status", "--api", apiURL)
	status.Stdout, status.Stderr = os.Stdout, os.Stderr
	_ = status.Run()
	say("the lab is running; look at:")
	fmt.Printf("  API:     %s/api/vms   and   %s/api/vms/web01\n", apiURL, apiURL)
	fmt.Printf("  status:  %s status --api %s\n", filepath.Join(bin, "guestdiag"), apiURL)
	fmt.Printf("  NATS:    nats://%s  (stream GUESTDIAG, subjects guestdiag.>)\n", natsAddr)
	say("press Ctrl-C to stop the guests and the control plane")

	select {
	case <-ctx.Done():
		<-exited
		return nil
	case err := <-exited:
		return fmt.Errorf("guestdiag up exited: %v", err)
	}
}

// waitForVMs polls the API until n VMs have reported a resources result.
func waitForVMs(ctx context.Context, api string, n int, exited <-chan error) error {
	deadline := time.After(3 * time.Minute)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if reporting(ctx, api) >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-exited:
			return fmt.Errorf("guestdiag up exited: %v", err)
		case <-deadline:
			return errors.New("the guests did not report within 3 minutes")
		case <-tick.C:
		}
	}
}

func reporting(ctx context.Context, api string) int {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api+"/api/vms", nil)
	if err != nil {
		return 0
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var vms []struct {
		Checks map[string]json.RawMessage `json:"checks"`
	}
	if json.NewDecoder(resp.Body).Decode(&vms) != nil {
		return 0
	}
	n := 0
	for _, vm := range vms {
		if vm.Checks["resources"] != nil {
			n++
		}
	}
	return n
}

func say(format string, args ...any) {
	fmt.Printf("==> "+format+"\n", args...)
}
