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
	"io"
	"log/slog"

	"github.com/nats-io/nats.go"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/internal/cli"
	"github.com/guestdiag/guestdiag/internal/version"
)

func main() { cli.Main(run) }

var run = cli.Daemon("guestdiag-collector", parseFlags, func(ctx context.Context, cfg collector.Config, logger *slog.Logger) error {
	logger.Info("collector_starting", "version", version.Version, "nats", cfg.NATSURL, "listen", cfg.Listen)
	return collector.Run(ctx, cfg, logger)
})

func parseFlags(args []string, stderr io.Writer) (collector.Config, slog.Level, error) {
	cfg := collector.Config{}
	fs, level := cli.FlagSet("guestdiag-collector", "usage: guestdiag-collector [flags]\n       guestdiag-collector version\n", stderr)
	fs.StringVar(&cfg.NATSURL, "nats", nats.DefaultURL, "NATS server `url`s, comma separated")
	fs.StringVar(&cfg.Listen, "listen", collector.DefaultListen, "`address` of the JSON API")
	fs.StringVar(&cfg.Durable, "durable", collector.DefaultDurable, "durable consumer `name` shared by all collectors")
	fs.StringVar(&cfg.Bucket, "bucket", collector.DefaultBucket, "KV `bucket` of per-VM state")
	fs.IntVar(&cfg.Replicas, "replicas", 1, "replicas of the stream and the KV bucket (3 on a NATS cluster)")
	fs.DurationVar(&cfg.AckWait, "ack-wait", collector.DefaultAckWait, "time before an unacknowledged message is redelivered")
	if err := cli.Parse(fs, args); err != nil {
		return cfg, *level, err
	}
	if cfg.Replicas < 1 || cfg.AckWait <= 0 {
		return cfg, *level, errors.New("--replicas must be at least 1 and --ack-wait positive")
	}
	return cfg, *level, nil
}
