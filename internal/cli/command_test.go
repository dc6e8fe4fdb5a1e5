package cli

import (
	"bytes"
	"context"
	"flag"
	"io"
	"slices"
	"strings"
	"testing"
)

// testCommands records which command ran with which arguments.
func testCommands(ran *string, got *[]string) []Command {
	cmd := func(name string) Command {
		return Command{Name: name, Args: "[flags]", Summary: "do " + name, Run: func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
			*ran, *got = name, args
			if slices.Contains(args, "-h") {
				return ExitOK
			}
			return 7
		}}
	}
	return []Command{cmd("status"), cmd("kb search"), cmd("kb lint")}
}

func TestCommandsDispatch(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantRan    string
		wantArgs   []string
		wantStdout string
		wantStderr string
	}{
		{"a command gets the arguments after its name", []string{"status", "-x", "y"}, 7, "status", []string{"-x", "y"}, "", ""},
		{"a two-word command is selected by both words", []string{"kb", "lint", "dir"}, 7, "kb lint", []string{"dir"}, "", ""},
		{"help lists the commands on stdout", []string{"help"}, ExitOK, "", nil, "  kb search [flags]  do kb search\n", ""},
		{"-h lists the commands on stdout", []string{"-h"}, ExitOK, "", nil, "  status [flags]     do status\n", ""},
		{"help CMD asks the command for its usage", []string{"help", "kb", "search"}, ExitOK, "kb search", []string{"-h"}, "", ""},
		{"no command is a usage error", nil, ExitUsage, "", nil, "", "guestdiag: missing command\n"},
		{"an unknown command is named", []string{"stauts"}, ExitUsage, "", nil, "", "guestdiag: unknown command \"stauts\"\n"},
		{"an unknown command of a group is named with it", []string{"kb", "serch", "x"}, ExitUsage, "", nil, "", "guestdiag: unknown command \"kb serch\"\n"},
		{"a group alone is missing its command", []string{"kb"}, ExitUsage, "", nil, "", "guestdiag kb: missing command\n"},
		{"help of an unknown command is a usage error", []string{"help", "nope"}, ExitUsage, "", nil, "", "unknown command \"nope\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ran string
			var got []string
			var stdout, stderr bytes.Buffer
			code := Commands("guestdiag", testCommands(&ran, &got))(context.Background(), tt.args, &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("exit code: got %d, want %d", code, tt.wantCode)
			}
			if ran != tt.wantRan || !slices.Equal(got, tt.wantArgs) {
				t.Errorf("ran %q with %q, want %q with %q", ran, got, tt.wantRan, tt.wantArgs)
			}
			if !strings.Contains(stdout.String(), tt.wantStdout) {
				t.Errorf("stdout: got %q, want it to contain %q", stdout.String(), tt.wantStdout)
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr: got %q, want it to contain %q", stderr.String(), tt.wantStderr)
			}
			if tt.wantCode == ExitUsage && !strings.Contains(stderr.String(), "commands:\n") {
				t.Errorf("stderr: got %q, want the list of commands after a usage error", stderr.String())
			}
		})
	}
}

func TestParseArgs(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantArgs []string
		wantHost string
		wantV    bool
	}{
		{"flags before the arguments", []string{"-host", "h1", "web1"}, []string{"web1"}, "h1", false},
		{"flags after the arguments", []string{"web1", "-host", "h1", "-v"}, []string{"web1"}, "h1", true},
		{"flags between the arguments", []string{"disk", "-v", "full"}, []string{"disk", "full"}, "", true},
		{"everything after -- is an argument", []string{"a", "--", "-v", "-host"}, []string{"a", "-v", "-host"}, "", false},
		{"no arguments", []string{"-v"}, nil, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := NewFlagSet("x", "usage: x", io.Discard)
			host := fs.String("host", "", "")
			v := fs.Bool("v", false, "")
			got, err := ParseArgs(fs, tt.args)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.wantArgs) || *host != tt.wantHost || *v != tt.wantV {
				t.Errorf("got args %q host %q v %v, want %q %q %v", got, *host, *v, tt.wantArgs, tt.wantHost, tt.wantV)
			}
		})
	}
}

func TestUsageExit(t *testing.T) {
	fs := NewFlagSet("guestdiag vm", "usage: guestdiag vm NAME", io.Discard)
	_, flagErr := ParseArgs(fs, []string{"-nope"})
	_, helpErr := ParseArgs(fs, []string{"-h"})
	tests := []struct {
		name       string
		err        error
		wantCode   int
		wantStderr string
	}{
		{"-h is not an error", helpErr, ExitOK, ""},
		{"a bad flag, which the flag package printed, is not printed again", flagErr, ExitUsage, ""},
		{"an argument error is printed with a pointer to -h", ArgErrorf("missing the VM name"), ExitUsage, "guestdiag vm: missing the VM name (see guestdiag vm -h)\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if got := UsageExit(&stderr, "guestdiag vm", tt.err); got != tt.wantCode {
				t.Errorf("exit code: got %d, want %d", got, tt.wantCode)
			}
			if stderr.String() != tt.wantStderr {
				t.Errorf("stderr: got %q, want %q", stderr.String(), tt.wantStderr)
			}
		})
	}
	if helpErr != flag.ErrHelp {
		t.Errorf("ParseArgs -h: got %v, want flag.ErrHelp", helpErr)
	}
}
