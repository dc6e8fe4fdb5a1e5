// Command guestdiag-agent runs inside a guest and reports its diagnostic
// checks to the host over virtio-serial.
//
//	guestdiag-agent [flags]                                 run the agent
//	guestdiag-agent check <name> [--once] [--json]          run one check and print its results
//	guestdiag-agent config check [FILE]                     check a config file, print the effective config
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
	"unicode"
	"unicode/utf8"

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
		case "config":
			return runConfig(args[1:], stdout, stderr)
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
	guestagent.ApplySelfLimits(cfg, logger)
	if err := guestagent.Run(ctx, cfg, logger); err != nil {
		logger.Error("agent_failed", "err", err)
		return cli.ExitFailed
	}
	return cli.ExitOK
}

// parseAgentFlags reads the config file over the defaults, then the flags
// given over that.
func parseAgentFlags(args []string, stderr io.Writer) (guestagent.Config, slog.Level, error) {
	var flagCfg guestagent.Config
	fs, level := cli.FlagSet("guestdiag-agent", "usage: guestdiag-agent [flags]\n       guestdiag-agent check <name> [--once] [--json]\n       guestdiag-agent config check [FILE]\n       guestdiag-agent service install [flags] | uninstall | status | run [flags]\n       guestdiag-agent version\n", stderr)
	d := guestagent.DefaultConfig()
	fs.StringVar(&flagCfg.PortName, "port-name", d.PortName, "virtio-serial port `name` (Linux: looked up in sysfs; Windows: opened as \\\\.\\Global\\NAME)")
	fs.StringVar(&flagCfg.DevicePath, "device", "", "open this device `path` instead of looking the port up")
	fs.StringVar(&flagCfg.StateDir, "state-dir", d.StateDir, "`dir`ectory for the spool and the checks' state; created if missing")
	fs.DurationVar(&flagCfg.HeartbeatInterval, "heartbeat", d.HeartbeatInterval, "time between heartbeats")
	transports := fs.String("transports", strings.Join(d.Transports, ","), "transports in order of preference, comma separated: virtio-serial, vsock")
	vsockPort := fs.Uint("vsock-port", uint(d.VsockPort), "vsock `port` the agent dials on the host (CID 2)")
	configFile := fs.String("config", "", "config `file` (YAML; default "+guestagent.DefaultConfigFile+" if it exists)")
	spoolMax := sizeFlag(d.SpoolMaxBytes)
	fs.Var(&spoolMax, "spool-max", "bound of the spool on disk, in bytes or with a KiB/MiB/GiB suffix")
	if err := cli.Parse(fs, args); err != nil {
		return d, *level, err
	}
	cfg, err := loadConfigFile(*configFile)
	if err != nil {
		return cfg, *level, err
	}
	var errs []error
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "port-name":
			cfg.PortName = flagCfg.PortName
		case "device":
			cfg.DevicePath = flagCfg.DevicePath
		case "state-dir":
			cfg.StateDir = flagCfg.StateDir
		case "heartbeat":
			if flagCfg.HeartbeatInterval <= 0 {
				errs = append(errs, errors.New("--heartbeat must be positive"))
			}
			cfg.HeartbeatInterval = flagCfg.HeartbeatInterval
		case "transports":
			cfg.Transports = strings.Split(*transports, ",")
			if err := guestagent.CheckTransports(cfg.Transports); err != nil {
				errs = append(errs, fmt.Errorf("--transports: %w", err))
			}
		case "vsock-port":
			if *vsockPort == 0 || *vsockPort >= 0xFFFFFFFF {
				errs = append(errs, errors.New("--vsock-port: want 1 to 4294967294"))
			}
			cfg.VsockPort = uint32(*vsockPort)
		case "spool-max":
			cfg.SpoolMaxBytes = int64(spoolMax)
		}
	})
	return cfg, *level, errors.Join(errs...)
}

// loadConfigFile reads the named file, or the default one if it exists,
// over the defaults.
func loadConfigFile(name string) (guestagent.Config, error) {
	if name == "" {
		if name = defaultConfigFile(); name == "" {
			return guestagent.DefaultConfig(), nil
		}
	}
	return guestagent.LoadConfigFile(name)
}

// defaultConfigFile returns the default config file, or the earlier
// versions' JSON file when only that exists, or "" when neither does.
func defaultConfigFile() string {
	for _, name := range []string{guestagent.DefaultConfigFile, guestagent.LegacyConfigFile} {
		if _, err := os.Stat(name); err == nil {
			return name
		}
	}
	return ""
}

// runConfig is "config check [FILE]": every mistake in the file on its own
// line with file:line, exit 1; or the effective configuration, exit 0.
func runConfig(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "check" || len(args) > 2 {
		fmt.Fprintln(stderr, "usage: guestdiag-agent config check [FILE]   (default "+guestagent.DefaultConfigFile+")")
		return cli.ExitUsage
	}
	name := defaultConfigFile()
	if len(args) == 2 {
		name = args[1]
	} else if name == "" {
		name = guestagent.DefaultConfigFile // its absence is the error to report
	}
	cfg, err := guestagent.LoadConfigFile(name)
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintln(stderr, printable(line))
		}
		return cli.ExitFailed
	}
	b, err := guestagent.EffectiveYAML(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "guestdiag-agent:", err)
		return cli.ExitFailed
	}
	fmt.Fprintf(stdout, "# %s is valid; the effective configuration:\n", printable(name))
	stdout.Write(b)
	return cli.ExitOK
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
	configFile := fs.String("config", "", "config `file` whose settings for this check apply (default "+guestagent.DefaultConfigFile+" if it exists)")
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
	n, err := guestagent.ParseSize(v)
	if err != nil {
		return err
	}
	*s = sizeFlag(n)
	return nil
}

// printable escapes what a terminal would act on: a config file may hold
// anything, and its text comes back in the errors.
func printable(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) {
			fmt.Fprintf(&b, "\\x%02x", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
