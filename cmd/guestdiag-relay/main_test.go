package main

import (
	"io"
	"log/slog"
	"reflect"
	"testing"

	"github.com/guestdiag/guestdiag/hostrelay"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		wantGlobs []string
		wantCh    []hostrelay.Channel
		wantLevel slog.Level
	}{
		{
			name:      "no glob flag keeps the libvirt default",
			args:      nil,
			wantGlobs: nil,
			wantLevel: slog.LevelInfo,
		},
		{
			name:      "glob flags replace the default",
			args:      []string{"--glob", "/a/*/s", "--glob", "/b/*/s", "--log-level", "debug"},
			wantGlobs: []string{"/a/*/s", "/b/*/s"},
			wantLevel: slog.LevelDebug,
		},
		{
			name:      "an empty glob turns globbing off, leaving static channels",
			args:      []string{"--glob=", "--channel", "web01=/run/web01.sock,uuid=6f1c2a3b-4d5e-4f60-8172-93a4b5c6d7e8", "--channel", "db=/run/a,b.sock"},
			wantGlobs: []string{},
			wantCh: []hostrelay.Channel{
				{Name: "web01", Path: "/run/web01.sock", UUID: "6f1c2a3b-4d5e-4f60-8172-93a4b5c6d7e8"},
				{Name: "db", Path: "/run/a,b.sock"},
			},
			wantLevel: slog.LevelInfo,
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
		})
	}
}

func TestParseFlagsRejects(t *testing.T) {
	for _, args := range [][]string{
		{"--channel", "web01"},
		{"--channel", "=/run/x.sock"},
		{"--channel", "web01=,uuid=x"},
		{"--log-level", "loud"},
		{"stray"},
	} {
		if _, _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) succeeded, want an error", args)
		}
	}
}
