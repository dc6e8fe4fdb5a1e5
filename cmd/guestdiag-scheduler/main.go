// Command guestdiag-scheduler turns host usage and placement hints into
// migration plans, publishes them, and in execute mode carries them out;
// it also prints the plan of the moment and replays CPU traces through the
// planner and the published baselines:
//
//	guestdiag-scheduler run [flags]
//	guestdiag-scheduler plan [flags]
//	guestdiag-scheduler config check [FILE]
//	guestdiag-scheduler simulate [flags] DAY_DIR...
package main

import (
	"context"
	"fmt"
	"io"

	"github.com/guestdiag/guestdiag/internal/cli"
	"github.com/guestdiag/guestdiag/internal/version"
	"github.com/guestdiag/guestdiag/scheduler/daemon"
)

func main() { cli.Main(run) }

var run = cli.Commands("guestdiag-scheduler", []cli.Command{
	{
		Name:    "run",
		Args:    "[flags]",
		Summary: "Follow host usage and hints, plan every interval while holding the lease, publish plans on guestdiag.plan, and in execute mode migrate VMs",
		Run:     cli.Daemon("guestdiag-scheduler run", parseRun, startRun),
	},
	{
		Name:    "plan",
		Args:    "[flags]",
		Summary: "Print the plan the current state gives, without publishing or moving anything",
		Run:     planCmd,
	},
	{
		Name:    "config check",
		Args:    "[FILE]",
		Summary: "Check a scheduler configuration file (default " + daemon.DefaultConfigPath + ") and print its mistakes as FILE:LINE",
		Run:     configCheck,
	},
	{
		Name:    "simulate",
		Args:    "[flags] DAY_DIR...",
		Summary: "Replay PlanetLab-style CPU traces (one folder per day, one file per VM) through the planner and the baselines, and print migrations, SLATAH, PDM, SLAV, energy and ESV",
		Run: func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
			return simulate(ctx, args, stdout, stderr)
		},
	},
	{
		Name:    "version",
		Summary: "Print the version",
		Run: func(_ context.Context, _ []string, stdout, _ io.Writer) int {
			fmt.Fprintln(stdout, version.Version)
			return cli.ExitOK
		},
	},
})
