package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/guestdiag/guestdiag/internal/cli"

	"github.com/guestdiag/guestdiag/hostrelay"
	"github.com/guestdiag/guestdiag/internal/version"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name         string
		args         []string
		wantGlobs    []string
		wantCh       []hostrelay.Channel
		wantLevel    slog.Level
		wantBytesSec float64
	}{
		{
			name:         "no glob flag keeps the libvirt default",
			args:         nil,
			wantGlobs:    nil,
			wantLevel:    slog.LevelInfo,
			wantBytesSec: hostrelay.DefaultMaxBytesRate,
		},
		{
			name:         "glob flags replace the default",
			args:         []string{"--glob", "/a/*/s", "--glob", "/b/*/s", "--log-level", "debug"},
			wantGlobs:    []string{"/a/*/s", "/b/*/s"},
			wantLevel:    slog.LevelDebug,
			wantBytesSec: hostrelay.DefaultMaxBytesRate,
		},
		{
			name:      "an empty glob turns globbing off, leaving static channels",
			args:      []string{"--glob=", "--channel", "web01=/run/web01.sock,uuid=6F1C2A3B-4D5E-4F60-8172-93A4B5C6D7E8", "--channel", "db=/run/a,b.sock"},
			wantGlobs: []string{},
			wantCh: []hostrelay.Channel{
				{Name: "web01", Path: "/run/web01.sock", UUID: "6f1c2a3b-4d5e-4f60-8172-93a4b5c6d7e8"},
				{Name: "db", Path: "/run/a,b.sock"},
			},
			wantLevel:    slog.LevelInfo,
			wantBytesSec: hostrelay.DefaultMaxBytesRate,
		},
		{
			name:         "the byte rate is set in bytes per second",
			args:         []string{"--max-bytes-rate", "65536"},
			wantLevel:    slog.LevelInfo,
			wantBytesSec: 65536,
		},
		{
			name:         "inf turns the byte rate off",
			args:         []string{"--max-bytes-rate", "inf"},
			wantLevel:    slog.LevelInfo,
			wantBytesSec: math.Inf(1),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, level, err := parseFlags(tt.args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(cfg.Globs, tt.wantGlobs) {
				t.Errorf("globs %#v, want %#v", cfg.Globs, tt.wantGlobs)
			}
			if !reflect.DeepEqual(cfg.Static, tt.wantCh) {
				t.Errorf("channels %+v, want %+v", cfg.Static, tt.wantCh)
			}
			if level != tt.wantLevel {
				t.Errorf("level %v, want %v", level, tt.wantLevel)
			}
			if cfg.MaxBytesRate != tt.wantBytesSec {
				t.Errorf("max bytes rate %v, want %v", cfg.MaxBytesRate, tt.wantBytesSec)
			}
		})
	}
}

func TestRunRefusesBadFlagsWithExitCode64(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"a channel without a path", []string{"--channel", "web01"}, "web01"},
		{"a channel without a name", []string{"--channel", "=/run/x.sock"}, "=/run/x.sock"},
		{"a channel with a bad uuid", []string{"--channel", "web01=/run/x.sock,uuid=x"}, "not a UUID"},
		{"two channels with one VM name", []string{"--channel", "web01=/run/a.sock", "--channel", "web01=/run/b.sock"}, "given twice"},
		{"a glob that is not a pattern", []string{"--glob", "/run/[/s"}, "syntax error in pattern"},
		{"a byte rate that is not positive", []string{"--max-bytes-rate", "0"}, "not a positive number"},
		{"an unknown log level", []string{"--log-level", "loud"}, "loud"},
		{"a stray argument", []string{"stray"}, `unexpected argument "stray"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			// ctx is already cancelled: a run that got past the flags
			// would return at once, with exit code 0.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if code := run(ctx, tt.args, &stdout, &stderr); code != cli.ExitUsage {
				t.Errorf("run(%q) exit code %d, want %d; stderr:\n%s", tt.args, code, cli.ExitUsage, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.wantErr) {
				t.Errorf("stderr %q does not say %q", stderr.String(), tt.wantErr)
			}
		})
	}
}

func TestRunPrintsItsVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"version"}, &stdout, &stderr); code != cli.ExitOK {
		t.Fatalf("version: exit code %d, want 0; stderr %s", code, stderr.String())
	}
	if got, want := stdout.String(), version.Version+"\n"; got != want {
		t.Errorf("version printed %q, want %q", got, want)
	}
}

func TestRunHelpExitsZero(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"-h"}, &stdout, &stderr); code != cli.ExitOK {
		t.Errorf("-h: exit code %d, want 0", code)
	}
	if !strings.Contains(stderr.String(), "usage: guestdiag-relay") {
		t.Errorf("-h printed %q, want the usage", stderr.String())
	}
}

func TestParseFlagsReadsTheMemoryLimit(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want int64
	}{
		{"no flag leaves the daemon's default", nil, 0},
		{"a size with a unit is taken in bytes", []string{"--memory-limit", "64MiB"}, 64 << 20},
		{"0 turns the limit off", []string{"--memory-limit", "0"}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _, err := parseFlags(tt.args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.MemoryLimit != tt.want {
				t.Errorf("memory limit %d, want %d", cfg.MemoryLimit, tt.want)
			}
		})
	}
}
