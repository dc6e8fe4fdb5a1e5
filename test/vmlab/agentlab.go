//go:build linux

package vmlab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// NFTablesModules let a guest kernel hold an nftables ruleset, for the
// firewall check.
var NFTablesModules = []string{"lib/libcrc32c", "net/netfilter/nfnetlink", "net/netfilter/nf_tables"}

// AgentLab boots guests that run guestdiag-agent, each with a libvirt-style
// channel socket under ChannelRoot, so a relay finds them the way it finds
// them on a libvirt host.
type AgentLab struct {
	Kernel Kernel
	Agent  string // static guestdiag-agent binary, see BuildAgent
	// Helper, when set, is a static vmlab-guest binary (see BuildHelper).
	// Guests then get a lab port and run vmlab-guest serve on it, so tests
	// can inject faults with VM.Exec.
	Helper      string
	ChannelRoot string // short path: unix socket paths are limited to 107 bytes
	WorkDir     string // initramfs images go here
}

// AgentGuest is one lab guest.
type AgentGuest struct {
	Name     string // the host-side name, as libvirt's domain name
	ID       int    // the libvirt domain id in the channel folder name
	Hostname string // what the guest calls itself; Name when empty
	Network  bool   // a NIC on QEMU's restricted user network
	// AgentArgs are the agent's flags; the lab adds --state-dir.
	AgentArgs []string
	// AgentConfig, when set, is the agent's config file (JSON), installed as
	// /etc/guestdiag/agent.json where the agent reads it by default.
	AgentConfig string
	// Modules are extra kernel modules to load, as InitramfsSpec.ExtraModules.
	Modules []string
	// Files and Commands add to the guest; Commands run before the agent.
	Files    []File
	Commands []string
	// QEMUArgs are appended to QEMU's arguments (VMConfig.ExtraArgs).
	QEMUArgs []string
}

// ChannelGlob matches every channel socket of the lab, as the relay's glob
// matches libvirt's.
func (l *AgentLab) ChannelGlob() string {
	return filepath.Join(l.ChannelRoot, "domain-*", AgentChannelName)
}

// Boot builds the guest's initramfs and starts it. The agent's log goes to
// the guest console.
func (l *AgentLab) Boot(ctx context.Context, g AgentGuest) (*VM, error) {
	if g.Hostname == "" {
		g.Hostname = g.Name
	}
	initrd := filepath.Join(l.WorkDir, g.Name+".initrd.gz")
	args := append([]string{"/usr/bin/guestdiag-agent", "--state-dir", "/var/lib/guestdiag"}, g.AgentArgs...)
	files := append([]File{{HostPath: l.Agent, GuestPath: "/usr/bin/guestdiag-agent", Mode: 0o755}}, g.Files...)
	if g.AgentConfig != "" {
		p := filepath.Join(l.WorkDir, g.Name+".agent.json")
		if err := os.WriteFile(p, []byte(g.AgentConfig), 0o644); err != nil {
			return nil, err
		}
		files = append(files, File{HostPath: p, GuestPath: "/etc/guestdiag/agent.json", Mode: 0o644})
	}
	var commands []string
	if l.Helper != "" {
		files = append(files, File{HostPath: l.Helper, GuestPath: "/usr/bin/vmlab-guest", Mode: 0o755})
		commands = append(commands, "/usr/bin/vmlab-guest serve "+LabChannelName+" &")
	}
	commands = append(commands, g.Commands...)
	spec := InitramfsSpec{
		Kernel:       l.Kernel,
		Files:        files,
		Hostname:     g.Hostname,
		ExtraModules: g.Modules,
		Commands:     append(commands, strings.Join(args, " ")+" &"),
	}
	if err := BuildInitramfs(initrd, spec); err != nil {
		return nil, fmt.Errorf("initramfs for %s: %w", g.Name, err)
	}
	return Boot(ctx, VMConfig{
		Name:          g.Name,
		Kernel:        l.Kernel.Vmlinuz,
		Initrd:        initrd,
		ChannelSocket: LibvirtChannelPath(l.ChannelRoot, g.ID, g.Name),
		Network:       g.Network,
		LabPort:       l.Helper != "",
		ExtraArgs:     g.QEMUArgs,
	})
}

// BuildAgent builds a static linux/amd64 guestdiag-agent at dst from the
// module this package belongs to.
func BuildAgent(ctx context.Context, dst string) error {
	return Build(ctx, dst, "./cmd/guestdiag-agent")
}

// BuildHelper builds the static vmlab-guest fault injector at dst.
func BuildHelper(ctx context.Context, dst string) error {
	return Build(ctx, dst, "./test/vmlab/cmd/vmlab-guest")
}

// Build builds the module's package pkg (such as "./cmd/guestdiag-relay") as
// a static linux/amd64 binary at dst. GOAMD64=v1 because TCG's default CPU
// lacks the newer instruction sets a v3 build would use.
func Build(ctx context.Context, dst, pkg string) error {
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", dst, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOAMD64=v1")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s: %w\n%s", pkg, err, out)
	}
	return nil
}

func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the guestdiag module (go env GOMOD is empty)")
	}
	return filepath.Dir(mod), nil
}
