//go:build linux

// Command vmlab-demo is what `make demo` runs: it boots two QEMU guests with
// the agent inside, starts `guestdiag up` against their libvirt-style channel
// sockets, waits until both guests report, prints the fleet table and where
// to look, and keeps everything running until interrupted.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
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

	"golang.org/x/crypto/bcrypt"

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
			Files:    []vmlab.File{{HostPath: "test/vmlab/testdata/guest/dpkg-status", GuestPath: "/var/lib/dpkg/status", Mode: 0o644}},
			Commands: demoFaults[name]})
		if err != nil {
			return err
		}
		defer vm.Stop()
		say("booted guest %s (QEMU pid %d, channel under %s)", name, vm.Pid(), lab.ChannelRoot)
	}

	password, users, err := demoLogin(work)
	if err != nil {
		return err
	}
	token, tokenFile, err := demoToken(work)
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	up := exec.CommandContext(ctx, filepath.Join(bin, "guestdiag"), "up",
		"--store", filepath.Join(work, "store"), "--http", api, "--nats-listen", natsAddr,
		"--host", host, "--glob", lab.ChannelGlob(), "--users", users, "--token-file", tokenFile, "--log-level", "warn")
	up.Stdout, up.Stderr = os.Stdout, os.Stderr
	up.Cancel = func() error { return up.Process.Signal(os.Interrupt) }
	up.WaitDelay = 10 * time.Second
	if err := up.Start(); err != nil {
		return fmt.Errorf("start guestdiag up: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- up.Wait() }()

	apiURL := "http://" + api
	if err := waitForVMs(ctx, apiURL, password, 2, exited); err != nil {
		return err
	}
	status := exec.CommandContext(ctx, filepath.Join(bin, "guestdiag"), "status", "--api", apiURL)
	status.Env = append(os.Environ(), "GUESTDIAG_TOKEN="+token)
	status.Stdout, status.Stderr = os.Stdout, os.Stderr
	_ = status.Run()
	say("the lab is running; look at:")
	fmt.Printf("  dashboard: %s/   login: %s / %s\n", apiURL, demoUser, password)
	fmt.Printf("  API:       curl -u %s:%s %s/api/alerts\n", demoUser, password, apiURL)
	fmt.Printf("  CLI:       GUESTDIAG_TOKEN=%s %s alerts --api %s\n", token, filepath.Join(bin, "guestdiag"), apiURL)
	fmt.Printf("  NATS:      nats sub 'guestdiag.alert.>' --server nats://%s\n", natsAddr)
	fmt.Printf("  stream:    GUESTDIAG on nats://%s (subjects guestdiag.>)\n", natsAddr)
	fmt.Println("  web01 has a process stopped by SIGSTOP (proc.stopped); db01 logs an OOM kill about 30 s after boot;")
	fmt.Println("  neither guest has a firewall ruleset (fw.disabled). Each alert carries its knowledge-base resolution.")
	say("press Ctrl-C to stop the guests and the control plane")

	select {
	case <-ctx.Done():
		<-exited
		return nil
	case err := <-exited:
		return fmt.Errorf("guestdiag up exited: %v", err)
	}
}

// demoUser is the dashboard login the demo makes.
const demoUser = "admin"

// demoFaults are what each guest runs before its agent starts: real faults
// for the dashboard to show, with their knowledge-base resolutions.
var demoFaults = map[string][]string{
	"web01": {"sleep 100000 & kill -STOP $!"},
	"db01":  {`(sleep 30; echo '<2>kernel: Out of memory: Killed process 812 (postgres) total-vm:2410828kB, anon-rss:1926448kB, file-rss:0kB, shmem-rss:0kB, UID:105 pgtables:4120kB oom_score_adj:0' > /dev/kmsg) &`},
}

// demoLogin makes a random password for demoUser and a users file holding
// its bcrypt hash.
func demoLogin(dir string) (password, file string, err error) {
	b := make([]byte, 9)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	password = base64.RawURLEncoding.EncodeToString(b)
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return "", "", err
	}
	file = filepath.Join(dir, "users")
	return password, file, os.WriteFile(file, []byte(demoUser+":"+string(hash)+"\n"), 0o600)
}

// demoToken makes a random shared token for the CLI and a file holding it.
func demoToken(dir string) (token, file string, err error) {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	token = base64.RawURLEncoding.EncodeToString(b)
	file = filepath.Join(dir, "token")
	return token, file, os.WriteFile(file, []byte(token+"\n"), 0o600)
}

// waitForVMs polls the API until n VMs have reported a resources result.
func waitForVMs(ctx context.Context, api, password string, n int, exited <-chan error) error {
	deadline := time.After(3 * time.Minute)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if reporting(ctx, api, password) >= n {
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

func reporting(ctx context.Context, api, password string) int {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api+"/api/vms", nil)
	if err != nil {
		return 0
	}
	req.SetBasicAuth(demoUser, password)
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
