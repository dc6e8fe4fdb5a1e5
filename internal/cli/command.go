package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Command is one subcommand of a binary that has several.
type Command struct {
	// Name is the words that select the command: "status", or "kb lint"
	// for one of a group.
	Name string
	// Args is the synopsis of what follows the name: "[flags] NAME".
	Args string
	// Summary says in one line what the command does.
	Summary string
	// Run gets the arguments after the name.
	Run func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

// Usage is the first lines of a command's -h: its synopsis and summary.
func (c Command) Usage(binary string) string {
	return fmt.Sprintf("usage: %s\n\n%s.\n", strings.TrimSpace(binary+" "+c.Name+" "+c.Args), c.Summary)
}

// Commands returns the run function of a binary made of cmds, for Main.
// The first words of args select a command, which gets the rest.
// "help", -h and --help list the commands on stdout; "help CMD" is "CMD -h".
// No command, or an unknown one, prints the list on stderr and returns
// ExitUsage, so a typo never runs something else.
func Commands(binary string, cmds []Command) func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var run func(ctx context.Context, args []string, stdout, stderr io.Writer) int
	run = func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
		if len(args) == 0 {
			fmt.Fprintf(stderr, "%s: missing command\n\n", binary)
			listCommands(stderr, binary, cmds)
			return ExitUsage
		}
		if args[0] == "help" && len(args) > 1 {
			return run(ctx, append(args[1:len(args):len(args)], "-h"), stdout, stderr)
		}
		if isHelp(args[0]) {
			listCommands(stdout, binary, cmds)
			return ExitOK
		}
		if c, n := find(cmds, args); n > 0 {
			return c.Run(ctx, args[n:], stdout, stderr)
		}
		group := isGroup(cmds, args[0])
		switch {
		case group && len(args) > 1 && isHelp(args[1]):
			listCommands(stdout, binary, cmds)
			return ExitOK
		case group && len(args) == 1:
			fmt.Fprintf(stderr, "%s %s: missing command\n\n", binary, args[0])
		case group:
			fmt.Fprintf(stderr, "%s: unknown command %q\n\n", binary, args[0]+" "+args[1])
		default:
			fmt.Fprintf(stderr, "%s: unknown command %q\n\n", binary, args[0])
		}
		listCommands(stderr, binary, cmds)
		return ExitUsage
	}
	return run
}

// find returns the command whose name is the longest run of leading words
// of args, and how many words that is; 0 if none matches.
func find(cmds []Command, args []string) (Command, int) {
	var best Command
	n := 0
	for _, c := range cmds {
		words := strings.Fields(c.Name)
		if len(words) <= n || len(words) > len(args) {
			continue
		}
		match := true
		for i, w := range words {
			if args[i] != w {
				match = false
				break
			}
		}
		if match {
			best, n = c, len(words)
		}
	}
	return best, n
}

func isHelp(arg string) bool {
	switch arg {
	case "help", "-h", "-help", "--help":
		return true
	}
	return false
}

func isGroup(cmds []Command, word string) bool {
	for _, c := range cmds {
		if first, _, ok := strings.Cut(c.Name, " "); ok && first == word {
			return true
		}
	}
	return false
}

func listCommands(w io.Writer, binary string, cmds []Command) {
	fmt.Fprintf(w, "usage: %s <command> [flags] [arguments]\n\ncommands:\n", binary)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range cmds {
		fmt.Fprintf(tw, "  %s %s\t%s\n", c.Name, c.Args, c.Summary)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nRun \"%s <command> -h\" for a command's flags.\n", binary)
}

// NewFlagSet returns a flag set that reports errors to stderr and prints
// usage before the flags, without the daemons' --log-level.
func NewFlagSet(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "%s\nflags:\n", usage)
		fs.PrintDefaults()
	}
	return fs
}

// ParseArgs parses flags wherever they stand among args, so that
// "vm web1 --host h1" reads like "vm --host h1 web1", and returns the other
// arguments in order. Everything after "--" is an argument.
func ParseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		left := fs.Args()
		if len(left) == 0 {
			return rest, nil
		}
		if used := len(args) - len(left); used > 0 && args[used-1] == "--" {
			return append(rest, left...), nil
		}
		rest = append(rest, left[0])
		args = left[1:]
	}
}

// ArgErrorf returns an error in a command's arguments other than its
// flags, such as a missing name; unlike the flag package's errors it has
// not been printed yet.
func ArgErrorf(format string, a ...any) error {
	return argError(fmt.Sprintf(format, a...))
}

type argError string

func (e argError) Error() string { return string(e) }

// UsageExit reports err, from Parse, ParseArgs or ArgErrorf, and returns
// the exit code: ExitOK after -h, for which the flag package printed the
// usage; ExitUsage otherwise, after printing what the flag package has not.
func UsageExit(stderr io.Writer, name string, err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	if _, ok := errors.AsType[argError](err); ok {
		fmt.Fprintf(stderr, "%s: %v (see %s -h)\n", name, err, name)
	}
	return ExitUsage
}
