// Command guestdiag-collector consumes what relays publish to JetStream, keeps
// per-VM state in a KV bucket and serves it as a JSON API. Run several on the
// same durable to scale out.
//
//	guestdiag-collector [flags]
//	guestdiag-collector version
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
	"syscall"

	"github.com/nats-io/nats.go"

	"github.com/guestdiag/guestdiag/collector"
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
		fmt.Fprintln(stderr, "guestdiag-collector:", err)
		return exitUsage
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	logger.Info("collector_starting", "version", version.Version, "nats", cfg.NATSURL, "listen", cfg.Listen)
	if err := collector.Run(ctx, cfg, logger); err != nil {
		logger.Error("collector_failed", "err", err)
		return exitFailed
	}
	return exitOK
}

func parseFlags(args []string, stderr io.Writer) (collector.Config, slog.Level, error) {
	cfg := collector.Config{}
	fs := flag.NewFlagSet("guestdiag-collector", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.NATSURL, "nats", nats.DefaultURL, "NATS server `url`s, comma separated")
	fs.StringVar(&cfg.Listen, "listen", collector.DefaultListen, "`address` of the JSON API")
	fs.StringVar(&cfg.Durable, "durable", collector.DefaultDurable, "durable consumer `name` shared by all collectors")
	fs.StringVar(&cfg.Bucket, "bucket", collector.DefaultBucket, "KV `bucket` of per-VM state")
	fs.IntVar(&cfg.Replicas, "replicas", 1, "replicas of the stream and the KV bucket (3 on a NATS cluster)")
	fs.DurationVar(&cfg.AckWait, "ack-wait", collector.DefaultAckWait, "time before an unacknowledged message is redelivered")
	level := slog.LevelInfo
	fs.TextVar(&level, "log-level", level, "log `level`: debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: guestdiag-collector [flags]\n       guestdiag-collector version\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return cfg, level, err
	}
	if fs.NArg() > 0 {
		return cfg, level, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if cfg.Replicas < 1 || cfg.AckWait <= 0 {
		return cfg, level, errors.New("--replicas must be at least 1 and --ack-wait positive")
	}
	return cfg, level, nil
}
