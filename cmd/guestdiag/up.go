package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"

	"github.com/nats-io/nats.go"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/hostrelay"
	"github.com/guestdiag/guestdiag/internal/cli"
	"github.com/guestdiag/guestdiag/internal/collectord"
	"github.com/guestdiag/guestdiag/internal/natsutil"
	"github.com/guestdiag/guestdiag/internal/version"
	"github.com/guestdiag/guestdiag/protocol"
	"github.com/guestdiag/guestdiag/scheduler/daemon"
)

// upConfig is everything `guestdiag up` runs with.
type upConfig struct {
	// StoreDir holds JetStream's files: the stream and the state bucket.
	StoreDir string
	// NATSListen is the embedded server's host:port; port 0 picks a free one.
	NATSListen string
	// HTTPListen is the collector API's address.
	HTTPListen string
	Relay      hostrelay.Config
	// Collector holds the collector's own settings: knowledge-base
	// directories, authentication, Alertmanager.
	Collector collectord.Config
	// Scheduler runs the scheduler in advisory mode with the configuration
	// file SchedulerConfig: plans on the placement page, nothing moved.
	Scheduler       bool
	SchedulerConfig string
}

var upCmd = cli.Command{
	Name: "up", Args: "[flags]",
	Summary: "run NATS, the collector, an advisory scheduler and a relay for this host in one process",
}

func (a app) up(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, level, err := parseUpFlags(args, stderr)
	if err != nil {
		return cli.UsageExit(stderr, "guestdiag up", err)
	}
	logger := cli.Logger(stderr, level)
	if err := runUp(ctx, cfg, stdout, logger); err != nil {
		logger.Error("up_failed", "err", err)
		return cli.ExitFailed
	}
	return cli.ExitOK
}

func parseUpFlags(args []string, stderr io.Writer) (upConfig, slog.Level, error) {
	cfg := upConfig{}
	fs, level := cli.FlagSet("guestdiag up", upCmd.Usage("guestdiag"), stderr)
	fs.StringVar(&cfg.StoreDir, "store", defaultStoreDir(), "`dir`ectory for JetStream's files; created if missing")
	fs.StringVar(&cfg.NATSListen, "nats-listen", "127.0.0.1:4222", "`host:port` of the embedded NATS server; port 0 picks a free one")
	fs.StringVar(&cfg.HTTPListen, "http", collector.DefaultListen, "`address` of the dashboard and the collector API")
	fs.StringVar(&cfg.Relay.Host, "host", "", "`name` of this host in subjects and state (default: the host name)")
	fs.Var(hostrelay.GlobsFlag(&cfg.Relay.Globs), "glob", "channel socket `pattern`; repeat for several; an empty value turns globbing off (default "+hostrelay.DefaultGlob+")")
	fs.Var(hostrelay.ChannelsFlag(&cfg.Relay.Static), "channel", "static channel `NAME=PATH[,uuid=UUID]` of one VM; repeat for several")
	fs.BoolVar(&cfg.Scheduler, "scheduler", true, "run the scheduler in advisory mode (plans only; run guestdiag-scheduler to carry them out)")
	fs.StringVar(&cfg.SchedulerConfig, "scheduler-config", daemon.DefaultConfigPath, "the scheduler's configuration `file` (YAML); a missing default file is the defaults")
	pending := collectord.Flags(fs, &cfg.Collector)
	if err := cli.Parse(fs, args); err != nil {
		return cfg, *level, err
	}
	if err := pending.Finish(); err != nil {
		return cfg, *level, cli.ArgErrorf("%v", err)
	}
	if cfg.Relay.Host == "" {
		h, err := os.Hostname()
		if err != nil {
			return cfg, *level, cli.ArgErrorf("host name: %v; set --host", err)
		}
		cfg.Relay.Host = h
	}
	return cfg, *level, nil
}

// defaultStoreDir follows the XDG base directory spec for state on Unix and
// uses %LocalAppData% on Windows; ./guestdiag-data when neither is known.
func defaultStoreDir() string {
	if runtime.GOOS == "windows" {
		if d := os.Getenv("LocalAppData"); d != "" {
			return filepath.Join(d, "guestdiag")
		}
	} else {
		if d := os.Getenv("XDG_STATE_HOME"); d != "" {
			return filepath.Join(d, "guestdiag")
		}
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, ".local", "state", "guestdiag")
		}
	}
	return "guestdiag-data"
}

// runUp runs the control plane of one host until ctx is cancelled, then
// stops it in order: the relay first, so guests stop being acknowledged
// while everything behind it still works; then the collector and the
// scheduler; then the server.
func runUp(ctx context.Context, cfg upConfig, out io.Writer, logger *slog.Logger) error {
	host, portStr, err := net.SplitHostPort(cfg.NATSListen)
	if err != nil {
		return fmt.Errorf("--nats-listen: %w", err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return fmt.Errorf("--nats-listen: bad port %q", portStr)
	}
	if port == 0 {
		port = -1 // nats-server reads 0 as its default port, -1 as "any"
	}
	if err := os.MkdirAll(cfg.StoreDir, 0o750); err != nil {
		return fmt.Errorf("store: %w", err)
	}

	srv, err := natsutil.StartServer(natsutil.ServerConfig{Host: host, Port: port, StoreDir: cfg.StoreDir, ServerName: "guestdiag-" + cfg.Relay.Host})
	if err != nil {
		return err
	}
	defer func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	}()
	nc, err := nats.Connect(srv.ClientURL(), nats.InProcessServer(srv), nats.Name("guestdiag up"))
	if err != nil {
		return fmt.Errorf("connect to embedded nats: %w", err)
	}
	defer nc.Close()

	var sched *daemon.File
	if cfg.Scheduler {
		if sched, err = daemon.LoadFile(cfg.SchedulerConfig); err != nil {
			return err
		}
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.HTTPListen)
	if err != nil {
		return fmt.Errorf("--http: %w", err)
	}
	relay, err := hostrelay.New(cfg.Relay, nc, logger.With("component", "relay"))
	if err != nil {
		ln.Close()
		return err
	}

	api := "http://" + ln.Addr().String()
	fmt.Fprintf(out, "guestdiag %s up for host %s\n", version.Version, cfg.Relay.Host)
	fmt.Fprintf(out, "  dashboard: %s/\n", api)
	fmt.Fprintf(out, "  api:    %s/api/vms\n", api)
	fmt.Fprintf(out, "  nats:   %s\n", srv.ClientURL())
	fmt.Fprintf(out, "  store:  %s\n", cfg.StoreDir)
	fmt.Fprintf(out, "  status: guestdiag status --api %s\n", api)
	if cfg.Scheduler {
		fmt.Fprintf(out, "  placement: %s/placement (advisory scheduler)\n", api)
	}

	parts := []part{
		{"relay", relay.Run},
		{"collector", func(ctx context.Context) error { return collectord.Run(ctx, nc, ln, cfg.Collector, logger) }},
	}
	if cfg.Scheduler {
		parts = append(parts, part{"scheduler", func(ctx context.Context) error {
			return daemon.Run(ctx, nc, daemon.Config{Name: cfg.Relay.Host, Mode: protocol.ModeAdvisory, File: sched, Logger: logger.With("component", "scheduler")})
		}})
	}
	err = runParts(ctx, parts)
	fmt.Fprintln(out, "guestdiag up: stopped")
	return err
}

// part is one daemon of guestdiag up.
type part struct {
	name string
	run  func(context.Context) error
}

// runParts runs every part until ctx is cancelled or one of them stops,
// then stops them in the order given: the relay first, so guests stop
// being acknowledged while everything behind it still works.
func runParts(ctx context.Context, parts []part) error {
	// Each part gets its own context so that shutdown can go in order.
	base := context.WithoutCancel(ctx)
	errs := make([]error, len(parts))
	stops := make([]context.CancelFunc, len(parts))
	dones := make([]chan struct{}, len(parts))
	ended := make(chan int, len(parts))
	for i, p := range parts {
		pctx, stop := context.WithCancel(base)
		stops[i], dones[i] = stop, make(chan struct{})
		defer stop()
		go func() {
			errs[i] = p.run(pctx)
			close(dones[i])
			ended <- i
		}()
	}
	early := -1
	select {
	case <-ctx.Done():
	case early = <-ended:
	}
	var all []error
	for i, p := range parts {
		stops[i]()
		<-dones[i]
		if i == early {
			errs[i] = cmp.Or(errs[i], errStoppedEarly)
		}
		all = append(all, labelled(p.name, errs[i]))
	}
	return errors.Join(all...)
}

var errStoppedEarly = errors.New("stopped before shutdown was asked for")

func labelled(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}
