// Command guestdiag-relay runs on a hypervisor host: it reads the guestdiag
// agents' virtio-serial channels and publishes what they report to NATS
// JetStream.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/nats-io/nats.go"

	"github.com/guestdiag/guestdiag/hostrelay"
)

func main() {
	cfg, level, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "guestdiag-relay:", err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := hostrelay.Run(ctx, cfg, logger); err != nil {
		logger.Error("relay failed", "err", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, out io.Writer) (hostrelay.Config, slog.Level, error) {
	var (
		cfg     hostrelay.Config
		level   = slog.LevelInfo
		globs   []string
		globSet bool
	)
	fs := flag.NewFlagSet("guestdiag-relay", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&cfg.NATSURL, "nats", nats.DefaultURL, "NATS server URL(s), comma separated")
	fs.StringVar(&cfg.Host, "host", "", "name of this host in subjects and envelopes (default: the system host name)")
	fs.Func("glob", "channel sockets to watch; the VM name is the socket's folder without libvirt's domain-<id>- prefix; repeatable; replaces the default; an empty value turns globbing off (default "+hostrelay.DefaultGlob+")", func(s string) error {
		globSet = true
		if s != "" {
			globs = append(globs, s)
		}
		return nil
	})
	fs.Func("channel", "a channel socket of a named VM: NAME=PATH[,uuid=UUID]; repeatable", func(s string) error {
		ch, err := parseChannel(s)
		if err != nil {
			return err
		}
		cfg.Static = append(cfg.Static, ch)
		return nil
	})
	fs.StringVar(&cfg.LibvirtRunDir, "libvirt-run-dir", hostrelay.DefaultLibvirtRunDir, "where libvirt keeps <vm>.xml status files, read for VM UUIDs")
	fs.Float64Var(&cfg.Rate, "rate", hostrelay.DefaultRate, "lines per second one VM may send")
	fs.IntVar(&cfg.Burst, "burst", hostrelay.DefaultBurst, "lines one VM may send at once above the rate")
	fs.TextVar(&level, "log-level", slog.LevelInfo, "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return cfg, level, err
	}
	if fs.NArg() > 0 {
		return cfg, level, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if globSet {
		cfg.Globs = append([]string{}, globs...) // non-nil: no default
	}
	return cfg, level, nil
}

// parseChannel reads NAME=PATH[,uuid=UUID].
func parseChannel(s string) (hostrelay.Channel, error) {
	name, rest, ok := strings.Cut(s, "=")
	if !ok || name == "" || rest == "" {
		return hostrelay.Channel{}, fmt.Errorf("channel %q: want NAME=PATH[,uuid=UUID]", s)
	}
	ch := hostrelay.Channel{Name: name, Path: rest}
	if i := strings.LastIndex(rest, ",uuid="); i >= 0 {
		ch.Path, ch.UUID = rest[:i], rest[i+len(",uuid="):]
		if ch.Path == "" || ch.UUID == "" {
			return hostrelay.Channel{}, fmt.Errorf("channel %q: want NAME=PATH[,uuid=UUID]", s)
		}
	}
	return ch, nil
}
