// Command guestdiag is the operator's CLI.
//
//	guestdiag up [flags]        run NATS, the collector and a relay for this host in one process
//	guestdiag status [--api URL] print the fleet table
//	guestdiag version           print the version
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/guestdiag/guestdiag/internal/version"
)

const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 64
)

const usage = `usage: guestdiag <command> [flags]

commands:
  up       run an embedded NATS server, the collector and a relay for this host
  status   print the fleet table from the collector API
  version  print the version

Run "guestdiag <command> -h" for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	c := &cli{stdout: os.Stdout, stderr: os.Stderr, now: time.Now}
	code := c.run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// cli carries what the commands write to and the clock they read, so tests
// can swap both.
type cli struct {
	stdout, stderr io.Writer
	now            func() time.Time
}

func (c *cli) run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "up":
		return c.up(ctx, args[1:])
	case "status":
		return c.status(ctx, args[1:])
	case "version":
		fmt.Fprintln(c.stdout, version.Version)
		return exitOK
	case "help", "-h", "-help", "--help":
		fmt.Fprint(c.stdout, usage)
		return exitOK
	}
	fmt.Fprintf(c.stderr, "guestdiag: unknown command %q\n\n%s", args[0], usage)
	return exitUsage
}
