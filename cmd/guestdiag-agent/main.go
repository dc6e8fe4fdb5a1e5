// Command guestdiag-agent runs inside a guest and reports its diagnostic
// checks to the host over virtio-serial.
//
//	guestdiag-agent [flags]                                 run the agent
//	guestdiag-agent check <name> [--once] [--json]          run one check and print its results
//	guestdiag-agent service install|uninstall|status|run [flags] manage or run the Windows service
//	guestdiag-agent version                                 print the version
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
	"strconv"
	"strings"
	"time"

	"github.com/guestdiag/guestdiag/checks"
	_ "github.com/guestdiag/guestdiag/checks/all" // the six checks register themselves
	"github.com/guestdiag/guestdiag/guestagent"
	"github.com/guestdiag/guestdiag/internal/cli"
	"github.com/guestdiag/guestdiag/internal/version"
	"github.com/guestdiag/guestdiag/internal/winsvc"
	"github.com/guestdiag/guestdiag/protocol"
)

// exitUnknown ends check --once for an unknown result, following the
// monitoring-plugin convention: 0 ok, 1 warn, 2 crit, 3 unknown.
const exitUnknown = 3

func main() { cli.Main(run) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "check":
			return runCheck(ctx, args[1:], stdout, stderr)
		case "service":
			return runService(ctx, args[1:], stdout, stderr)
		case "version":
			fmt.Fprintln(stdout, version.Version)
			return cli.ExitOK
		}
	}
	// Started by the service manager without `service run` (as a service
	// installed by other means may be): serve it all the same.
	if winsvc.IsService() {
		return serveAsService(args, stderr)
	}
	cfg, level, err := parseAgentFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return cli.ExitOK
	}
	if err != nil {
		fmt.Fprintln(stderr, "guestdiag-agent:", err)
		return cli.ExitUsage
	}
	logger := cli.Logger(stderr, level)
	if err := guestagent.Run(ctx, cfg, logger); err != nil {
		logger.Error("agent_failed", "err", err)
		return cli.ExitFailed
	}
	return cli.ExitOK
}

func parseAgentFlags(args []string, stderr io.Writer) (guestagent.Config, slog.Level, error) {
	cfg := guestagent.DefaultConfig()
	fs, level := cli.FlagSet("guestdiag-agent", "usage: guestdiag-agent [flags]\n       guestdiag-agent check <name> [--once] [--json]\n       guestdiag-agent service install [flags] | uninstall | run [flags]\n       guestdiag-agent version\n", stderr)
	fs.StringVar(&cfg.PortName, "port-name", cfg.PortName, "virtio-serial port `name` (Linux: looked up in sysfs; Windows: opened as \\\\.\\Global\\NAME)")
	fs.StringVar(&cfg.DevicePath, "device", "", "open this device `path` instead of looking the port up")
	fs.StringVar(&cfg.StateDir, "state-dir", cfg.StateDir, "`dir`ectory for the spool and the checks' state; created if missing")
	fs.DurationVar(&cfg.HeartbeatInterval, "heartbeat", cfg.HeartbeatInterval, "time between heartbeats")
	configFile := fs.String("config", "", "JSON config `file` with per-check settings (default "+guestagent.DefaultConfigFile+" if it exists)")
	spoolMax := sizeFlag(cfg.SpoolMaxBytes)
	fs.Var(&spoolMax, "spool-max", "bound of the spool on disk, in bytes or with a KiB/MiB/GiB suffix")
	if err := cli.Parse(fs, args); err != nil {
		return cfg, *level, err
	}
	if cfg.HeartbeatInterval <= 0 {
		return cfg, *level, errors.New("--heartbeat must be positive")
	}
	cfg.SpoolMaxBytes = int64(spoolMax)
	fc, err := loadConfigFile(*configFile)
	if err != nil {
		return cfg, *level, err
	}
	cfg.Checks = fc.Checks
	return cfg, *level, nil
}

// loadConfigFile reads the named file, or the default one if it exists.
func loadConfigFile(name string) (guestagent.FileConfig, error) {
	if name == "" {
		if _, err := os.Stat(guestagent.DefaultConfigFile); err != nil {
			return guestagent.FileConfig{}, nil
		}
		name = guestagent.DefaultConfigFile
	}
	return guestagent.LoadConfigFile(name)
}

// runCheck runs one check, once or on its interval and its own triggers,
// and prints each result: one line of text, or one JSON object per line
// with --json.
func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintln(stderr, "usage: guestdiag-agent check <name> [--once] [--json] [--interval d] [--config file] [--state-dir dir]")
		fmt.Fprintln(stderr, "checks:", checkNames())
		return cli.ExitUsage
	}
	reg, ok := checks.Lookup(args[0])
	if !ok {
		fmt.Fprintf(stderr, "guestdiag-agent: unknown check %q; known: %s\n", args[0], checkNames())
		return cli.ExitUsage
	}
	fs := flag.NewFlagSet("guestdiag-agent check "+reg.Name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	once := fs.Bool("once", false, "run once and exit with 0 ok, 1 warn, 2 crit, 3 unknown")
	asJSON := fs.Bool("json", false, "print results as JSON, one object per line")
	interval := fs.Duration("interval", 0, "time between runs without --once (default: the config file's, else the check's)")
	timeout := fs.Duration("timeout", 0, "time limit of one run (default: the config file's, else the check's)")
	configFile := fs.String("config", "", "JSON config `file` whose settings for this check apply (default "+guestagent.DefaultConfigFile+" if it exists)")
	stateDir := fs.String("state-dir", "", "keep and compare snapshots, cursors and offsets in this `dir`; without it every run starts afresh. Do not share the running agent's: runs here would take its changes")
	level := slog.LevelWarn
	fs.TextVar(&level, "log-level", level, "log `level`: debug, info, warn or error")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cli.ExitOK
		}
		return cli.ExitUsage
	}
	if fs.NArg() > 0 || *interval < 0 || *timeout < 0 {
		fmt.Fprintln(stderr, "guestdiag-agent: unexpected arguments or negative duration")
		return cli.ExitUsage
	}
	fc, err := loadConfigFile(*configFile)
	if err != nil {
		fmt.Fprintln(stderr, "guestdiag-agent:", err)
		return cli.ExitUsage
	}
	logger := cli.Logger(stderr, level)
	sc, err := guestagent.BuildCheck(reg.Name, fc.Checks[reg.Name], *stateDir, logger)
	if err != nil {
		fmt.Fprintln(stderr, "guestdiag-agent:", err)
		return cli.ExitFailed
	}
	if *interval > 0 {
		sc.Interval = *interval
	}
	if *timeout > 0 {
		sc.Timeout = *timeout
	}
	var printErr error
	exit := cli.ExitOK
	sc.Report = func(res checks.Result) bool {
		if printErr = printResult(stdout, reg.Name, res, *asJSON); printErr != nil {
			return false
		}
		if *once {
			exit = statusExit(res.Status)
		}
		return true
	}
	if *once {
		sc.Once(ctx)
	} else {
		sc.Run(ctx)
	}
	if printErr != nil {
		fmt.Fprintln(stderr, "guestdiag-agent:", printErr)
		return cli.ExitFailed
	}
	return exit
}

func printResult(w io.Writer, name string, res checks.Result, asJSON bool) error {
	if asJSON {
		b, err := json.Marshal(struct {
			Check string    `json:"check"`
			TS    time.Time `json:"ts"`
			checks.Result
		}{name, time.Now().UTC(), res})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s: %s\n", name, res.Status, res.Summary)
	for _, f := range res.Findings {
		fmt.Fprintf(&b, "  %s %s: %s\n", f.Severity, f.Code, f.Message)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func statusExit(s protocol.Status) int {
	switch s {
	case protocol.StatusOK:
		return cli.ExitOK
	case protocol.StatusWarn:
		return 1
	case protocol.StatusCrit:
		return 2
	}
	return exitUnknown
}

func checkNames() string {
	var names []string
	for _, r := range checks.All() {
		names = append(names, r.Name)
	}
	return strings.Join(names, ", ")
}

// sizeFlag is a byte count that accepts a binary unit suffix.
type sizeFlag int64

func (s *sizeFlag) String() string { return strconv.FormatInt(int64(*s), 10) }

func (s *sizeFlag) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*s = sizeFlag(n)
	return nil
}

// parseSize reads "1048576", "512KiB", "16MiB", "1GiB"; K, M and G alone
// are taken as binary units too.
func parseSize(v string) (int64, error) {
	num := strings.TrimSpace(v)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q: want a positive number of bytes, optionally with KiB, MiB or GiB", v)
	}
	return n * mult, nil
}
