package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/checks/resources"
	"github.com/guestdiag/guestdiag/guestagent"
	"github.com/guestdiag/guestdiag/internal/cli"
	"github.com/guestdiag/guestdiag/protocol"
)

// TestAgentDependencies keeps NATS and HTTP out of the guest binary, for
// every OS the agent targets. gopsutil v3 (cpu, mem, load, disk, host) does
// not import net/http, so both are asserted absent.
func TestAgentDependencies(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not in PATH; cannot list dependencies")
	}
	forbidden := []string{"github.com/nats-io/", "net/http", "html/template"}
	for _, target := range []struct{ goos, goarch string }{
		{"linux", "amd64"}, {"linux", "arm64"}, {"windows", "amd64"},
	} {
		t.Run(target.goos+"/"+target.goarch, func(t *testing.T) {
			cmd := exec.Command(gobin, "list", "-deps", ".")
			cmd.Env = append(os.Environ(), "GOOS="+target.goos, "GOARCH="+target.goarch, "CGO_ENABLED=0")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("go list -deps: %v\n%s", err, stderr.String())
			}
			deps := strings.Fields(string(out))
			if !slices.Contains(deps, "github.com/guestdiag/guestdiag/guestagent") {
				t.Fatalf("dependency list lacks guestagent; is the list right? %d entries", len(deps))
			}
			for _, d := range deps {
				for _, f := range forbidden {
					if d == strings.TrimSuffix(f, "/") || strings.HasPrefix(d, f) {
						t.Errorf("guestdiag-agent depends on %s", d)
					}
				}
			}
		})
	}
}

func TestParseAgentFlags(t *testing.T) {
	def := guestagent.DefaultConfig()
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, cfg guestagent.Config, level slog.Level)
	}{
		{"no flags give the defaults", nil, func(t *testing.T, cfg guestagent.Config, level slog.Level) {
			if cfg.PortName != def.PortName || cfg.StateDir != def.StateDir || cfg.HeartbeatInterval != 10*time.Second ||
				cfg.SpoolMaxBytes != 16<<20 || cfg.Checks != nil || level != slog.LevelInfo {
				t.Errorf("cfg = %+v, level %v", cfg, level)
			}
		}},
		{"the lab's flags", []string{"--state-dir", "/var/lib/guestdiag", "--config", writeFile(t, `{"checks":{"resources":{"interval":"2s"}}}`), "--heartbeat", "2s"},
			func(t *testing.T, cfg guestagent.Config, _ slog.Level) {
				if cfg.StateDir != "/var/lib/guestdiag" || cfg.HeartbeatInterval != 2*time.Second || cfg.Checks[resources.Name].Interval.Duration != 2*time.Second {
					t.Errorf("cfg = %+v", cfg)
				}
			}},
		{"port, device, spool and log level", []string{"--port-name=x.y.0", "--device=/dev/vport0p1", "--spool-max=1MiB", "--log-level=debug"},
			func(t *testing.T, cfg guestagent.Config, level slog.Level) {
				if cfg.PortName != "x.y.0" || cfg.DevicePath != "/dev/vport0p1" || cfg.SpoolMaxBytes != 1<<20 || level != slog.LevelDebug {
					t.Errorf("cfg = %+v, level %v", cfg, level)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, level, err := parseAgentFlags(tt.args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, cfg, level)
		})
	}
	for _, bad := range [][]string{
		{"--heartbeat", "0s"}, {"--spool-max", "lots"}, {"--log-level", "loud"}, {"stray"},
		{"--config", filepath.Join(t.TempDir(), "missing.json")},
		{"--config", writeFile(t, `{"checks":{"resourcez":{}}}`)},
		{"--config", writeFile(t, `{"checks":{"resources":{"config":{"cpu":{"warn":"high"}}}}}`)},
		{"--config", writeFile(t, `{"checks":{"resources":{"intervall":"5s"}}}`)},
	} {
		if _, _, err := parseAgentFlags(bad, io.Discard); err == nil {
			t.Errorf("parseAgentFlags(%q): got no error", bad)
		}
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"1048576", 1 << 20}, {"512KiB", 512 << 10}, {"16MiB", 16 << 20}, {"16M", 16 << 20}, {"1GiB", 1 << 30}, {"2048B", 2048},
	}
	for _, tt := range tests {
		if got, err := guestagent.ParseSize(tt.in); err != nil || got != tt.want {
			t.Errorf("guestagent.ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "0", "-1", "1.5MiB", "MiB", "99999999999GiB"} {
		if got, err := guestagent.ParseSize(bad); err == nil {
			t.Errorf("guestagent.ParseSize(%q) = %d, want an error", bad, got)
		}
	}
}

func TestCheckResourcesOnceJSON(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"check", "resources", "--once", "--json"}, &stdout, &stderr)
	var got struct {
		Check   string          `json:"check"`
		Status  protocol.Status `json:"status"`
		Summary string          `json:"summary"`
		Data    json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("output %q: %v (stderr %q)", stdout.String(), err, stderr.String())
	}
	if got.Check != resources.Name || got.Summary == "" || len(got.Data) == 0 {
		t.Errorf("result = %+v", got)
	}
	if want := statusExit(got.Status); code != want {
		t.Errorf("exit code %d for status %s, want %d", code, got.Status, want)
	}
}

func TestCheckUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"check"}, {"check", "nope", "--once"}, {"check", "resources", "--bogus"}} {
		if code := run(context.Background(), args, io.Discard, io.Discard); code != cli.ExitUsage {
			t.Errorf("run(%q) = %d, want %d", args, code, cli.ExitUsage)
		}
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "agent.json")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFlagsOverrideTheConfigFile(t *testing.T) {
	file := writeFile(t, "heartbeat: 30s\nspool_max_age: 1h\ntransports: [vsock]\nstate_dir: /srv/a\n")
	cfg, _, err := parseAgentFlags([]string{"--config", file, "--heartbeat", "5s", "--transports", "virtio-serial,vsock"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HeartbeatInterval != 5*time.Second || !slices.Equal(cfg.Transports, []string{"virtio-serial", "vsock"}) {
		t.Errorf("heartbeat %v, transports %v: want the flags' 5s and virtio-serial,vsock", cfg.HeartbeatInterval, cfg.Transports)
	}
	if cfg.SpoolMaxAge != time.Hour || cfg.StateDir != "/srv/a" {
		t.Errorf("spool_max_age %v, state_dir %q: want the file's 1h and /srv/a", cfg.SpoolMaxAge, cfg.StateDir)
	}
}

func TestConfigCheck(t *testing.T) {
	tests := []struct {
		name       string
		file       string
		wantExit   int
		wantStdout []string
		wantStderr []string
	}{
		{"a valid file prints the effective configuration", "priority: normal\nchecks:\n  network: {enabled: false}\n", cli.ExitOK,
			[]string{"is valid", "priority: normal\n", "heartbeat: 10s\n", "  network:\n    config:"}, nil},
		{"every mistake is reported with its line", "heartbeat: 0s\nchecks:\n  logz: {}\n  resources:\n    cpu_budget: lots\n", cli.ExitFailed,
			nil, []string{"agent.yaml:1: heartbeat", "agent.yaml:3: unknown check \"logz\"", "agent.yaml:5: checks.resources.cpu_budget"}},
		{"control characters in the file are escaped", `"bad\e[31m": 1`, cli.ExitFailed,
			nil, []string{`unknown option "bad\x1b[31m"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "agent.yaml")
			if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), []string{"config", "check", path}, &stdout, &stderr)
			if code != tt.wantExit {
				t.Errorf("exit %d, want %d (stderr %q)", code, tt.wantExit, stderr.String())
			}
			for _, w := range tt.wantStdout {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout.String())
				}
			}
			for _, w := range tt.wantStderr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
			if strings.ContainsRune(stderr.String(), 0x1b) {
				t.Errorf("stderr holds a raw escape character: %q", stderr.String())
			}
		})
	}
}
