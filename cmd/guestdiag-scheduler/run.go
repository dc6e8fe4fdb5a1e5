package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/internal/cli"
	"github.com/guestdiag/guestdiag/internal/natsutil"
	"github.com/guestdiag/guestdiag/internal/version"
	"github.com/guestdiag/guestdiag/protocol"
	"github.com/guestdiag/guestdiag/scheduler/daemon"
)

type runConfig struct {
	nats     string
	auth     natsutil.Auth
	config   string
	mode     string
	executor string
	interval time.Duration
	name     string
}

func commonFlags(fs *flag.FlagSet, c *runConfig) {
	fs.StringVar(&c.nats, "nats", nats.DefaultURL, "NATS server `url`s, comma separated")
	natsutil.AuthFlags(fs, &c.auth)
	fs.StringVar(&c.config, "config", daemon.DefaultConfigPath, "scheduler configuration `file` (YAML); a missing default file is the defaults")
	host, _ := os.Hostname()
	fs.StringVar(&c.name, "name", host, "this instance's `name` in plans, outcomes and the lease")
}

func parseRun(args []string, stderr io.Writer) (runConfig, slog.Level, error) {
	var c runConfig
	fs, level := cli.FlagSet("guestdiag-scheduler run", "usage: guestdiag-scheduler run [flags]\n", stderr)
	commonFlags(fs, &c)
	fs.StringVar(&c.mode, "mode", protocol.ModeAdvisory, "advisory (publish plans only) or execute (carry them out)")
	fs.StringVar(&c.executor, "executor", "", "`name` of the executor that migrates VMs in execute mode")
	fs.DurationVar(&c.interval, "interval", 0, "time between cycles (default: the file's interval, 60s)")
	if err := cli.Parse(fs, args); err != nil {
		return c, *level, err
	}
	if c.mode != protocol.ModeAdvisory && c.mode != protocol.ModeExecute {
		return c, *level, fmt.Errorf("--mode %q: want advisory or execute", c.mode)
	}
	if c.interval < 0 {
		return c, *level, errors.New("--interval cannot be negative")
	}
	return c, *level, nil
}

// inboxPrefix keeps the scheduler's replies and consumer deliveries apart
// from other daemons', so a permission set can grant them alone.
const inboxPrefix = "_GDINBOX.scheduler"

func connect(c runConfig, logger *slog.Logger) (*nats.Conn, error) {
	c.auth.InboxPrefix = inboxPrefix
	opts, err := c.auth.Options()
	if err != nil {
		return nil, err
	}
	return natsutil.Connect(c.nats, "guestdiag-scheduler", logger, opts...)
}

// startRun refuses execute mode without a working executor before it
// touches NATS, so a misconfigured scheduler never starts half-way.
func startRun(ctx context.Context, c runConfig, logger *slog.Logger) error {
	f, err := daemon.LoadFile(c.config)
	if err != nil {
		return err
	}
	cfg := daemon.Config{Name: c.name, Mode: c.mode, Interval: c.interval, File: f, Logger: logger}
	if c.mode == protocol.ModeExecute {
		if c.executor == "" {
			return fmt.Errorf("execute mode needs --executor; this build has: %v", daemon.Executors())
		}
		if cfg.Executor, err = daemon.NewExecutor(c.executor, f, logger); err != nil {
			return err
		}
	}
	logger.Info("scheduler_starting", "version", version.Version, "nats", c.nats, "mode", c.mode, "config", c.config)
	nc, err := connect(c, logger)
	if err != nil {
		return err
	}
	defer nc.Close()
	return daemon.Run(ctx, nc, cfg)
}

func planCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var c runConfig
	fs, level := cli.FlagSet("guestdiag-scheduler plan", "usage: guestdiag-scheduler plan [flags]\n", stderr)
	commonFlags(fs, &c)
	jsonOut := fs.Bool("json", false, "print the plan as protocol JSON")
	wait := fs.Duration("timeout", 30*time.Second, "how long to wait for NATS and the stream's replay")
	if err := cli.Parse(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cli.ExitOK
		}
		return cli.ExitUsage
	}
	logger := cli.Logger(stderr, *level)
	f, err := daemon.LoadFile(c.config)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return cli.ExitFailed
	}
	ctx, cancel := context.WithTimeout(ctx, *wait)
	defer cancel()
	c.auth.InboxPrefix = inboxPrefix
	opts, err := c.auth.Options()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return cli.ExitFailed
	}
	// One try, not a daemon's endless retry: an admin wants the error.
	nc, err := nats.Connect(c.nats, append(opts, nats.Name("guestdiag-scheduler plan"))...)
	if err != nil {
		fmt.Fprintf(stderr, "connect to nats %s: %v\n", c.nats, err)
		return cli.ExitFailed
	}
	defer nc.Close()
	p, err := daemon.PlanNow(ctx, nc, f, c.name)
	if err != nil {
		logger.Error("plan_failed", "err", err)
		return cli.ExitFailed
	}
	if *jsonOut {
		b, _ := json.MarshalIndent(p, "", "  ")
		fmt.Fprintln(stdout, string(b))
		return cli.ExitOK
	}
	daemon.Print(stdout, p)
	printStatus(ctx, nc, stdout)
	return cli.ExitOK
}

// printStatus says which scheduler acts and when it last planned, so an
// admin can tell a quiet guestdiag.plan from a dead scheduler.
func printStatus(ctx context.Context, nc *nats.Conn, w io.Writer) {
	js, err := jetstream.New(nc)
	if err != nil {
		return
	}
	st, err := daemon.ReadStatus(ctx, js)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrKeyNotFound):
		fmt.Fprintln(w, "acting scheduler: none has run yet")
		return
	case err != nil:
		// A timeout is not news that no scheduler runs.
		fmt.Fprintf(w, "acting scheduler: unknown (%v)\n", err)
		return
	}
	fmt.Fprintf(w, "acting scheduler: %s (%s), last cycle %s ago: plan %s with %d moves, %s\n",
		daemon.Safe(st.Scheduler), st.Mode, time.Since(st.TS).Round(time.Second), daemon.Safe(st.Plan), st.Moves,
		map[bool]string{true: "published", false: "unchanged, not published"}[st.Published])
}

func configCheck(_ context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 1 || len(args) == 1 && (args[0] == "-h" || args[0] == "--help") {
		fmt.Fprintln(stderr, "usage: guestdiag-scheduler config check [FILE]")
		return cli.ExitUsage
	}
	path := daemon.DefaultConfigPath
	if len(args) == 1 {
		path = args[0]
	}
	b, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return cli.ExitFailed
	}
	if _, err := daemon.Parse(path, b); err != nil {
		fmt.Fprintln(stderr, err)
		return cli.ExitFailed
	}
	fmt.Fprintf(stdout, "%s: ok\n", path)
	return cli.ExitOK
}
