package hostrelay

import (
	"flag"
	"fmt"
	"path/filepath"
	"strings"
)

// LifecycleFlags registers the flags of LifecycleConfig on fs.
func LifecycleFlags(fs *flag.FlagSet, c *LifecycleConfig) {
	fs.Var(qmpFlag{&c.QMP}, "qmp", "QMP socket of a named VM, `NAME=PATH[,uuid=UUID]`, for host-side lifecycle events; the relay holds it open, so give each VM a -qmp socket of its own; repeatable")
	fs.Var(qmpGlobFlag{&c.QMPGlobs}, "qmp-glob", "QMP socket `pattern`; the VM name is the file name without its extension, or for a Proxmox vmid the name in its config; repeatable")
	fs.StringVar(&c.ProxmoxConfDir, "proxmox-conf-dir", DefaultProxmoxConfDir, "`dir`ectory of Proxmox <vmid>.conf files, read for the names of VMs whose QMP socket is named by vmid")
	fs.StringVar(&c.Virsh, "virsh", "", "virsh `binary` whose lifecycle events are followed; empty: virsh from PATH if there is one; "+VirshOff+": off")
	fs.StringVar(&c.VirshURI, "virsh-uri", DefaultVirshURI, "libvirt `uri` for virsh")
}

type qmpFlag struct{ p *[]Channel }

func (f qmpFlag) Set(s string) error {
	q, err := ParseChannel(s)
	if err != nil {
		return fmt.Errorf("qmp: %w", err)
	}
	for _, c := range *f.p {
		if c.Name == q.Name || c.Path == q.Path {
			return fmt.Errorf("qmp %q: VM name or path given twice", s)
		}
	}
	*f.p = append(*f.p, q)
	return nil
}

func (f qmpFlag) String() string {
	if f.p == nil {
		return ""
	}
	return channelsFlag(f).String()
}

type qmpGlobFlag struct{ p *[]string }

func (f qmpGlobFlag) Set(s string) error {
	if _, err := filepath.Match(s, ""); err != nil {
		return fmt.Errorf("qmp glob %q: %w", s, err)
	}
	*f.p = append(*f.p, s)
	return nil
}

func (f qmpGlobFlag) String() string {
	if f.p == nil {
		return ""
	}
	return strings.Join(*f.p, " ")
}
