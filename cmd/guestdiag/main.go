// Command guestdiag is the operator's CLI: it runs a one-host control plane
// (up), reads the collector's API (status, alerts, vm) and works on
// knowledge-base files locally (kb search, kb lint). "guestdiag help" lists
// the commands; docs/configuration.md has every flag.
package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/guestdiag/guestdiag/internal/cli"
	"github.com/guestdiag/guestdiag/internal/version"
)

func main() { cli.Main(app{now: time.Now, width: terminalWidth}.run) }

// app carries the clock the commands read and how they learn the width of
// the terminal, so tests can fix both.
type app struct {
	now   func() time.Time
	width func(io.Writer) int
}

func (a app) run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cli.Commands("guestdiag", a.commands())(ctx, args, stdout, stderr)
}

func (a app) commands() []cli.Command {
	return []cli.Command{
		with(upCmd, a.up),
		with(statusCmd, a.status),
		with(alertsCmd, a.alerts),
		with(vmCmd, a.vm),
		with(hostListCmd, a.hostList),
		with(hostDrainCmd, a.hostDrain),
		with(hostUndrainCmd, a.hostUndrain),
		with(kbSearchCmd, a.kbSearch),
		with(kbLintCmd, a.kbLint),
		with(versionCmd, version1),
	}
}

func with(c cli.Command, run func(ctx context.Context, args []string, stdout, stderr io.Writer) int) cli.Command {
	c.Run = run
	return c
}

var versionCmd = cli.Command{Name: "version", Summary: "print the version"}

func version1(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := cli.NewFlagSet("guestdiag version", versionCmd.Usage("guestdiag"), stderr)
	if err := cli.Parse(fs, args); err != nil {
		return cli.UsageExit(stderr, "guestdiag version", err)
	}
	fmt.Fprintln(stdout, version.Version)
	return cli.ExitOK
}

// failed reports an error of running a command and returns ExitFailed.
func failed(stderr io.Writer, cmd string, err error) int {
	fmt.Fprintf(stderr, "guestdiag %s: %v\n", cmd, err)
	return cli.ExitFailed
}
