package hostrelay

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Proxmox VE runs each VM's QEMU with sockets under /var/run/qemu-server
// named by the VM id; a guestdiag channel configured as
//
//	args: -chardev socket,id=gd,path=/var/run/qemu-server/<vmid>.guestdiag,server=on,wait=off ...
//
// is found there. The VM's name and UUID are in its config file.
const (
	DefaultProxmoxGlob    = "/var/run/qemu-server/*.guestdiag"
	DefaultProxmoxConfDir = "/etc/pve/qemu-server"
	proxmoxSuffix         = ".guestdiag"
	// maxProxmoxConf bounds how much of a VM config is read.
	maxProxmoxConf = 1 << 20
)

// discoverProxmox adds the Proxmox channels matching cfg.ProxmoxGlob.
func discoverProxmox(cfg Config, found map[string]target) {
	if cfg.ProxmoxGlob == "-" {
		return
	}
	paths, _ := globFiles(cfg.ProxmoxGlob) // checked in withDefaults
	for _, p := range paths {
		vmid := strings.TrimSuffix(filepath.Base(p), proxmoxSuffix)
		if vmid == "" || strings.Trim(vmid, "0123456789") != "" {
			continue
		}
		ch := Channel{Name: vmid, Path: p}
		if b, err := readLimited(filepath.Join(cfg.ProxmoxConfDir, vmid+".conf"), maxProxmoxConf); err == nil {
			name, uuid := parseProxmoxConf(b)
			if name != "" {
				ch.Name = name
			}
			ch.UUID = uuid
		}
		found[p] = target{Channel: ch, globbed: true, settled: true}
	}
}

// parseProxmoxConf reads the name and the SMBIOS UUID of a VM from its
// config: "name: web01" and "smbios1: uuid=…[,…]" in the main section,
// which ends at the first snapshot section ("[snap1]").
func parseProxmoxConf(b []byte) (name, uuid string) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") {
			break
		}
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		switch strings.TrimSpace(key) {
		case "name":
			name = val
		case "smbios1":
			for opt := range strings.SplitSeq(val, ",") {
				if v, ok := strings.CutPrefix(opt, "uuid="); ok {
					if u, ok := normalizeUUID(v); ok {
						uuid = u
					}
				}
			}
		}
	}
	return name, uuid
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit))
}
