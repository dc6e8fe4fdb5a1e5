package pkgbuild

import "os"

// Package describes one deb/rpm package: what it installs and how its
// maintainer scripts treat its service.
type Package struct {
	Name        string
	Description string
	Recommends  []string
	Suggests    []string
	// Binaries are commands installed as /usr/bin/<name>.
	Binaries []string
	Files    []File
	// Unit is the systemd unit the maintainer scripts enable, restart and stop.
	Unit string
	// StateDir survives an upgrade and a removal; a deb purge removes it.
	StateDir string
	// User is the service's own user, made from the sysusers.d file
	// Sysusers (by format: "deb", "rpm"), installed as SysusersPath. Empty
	// for a service that runs as root.
	User     string
	Sysusers map[string]string
	// Port is the virtio-serial port whose appearance starts the unit; the
	// scripts replay its udev event instead of starting the unit outright.
	Port string
}

// File is one file of a package, its Src relative to the packaging
// directory.
type File struct {
	Src    string
	Dst    string
	Mode   os.FileMode
	Config bool // a conffile: kept when edited, never replaced on upgrade
}

// SysusersPath is where a package's sysusers.d file goes.
func (p Package) SysusersPath() string {
	if p.User == "" {
		return ""
	}
	return "/usr/lib/sysusers.d/" + p.User + ".conf"
}

const (
	unitDir = "/usr/lib/systemd/system/"
	// AgentPort is the virtio-serial port name the agent and its udev rule use.
	AgentPort = "org.guestdiag.agent.0"
)

// Packages are the Linux packages `make packages` builds: the agent for
// guests, the relay for hypervisor hosts and the control plane (collector
// and CLI).
func Packages() []Package {
	return []Package{
		{
			Name:        "guestdiag-agent",
			Description: "guestdiag agent: diagnostic checks inside a KVM guest, reported to the host over virtio-serial",
			Recommends:  []string{"systemd", "udev"},
			Binaries:    []string{"guestdiag-agent"},
			Files: []File{
				{Src: "systemd/guestdiag-agent.service", Dst: unitDir + "guestdiag-agent.service", Mode: 0o644},
				{Src: "udev/70-guestdiag.rules", Dst: "/usr/lib/udev/rules.d/70-guestdiag.rules", Mode: 0o644},
				{Src: "config/agent.yaml", Dst: "/etc/guestdiag/agent.yaml", Mode: 0o644, Config: true},
			},
			Unit:     "guestdiag-agent.service",
			StateDir: "/var/lib/guestdiag",
			Port:     AgentPort,
		},
		{
			Name:        "guestdiag-relay",
			Description: "guestdiag relay: carries each VM's guestdiag channel from a hypervisor host to NATS JetStream",
			Recommends:  []string{"systemd"},
			Binaries:    []string{"guestdiag-relay"},
			Files: []File{
				{Src: "systemd/guestdiag-relay.service", Dst: unitDir + "guestdiag-relay.service", Mode: 0o644},
				{Src: "config/guestdiag-relay.default", Dst: "/etc/default/guestdiag-relay", Mode: 0o644, Config: true},
			},
			Unit:     "guestdiag-relay.service",
			StateDir: "/var/lib/guestdiag-relay",
			User:     "guestdiag-relay",
			Sysusers: map[string]string{"deb": "sysusers/guestdiag-relay.conf", "rpm": "sysusers/guestdiag-relay-rpm.conf"},
		},
		{
			Name:        "guestdiag-control-plane",
			Description: "guestdiag control plane: the collector (fleet state, alerts, dashboard), the scheduler and the guestdiag CLI",
			Recommends:  []string{"systemd"},
			Suggests:    []string{"nats-server"},
			Binaries:    []string{"guestdiag-collector", "guestdiag", "guestdiag-scheduler"},
			Files: []File{
				{Src: "systemd/guestdiag-collector.service", Dst: unitDir + "guestdiag-collector.service", Mode: 0o644},
				{Src: "config/guestdiag-collector.default", Dst: "/etc/default/guestdiag-collector", Mode: 0o644, Config: true},
				// Installed, not enabled: the scripts start Unit alone.
				{Src: "systemd/guestdiag-scheduler.service", Dst: unitDir + "guestdiag-scheduler.service", Mode: 0o644},
				{Src: "config/guestdiag-scheduler.default", Dst: "/etc/default/guestdiag-scheduler", Mode: 0o644, Config: true},
			},
			Unit:     "guestdiag-collector.service",
			StateDir: "/var/lib/guestdiag-collector",
			User:     "guestdiag-collector",
			Sysusers: map[string]string{"deb": "sysusers/guestdiag-collector.conf", "rpm": "sysusers/guestdiag-collector.conf"},
		},
	}
}

// ByName returns the package named name, as Packages lists it.
func ByName(name string) (Package, bool) {
	for _, p := range Packages() {
		if p.Name == name {
			return p, true
		}
	}
	return Package{}, false
}
