//go:build unix

package executor

import (
	"strings"
	"testing"
	"time"
)

func TestParseDestination(t *testing.T) {
	tests := []struct {
		name, out string
		want      Destination
		err       string
	}{
		{name: "uri and qmp lines in any order are read", out: "qmp=/run/d.qmp\nuri=tcp:10.0.0.2:49152\n", want: Destination{URI: "tcp:10.0.0.2:49152", QMP: "/run/d.qmp"}},
		{name: "blank lines are ignored and qmp is optional", out: "\nuri=unix:/run/in.sock\n\n", want: Destination{URI: "unix:/run/in.sock"}},
		{name: "a log line on stdout is an error naming its line", out: "starting qemu\nuri=unix:/x\n", err: `line 1: "starting qemu"`},
		{name: "a second uri is an error", out: "uri=unix:/a\nuri=unix:/b\n", err: "line 2"},
		{name: "no uri is an error", out: "qmp=/run/d.qmp\n", err: "no uri= line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseDestination([]byte(tt.out))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("error %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestPrepareCommand(t *testing.T) {
	t.Run("placeholders are replaced in each argument and stdout gives the destination", func(t *testing.T) {
		prep := commandPrepare([]string{"sh", "-c", `echo "uri=unix:/in/$1.$2.$3"; echo qmp=/q/{vm}`, "sh", "{vm}", "{from}", "{to}"}, time.Minute)
		got, err := prep(t.Context(), "web1", "hostA", "hostB")
		if err != nil {
			t.Fatal(err)
		}
		if want := (Destination{URI: "unix:/in/web1.hostA.hostB", QMP: "/q/web1"}); got != want {
			t.Errorf("got %+v, want %+v", got, want)
		}
	})
	t.Run("a failing command's stderr is in the error", func(t *testing.T) {
		prep := commandPrepare([]string{"sh", "-c", "echo no room on hostB >&2; exit 3"}, time.Minute)
		_, err := prep(t.Context(), "web1", "hostA", "hostB")
		if err == nil || !strings.Contains(err.Error(), "no room on hostB") || !strings.Contains(err.Error(), "exit status 3") {
			t.Errorf("error %v, want the command's stderr and exit status", err)
		}
	})
	t.Run("a command that hangs is ended by its timeout", func(t *testing.T) {
		prep := commandPrepare([]string{"sleep", "30"}, 200*time.Millisecond)
		start := time.Now()
		if _, err := prep(t.Context(), "web1", "hostA", "hostB"); err == nil {
			t.Error("a hung prepare command succeeded")
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("a hung prepare command held the move %v, want about its 200 ms timeout", d)
		}
	})
	t.Run("a host name that would be an option is refused", func(t *testing.T) {
		// A command that would succeed, so that only the check can fail it.
		prep := commandPrepare([]string{"echo", "uri=unix:/in"}, time.Minute)
		if _, err := prep(t.Context(), "web1", "hostA", "--force"); err == nil || !strings.Contains(err.Error(), `"--force"`) {
			t.Errorf(`host "--force" gave %v, want it refused by name`, err)
		}
	})
}

func TestNamesThatCannotBePathsOrArgumentsAreRefused(t *testing.T) {
	for _, name := range []string{"", "-rf", "../etc", "a/b", "a\nb", "vm@host", ".hidden"} {
		if err := checkName("vm", name); err == nil {
			t.Errorf("checkName(%q) accepted it", name)
		}
	}
	for _, name := range []string{"web1", "db.prod-2", "Ünïcode"} {
		if err := checkName("vm", name); err != nil {
			t.Errorf("checkName(%q): %v", name, err)
		}
	}
}

func TestNewQMPRefusesAConfigThatCannotMigrate(t *testing.T) {
	tests := []struct {
		name string
		cfg  QMPConfig
		err  string
	}{
		{"no socket template is refused", QMPConfig{PrepareCommand: []string{"true"}}, "no host has a QMP socket template"},
		{"a template without {vm} is refused naming its host", QMPConfig{Sockets: map[string]string{"hostA": "/run/q.sock"}, PrepareCommand: []string{"true"}}, "of host hostA has no {vm}"},
		{"no way to start the destination is refused", QMPConfig{Sockets: map[string]string{"hostA": "/run/{vm}.sock"}}, "no way to start the destination"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewQMP(tt.cfg, testLog()); err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("NewQMP gave %v, want an error containing %q", err, tt.err)
			}
		})
	}
}
