package main

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"testing"

	"github.com/guestdiag/guestdiag/internal/cli"
)

func TestServiceCommand(t *testing.T) {
	type serviceCase struct {
		name       string
		args       []string
		wantCode   int
		wantStderr string
	}
	tests := []serviceCase{
		{"no subcommand prints the usage", []string{"service"}, cli.ExitUsage, "usage: guestdiag-agent service install"},
		{"an unknown subcommand prints the usage", []string{"service", "start"}, cli.ExitUsage, "usage: guestdiag-agent service install"},
		{"uninstall takes no arguments", []string{"service", "uninstall", "now"}, cli.ExitUsage, "usage:"},
		{"install checks the agent flags first", []string{"service", "install", "--heartbeat", "0s"}, cli.ExitUsage, "--heartbeat must be positive"},
	}
	if runtime.GOOS != "windows" {
		tests = append(tests, serviceCase{"install says services are Windows only", []string{"service", "install"},
			cli.ExitFailed, "windows services on " + runtime.GOOS + ": unsupported operation"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, &stdout, &stderr)
			if code != tt.wantCode || !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("exit %d, stderr %q; want exit %d with %q", code, stderr.String(), tt.wantCode, tt.wantStderr)
			}
		})
	}
}
