// Package cli is what every guestdiag main shares: exit codes, the signal
// handling, the log-level flag and strict flag parsing, so the four mains
// stay thin and behave alike; and the command table of the guestdiag CLI.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/guestdiag/guestdiag/internal/version"
)

// Exit codes of every guestdiag binary.
const (
	ExitOK     = 0
	ExitFailed = 1
	ExitUsage  = 64 // EX_USAGE: bad flags or arguments
)

// Main runs run with a context that SIGINT and SIGTERM cancel, and exits
// with the code it returns.
func Main(run func(ctx context.Context, args []string, stdout, stderr io.Writer) int) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// FlagSet returns a flag set that reports errors to stderr, prints usage
// (the synopsis lines) before the flags, and has the --log-level flag every
// daemon takes; the level is read after Parse.
func FlagSet(name, usage string, stderr io.Writer) (*flag.FlagSet, *slog.Level) {
	fs := NewFlagSet(name, usage, stderr)
	level := new(slog.Level)
	fs.TextVar(level, "log-level", slog.LevelInfo, "log `level`: debug, info, warn or error")
	return fs, level
}

// Parse parses args and refuses positional arguments, which no guestdiag
// command takes after its flags.
func Parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return ArgErrorf("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// Logger is the text logger every daemon writes to stderr.
func Logger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// Daemon returns the run function of a daemon's main: `NAME version` prints
// the version; otherwise parse reads the flags (exit 64 on a bad one) and
// start runs until ctx is cancelled, logging through a logger at the parsed
// level.
func Daemon[C any](name string,
	parse func(args []string, stderr io.Writer) (C, slog.Level, error),
	start func(ctx context.Context, cfg C, logger *slog.Logger) error,
) func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
		if len(args) == 1 && args[0] == "version" {
			fmt.Fprintln(stdout, version.Version)
			return ExitOK
		}
		cfg, level, err := parse(args, stderr)
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", name, err)
			return ExitUsage
		}
		logger := Logger(stderr, level)
		if err := start(ctx, cfg, logger); err != nil {
			logger.Error("daemon_failed", "cmd", name, "err", err)
			return ExitFailed
		}
		return ExitOK
	}
}
