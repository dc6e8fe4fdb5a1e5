// Command guestdiag-collector consumes what relays publish to JetStream, keeps
// per-VM state in a KV bucket, raises alerts with their knowledge-base
// resolutions, and serves the dashboard and the JSON API. Run several on the
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
	"net"

	"github.com/nats-io/nats.go"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/internal/cli"
	"github.com/guestdiag/guestdiag/internal/collectord"
	"github.com/guestdiag/guestdiag/internal/natsutil"
	"github.com/guestdiag/guestdiag/internal/version"
)

func main() { cli.Main(run) }

var run = cli.Daemon("guestdiag-collector", parseFlags, func(ctx context.Context, cfg collectord.Config, logger *slog.Logger) error {
	logger.Info("collector_starting", "version", version.Version, "nats", cfg.Collector.NATSURL, "listen", cfg.Collector.Listen)
	opts, err := collectord.NATSOptions(cfg)
	if err != nil {
		return err
	}
	nc, err := natsutil.Connect(cfg.Collector.NATSURL, "guestdiag-collector", logger, opts...)
	if err != nil {
		return err
	}
	defer nc.Close()
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.Collector.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	return collectord.Run(ctx, nc, ln, cfg, logger)
})

func parseFlags(args []string, stderr io.Writer) (collectord.Config, slog.Level, error) {
	var cfg collectord.Config
	fs, level, pending := flags(&cfg, stderr)
	if err := cli.Parse(fs, args); err != nil {
		return cfg, *level, err
	}
	if c := &cfg.Collector; c.Replicas < 1 || c.AckWait <= 0 {
		return cfg, *level, errors.New("--replicas must be at least 1 and --ack-wait positive")
	}
	return cfg, *level, pending.Finish()
}

// flags registers every flag of guestdiag-collector into cfg.
func flags(cfg *collectord.Config, stderr io.Writer) (*flag.FlagSet, *slog.Level, *collectord.Pending) {
	c := &cfg.Collector
	fs, level := cli.FlagSet("guestdiag-collector", "usage: guestdiag-collector [flags]\n       guestdiag-collector version\n", stderr)
	fs.StringVar(&c.NATSURL, "nats", nats.DefaultURL, "NATS server `url`s, comma separated")
	fs.StringVar(&c.Listen, "listen", collector.DefaultListen, "`address` of the dashboard and the JSON API")
	fs.StringVar(&c.Durable, "durable", collector.DefaultDurable, "durable consumer `name` shared by all collectors")
	fs.StringVar(&c.Bucket, "bucket", collector.DefaultBucket, "KV `bucket` of per-VM state")
	fs.StringVar(&c.HostBucket, "host-bucket", collector.DefaultHostBucket, "KV `bucket` of per-host usage, drain marks and placement hints")
	fs.IntVar(&c.Replicas, "replicas", 1, "replicas of the stream and the KV buckets (3 on a NATS cluster)")
	fs.DurationVar(&c.AckWait, "ack-wait", collector.DefaultAckWait, "time before an unacknowledged message is redelivered")
	pending := collectord.Flags(fs, cfg)
	collectord.NATSFlags(fs, cfg)
	return fs, level, pending
}
