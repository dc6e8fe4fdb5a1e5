// Command guestdiag-scheduler turns placement hints into migration plans.
// Today it has the trace-driven simulator, which replays CPU traces through
// the planner and the published baselines on the same data centre model:
//
//	guestdiag-scheduler simulate [flags] DAY_DIR...
package main

import (
	"context"
	"fmt"
	"io"

	"github.com/guestdiag/guestdiag/internal/cli"
	"github.com/guestdiag/guestdiag/internal/version"
)

func main() { cli.Main(run) }

var run = cli.Commands("guestdiag-scheduler", []cli.Command{
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
