package main

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/guestdiag/guestdiag/scheduler/daemon"
)

func TestExecutorsAreBuiltFromTheirSections(t *testing.T) {
	tests := []struct {
		name, executor, file, err string
	}{
		{"the qmp executor takes its sockets and prepare command", "qmp",
			"executors:\n  qmp:\n    sockets: {hv1: \"/run/q/{vm}.sock\"}\n    prepare_command: [/usr/local/bin/incoming, \"{vm}\"]\n", ""},
		{"the qmp executor without a section says what it lacks", "qmp", "interval: 60s\n", "no host has a QMP socket template"},
		{"the libvirt executor runs with its defaults", "libvirt", "interval: 60s\n", ""},
		{"the libvirt executor refuses a target URI without {host}", "libvirt",
			"executors:\n  libvirt:\n    target_uri: qemu+ssh://hv2/system\n", "has no {host}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := daemon.Parse("scheduler.yaml", []byte(tt.file))
			if err != nil {
				t.Fatal(err)
			}
			ex, err := daemon.NewExecutor(tt.executor, f, slog.New(slog.DiscardHandler))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("error %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ex.Name() != tt.executor {
				t.Errorf("built executor %q, want %q", ex.Name(), tt.executor)
			}
		})
	}
}
