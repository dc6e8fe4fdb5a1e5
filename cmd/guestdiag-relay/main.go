// Command guestdiag-relay runs on a hypervisor host: it reads the guestdiag
// agents' virtio-serial channels and publishes what they report to NATS
// JetStream.
//
//	guestdiag-relay [flags]
//	guestdiag-relay version
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"

	"github.com/nats-io/nats.go"

	"github.com/guestdiag/guestdiag/hostrelay"
	"github.com/guestdiag/guestdiag/internal/cli"
	"github.com/guestdiag/guestdiag/internal/version"
)

func main() { cli.Main(run) }

var run = cli.Daemon("guestdiag-relay", parseFlags, func(ctx context.Context, cfg hostrelay.Config, logger *slog.Logger) error {
	logger.Info("relay_starting", "version", version.Version, "nats", cfg.NATSURL)
	hostrelay.ApplyMemoryLimit(cfg, logger)
	return hostrelay.Run(ctx, cfg, logger)
})

func parseFlags(args []string, stderr io.Writer) (hostrelay.Config, slog.Level, error) {
	var cfg hostrelay.Config
	fs, level := cli.FlagSet("guestdiag-relay", "usage: guestdiag-relay [flags]\n       guestdiag-relay version\n", stderr)
	fs.StringVar(&cfg.NATSURL, "nats", nats.DefaultURL, "NATS server `url`s, comma separated")
	hostrelay.NATSAuthFlags(fs, &cfg)
	fs.StringVar(&cfg.Host, "host", "", "`name` of this host in subjects and envelopes (default: the system host name)")
	fs.Var(hostrelay.GlobsFlag(&cfg.Globs), "glob", "channel socket `pattern`; the VM name is the socket's folder without libvirt's domain-<id>- prefix; repeatable; replaces the default; an empty value turns globbing off (default "+hostrelay.DefaultGlob+")")
	fs.Var(hostrelay.ChannelsFlag(&cfg.Static), "channel", "channel socket of a named VM, `NAME=PATH[,uuid=UUID]`; repeatable")
	hostrelay.LifecycleFlags(fs, &cfg.Lifecycle)
	fs.Var(hostrelay.ListenFlag(&cfg.Static), "listen", "channel socket the relay creates and QEMU connects to (chardev socket,server=off), `NAME=PATH[,uuid=UUID]`; repeatable")
	fs.StringVar(&cfg.LibvirtRunDir, "libvirt-run-dir", hostrelay.DefaultLibvirtRunDir, "`dir`ectory where libvirt keeps <vm>.xml status files, read for VM UUIDs")
	fs.Float64Var(&cfg.Rate, "rate", hostrelay.DefaultRate, "lines per second one VM may send")
	fs.IntVar(&cfg.Burst, "burst", hostrelay.DefaultBurst, "lines one VM may send at once above the rate")
	cfg.MaxBytesRate = hostrelay.DefaultMaxBytesRate
	fs.Var((*bytesRate)(&cfg.MaxBytesRate), "max-bytes-rate", "`bytes` per second read from one VM's channel, blank and dropped lines included; a guest that writes faster is read more slowly; inf for no limit")
	fs.StringVar(&cfg.ProxmoxGlob, "proxmox-glob", hostrelay.DefaultProxmoxGlob, "Proxmox-style channel socket `pattern`, <vmid>.guestdiag; - turns it off")
	fs.StringVar(&cfg.ProxmoxConfDir, "proxmox-conf-dir", hostrelay.DefaultProxmoxConfDir, "`dir`ectory of Proxmox <vmid>.conf files, read for VM names and UUIDs")
	fs.Func("vsock-port", "host vsock `port` agents connect to; each connection is the VM its CID names (--vsock-vm, or the running domains' <vsock> through virsh); default off", func(v string) error {
		p, err := strconv.ParseUint(v, 10, 32)
		if err != nil || p == 0 {
			return fmt.Errorf("%q is not a vsock port", v)
		}
		cfg.VsockPort = uint32(p)
		return nil
	})
	fs.Func("vsock-vm", "the VM of a vsock CID, `NAME=CID[,uuid=UUID]`; repeatable", func(v string) error {
		vm, err := hostrelay.ParseVsockVM(v)
		if err == nil {
			cfg.VsockVMs = append(cfg.VsockVMs, vm)
		}
		return err
	})
	fs.Var(hostrelay.SharedMachineFlag(&cfg.SharedMachine), "shared-machine", "`CPUS[,memory=SIZE]`: this relay shares its machine with others and plays a host of that size, its host usage counting only the VMs of its channels (the VM lab's stand-in for a second hypervisor); default off")
	fs.StringVar(&cfg.MetricsListen, "metrics-listen", "", "TCP `address` for Prometheus /metrics and /healthz, such as 127.0.0.1:9464 (default: off)")
	fs.IntVar(&cfg.MaxRelayInFlightBytes, "max-inflight-bytes", hostrelay.DefaultMaxRelayInFlightBytes, "`bytes` published and not yet confirmed, over all channels together")
	fs.Var(hostrelay.MemoryLimitFlag(&cfg.MemoryLimit), "memory-limit", "Go soft memory `limit` of the relay, bytes or with KiB, MiB, GiB; 0 for none (default 90MiB, or GOMEMLIMIT when set)")
	err := cli.Parse(fs, args)
	return cfg, *level, err
}

// bytesRate is a float flag that prints whole numbers of bytes as such
// rather than as 1.048576e+06.
type bytesRate float64

func (b *bytesRate) String() string { return strconv.FormatFloat(float64(*b), 'f', -1, 64) }

func (b *bytesRate) Set(s string) error {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || !(v > 0) {
		return fmt.Errorf("%q is not a positive number", s)
	}
	*b = bytesRate(v)
	return nil
}
