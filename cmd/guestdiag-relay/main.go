// Command guestdiag-relay runs on a hypervisor host: it reads the guestdiag
// agents' virtio-serial channels and publishes what they report to NATS
// JetStream.
//
//	guestdiag-relay [flags]
//	guestdiag-relay version
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
	"strconv"
	"syscall"

	"github.com/nats-io/nats.go"

	"github.com/guestdiag/guestdiag/hostrelay"
	"github.com/guestdiag/guestdiag/internal/version"
)

const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 64
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && args[0] == "version" {
		fmt.Fprintln(stdout, version.Version)
		return exitOK
	}
	cfg, level, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintln(stderr, "guestdiag-relay:", err)
		return exitUsage
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	logger.Info("relay_starting", "version", version.Version, "nats", cfg.NATSURL)
	if err := hostrelay.Run(ctx, cfg, logger); err != nil {
		logger.Error("relay_failed", "err", err)
		return exitFailed
	}
	return exitOK
}

func parseFlags(args []string, stderr io.Writer) (hostrelay.Config, slog.Level, error) {
	var cfg hostrelay.Config
	fs := flag.NewFlagSet("guestdiag-relay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.NATSURL, "nats", nats.DefaultURL, "NATS server `url`s, comma separated")
	fs.StringVar(&cfg.Host, "host", "", "`name` of this host in subjects and envelopes (default: the system host name)")
	fs.Var(hostrelay.GlobsFlag(&cfg.Globs), "glob", "channel socket `pattern`; the VM name is the socket's folder without libvirt's domain-<id>- prefix; repeatable; replaces the default; an empty value turns globbing off (default "+hostrelay.DefaultGlob+")")
	fs.Var(hostrelay.ChannelsFlag(&cfg.Static), "channel", "channel socket of a named VM, `NAME=PATH[,uuid=UUID]`; repeatable")
	fs.StringVar(&cfg.LibvirtRunDir, "libvirt-run-dir", hostrelay.DefaultLibvirtRunDir, "`dir`ectory where libvirt keeps <vm>.xml status files, read for VM UUIDs")
	fs.Float64Var(&cfg.Rate, "rate", hostrelay.DefaultRate, "lines per second one VM may send")
	fs.IntVar(&cfg.Burst, "burst", hostrelay.DefaultBurst, "lines one VM may send at once above the rate")
	cfg.MaxBytesRate = hostrelay.DefaultMaxBytesRate
	fs.Var((*bytesRate)(&cfg.MaxBytesRate), "max-bytes-rate", "`bytes` per second read from one VM's channel, blank and dropped lines included; a guest that writes faster is read more slowly; inf for no limit")
	level := slog.LevelInfo
	fs.TextVar(&level, "log-level", level, "log `level`: debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: guestdiag-relay [flags]\n       guestdiag-relay version\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return cfg, level, err
	}
	if fs.NArg() > 0 {
		return cfg, level, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return cfg, level, nil
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
