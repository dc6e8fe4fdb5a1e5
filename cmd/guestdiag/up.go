package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
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
	"github.com/guestdiag/guestdiag/internal/natsutil"
	"github.com/guestdiag/guestdiag/internal/version"
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
}

func (c *cli) up(ctx context.Context, args []string) int {
	cfg, level, err := parseUpFlags(args, c.stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintln(c.stderr, "guestdiag up:", err)
		return exitUsage
	}
	logger := slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: level}))
	if err := runUp(ctx, cfg, c.stdout, logger); err != nil {
		logger.Error("up_failed", "err", err)
		return exitFailed
	}
	return exitOK
}

func parseUpFlags(args []string, stderr io.Writer) (upConfig, slog.Level, error) {
	cfg := upConfig{}
	fs := flag.NewFlagSet("guestdiag up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.StoreDir, "store", defaultStoreDir(), "`dir`ectory for JetStream's files; created if missing")
	fs.StringVar(&cfg.NATSListen, "nats-listen", "127.0.0.1:4222", "`host:port` of the embedded NATS server; port 0 picks a free one")
	fs.StringVar(&cfg.HTTPListen, "http", collector.DefaultListen, "`address` of the collector API")
	fs.StringVar(&cfg.Relay.Host, "host", "", "`name` of this host in subjects and state (default: the host name)")
	fs.Var(hostrelay.GlobsFlag(&cfg.Relay.Globs), "glob", "channel socket `pattern`; repeat for several; an empty value turns globbing off (default "+hostrelay.DefaultGlob+")")
	fs.Var(hostrelay.ChannelsFlag(&cfg.Relay.Static), "channel", "static channel `NAME=PATH[,uuid=UUID]` of one VM; repeat for several")
	level := slog.LevelInfo
	fs.TextVar(&level, "log-level", level, "log `level`: debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: guestdiag up [flags]\n\nRuns an embedded NATS server with JetStream, the collector and a relay for\nthis host in one process until interrupted.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return cfg, level, err
	}
	if fs.NArg() > 0 {
		return cfg, level, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if cfg.Relay.Host == "" {
		h, err := os.Hostname()
		if err != nil {
			return cfg, level, fmt.Errorf("host name: %w; set --host", err)
		}
		cfg.Relay.Host = h
	}
	return cfg, level, nil
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
// while everything behind it still works; then the collector; then the
// server.
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

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.HTTPListen)
	if err != nil {
		return fmt.Errorf("--http: %w", err)
	}
	col := collector.New(collector.Config{}, nc, logger.With("component", "collector"))
	relay, err := hostrelay.New(cfg.Relay, nc, logger.With("component", "relay"))
	if err != nil {
		ln.Close()
		return err
	}

	api := "http://" + ln.Addr().String()
	fmt.Fprintf(out, "guestdiag %s up for host %s\n", version.Version, cfg.Relay.Host)
	fmt.Fprintf(out, "  api:    %s/api/vms\n", api)
	fmt.Fprintf(out, "  nats:   %s\n", srv.ClientURL())
	fmt.Fprintf(out, "  store:  %s\n", cfg.StoreDir)
	fmt.Fprintf(out, "  status: guestdiag status --api %s\n", api)

	// Each part gets its own context so that shutdown can go in order.
	base := context.WithoutCancel(ctx)
	relayCtx, stopRelay := context.WithCancel(base)
	defer stopRelay()
	colCtx, stopCol := context.WithCancel(base)
	defer stopCol()
	relayDone, colDone := make(chan error, 1), make(chan error, 1)
	go func() { relayDone <- relay.Run(relayCtx) }()
	go func() { colDone <- col.Serve(colCtx, ln) }()

	var relayErr, colErr error
	relayOut, colOut := false, false
	select {
	case <-ctx.Done():
	case relayErr = <-relayDone:
		relayOut = true
		relayErr = cmp.Or(relayErr, errStoppedEarly)
	case colErr = <-colDone:
		colOut = true
		colErr = cmp.Or(colErr, errStoppedEarly)
	}
	stopRelay()
	if !relayOut {
		relayErr = <-relayDone
	}
	stopCol()
	if !colOut {
		colErr = <-colDone
	}
	fmt.Fprintln(out, "guestdiag up: stopped")
	return errors.Join(wrap("relay", relayErr), wrap("collector", colErr))
}

var errStoppedEarly = errors.New("stopped before shutdown was asked for")

func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}
