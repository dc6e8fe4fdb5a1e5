package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/guestdiag/guestdiag/guestagent"
	"github.com/guestdiag/guestdiag/internal/cli"
	"github.com/guestdiag/guestdiag/internal/winsvc"
)

// The Windows service's identity. The MSI's ServiceInstall uses the same
// name, display name and arguments, so either way of installing makes the
// same service.
const (
	serviceName        = "guestdiag-agent"
	serviceDisplayName = "guestdiag agent"
	serviceDescription = "Runs guestdiag's diagnostic checks and reports them to the host over virtio-serial."
)

// uninstallWait bounds the wait for a running service to stop.
const uninstallWait = 30 * time.Second

// runService handles `guestdiag-agent service install|uninstall|run`.
// install takes the agent's flags and records them on the service's command
// line (after `service run`), checking them first.
func runService(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	usage := "usage: guestdiag-agent service install [agent flags] | uninstall | status | run [agent flags]"
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return cli.ExitUsage
	}
	switch args[0] {
	case "install":
		if _, _, err := parseAgentFlags(args[1:], stderr); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return cli.ExitOK
			}
			fmt.Fprintln(stderr, "guestdiag-agent:", err)
			return cli.ExitUsage
		}
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintln(stderr, "guestdiag-agent: own path:", err)
			return cli.ExitFailed
		}
		err = winsvc.Install(winsvc.Service{
			Name: serviceName, DisplayName: serviceDisplayName, Description: serviceDescription,
			Exe: exe, Args: append([]string{"service", "run"}, args[1:]...),
		}, cli.Logger(stderr, slog.LevelInfo))
		if err != nil {
			fmt.Fprintln(stderr, "guestdiag-agent:", err)
			return cli.ExitFailed
		}
		fmt.Fprintf(stdout, "installed service %s (%s), started automatically, restarted after a failure\n", serviceName, exe)
		return cli.ExitOK
	case "uninstall":
		if len(args) > 1 {
			fmt.Fprintln(stderr, usage)
			return cli.ExitUsage
		}
		if err := winsvc.Uninstall(serviceName, uninstallWait); err != nil {
			fmt.Fprintln(stderr, "guestdiag-agent:", err)
			return cli.ExitFailed
		}
		fmt.Fprintf(stdout, "removed service %s\n", serviceName)
		return cli.ExitOK
	case "status":
		if len(args) > 1 {
			fmt.Fprintln(stderr, usage)
			return cli.ExitUsage
		}
		st, err := winsvc.Query(serviceName)
		if err != nil {
			fmt.Fprintln(stderr, "guestdiag-agent:", err)
			return cli.ExitFailed
		}
		printServiceStatus(stdout, st)
		return cli.ExitOK
	case "run":
		return serveAsService(args[1:], stderr)
	}
	fmt.Fprintln(stderr, usage)
	return cli.ExitUsage
}

// serveAsService runs the agent under the service manager, which started
// this process with `service run` and the installed flags.
func serveAsService(args []string, stderr io.Writer) int {
	cfg, level, err := parseAgentFlags(args, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "guestdiag-agent:", err)
		return cli.ExitUsage
	}
	err = winsvc.Run(serviceName, cli.Logger(stderr, level), func(ctx context.Context, logger *slog.Logger) error {
		return guestagent.Run(ctx, cfg, logger)
	})
	if err != nil {
		fmt.Fprintln(stderr, "guestdiag-agent:", err)
		return cli.ExitFailed
	}
	return cli.ExitOK
}

// printServiceStatus prints one "key: value" line per fact, for people and
// for the Wine tests alike.
func printServiceStatus(w io.Writer, st winsvc.Status) {
	fmt.Fprintf(w, "service: %s\nstate: %s\nstart: %s\n", serviceName, st.State, st.StartType)
	if st.RecoveryErr != nil {
		fmt.Fprintf(w, "recovery: unknown: %v\n", st.RecoveryErr)
		return
	}
	fmt.Fprintf(w, "recovery: restart after %v, reset after %v\n", st.Restarts, st.ResetPeriod)
}
