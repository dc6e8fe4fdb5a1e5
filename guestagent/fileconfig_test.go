package guestagent

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadConfigFileReadsEveryOption(t *testing.T) {
	path := writeConfig(t, `
transports: [vsock, virtio-serial]
fallback_after: 10s
retry_preferred: 2m
port_name: org.example.0
device: /dev/vport2p1
vsock_port: 7000
state_dir: /srv/gd
spool_max_bytes: 64MiB
spool_max_age: 24h
heartbeat: 5s
memory_limit: 32MiB
priority: normal
check_grace: 2s
ack_timeout: 40s
write_timeout: 3s
checks:
  resources: {interval: 15s, timeout: 5s, cpu_budget: 200ms, config: {cpu: {warn: 85, crit: 95}}}
  software: {enabled: false}
`)
	cfg, err := LoadConfigFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.Transports = []string{"vsock", "virtio-serial"}
	want.FallbackAfter, want.RetryPreferred = 10*time.Second, 2*time.Minute
	want.PortName, want.DevicePath, want.VsockPort, want.StateDir = "org.example.0", "/dev/vport2p1", 7000, "/srv/gd"
	want.SpoolMaxBytes, want.SpoolMaxAge, want.HeartbeatInterval = 64<<20, 24*time.Hour, 5*time.Second
	want.MemoryLimit, want.Priority, want.CheckGrace = 32<<20, "normal", 2*time.Second
	want.AckTimeout, want.WriteTimeout = 40*time.Second, 3*time.Second
	got := cfg
	got.Checks = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("config\n%+v\nwant\n%+v", got, want)
	}
	r := cfg.Checks["resources"]
	if r.Interval.Duration != 15*time.Second || r.Timeout.Duration != 5*time.Second || r.CPUBudget.Duration != 200*time.Millisecond ||
		string(r.Config) != `{"cpu":{"crit":95,"warn":85}}` {
		t.Errorf("resources settings %+v (config %s)", r, r.Config)
	}
	if s := cfg.Checks["software"]; s.Enabled == nil || *s.Enabled {
		t.Errorf("software enabled = %v, want false", s.Enabled)
	}
}

func TestLoadConfigFileReadsTheEarlierJSONFormat(t *testing.T) {
	path := writeConfig(t, `{"checks": {"software": {"enabled": false}, "resources": {"interval": "15s"}}}`)
	cfg, err := LoadConfigFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Checks["resources"].Interval.Duration != 15*time.Second || *cfg.Checks["software"].Enabled {
		t.Errorf("checks %+v", cfg.Checks)
	}
}

func TestLoadConfigFileReportsEveryMistakeWithItsLine(t *testing.T) {
	path := writeConfig(t, `heartbeat: soon
transport: [vsock]
spool_max_bytes: lots
checks:
  resources:
    interval: 15s
    config:
      cpu:
        warn: 85
        hot: 1
  nosuch: {enabled: true}
  logs: {enabled: maybe}
`)
	_, err := LoadConfigFile(path)
	if err == nil {
		t.Fatal("no error, want one per mistake")
	}
	var got []string
	for _, l := range strings.Split(err.Error(), "\n") {
		got = append(got, strings.TrimPrefix(l, path))
	}
	want := []string{
		`:1: heartbeat: duration "soon"`,
		`:2: unknown option "transport"`,
		`:3: spool_max_bytes: size "lots"`,
		`:10: checks.resources.config: `,
		`:11: unknown check "nosuch"`,
		`:12: checks.logs.enabled: want true or false`,
	}
	if len(got) != len(want) {
		t.Fatalf("errors:\n%s\nwant %d, one per mistake", err, len(want))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("error %d = %q, want it to start with %q", i, got[i], want[i])
		}
	}
}

func TestLoadConfigFileSaysWhereTheSyntaxIsWrong(t *testing.T) {
	path := writeConfig(t, "heartbeat: 10s\nchecks:\n  logs: {enabled: true\n")
	_, err := LoadConfigFile(path)
	// The YAML parser names the line where the flow mapping opened.
	if err == nil || !strings.HasPrefix(err.Error(), path+":2: ") {
		t.Errorf("error = %v, want the file and the line of the unclosed mapping", err)
	}
}

func TestCheckTransports(t *testing.T) {
	tests := []struct {
		name, goos string
		list       []string
		wantErr    string
	}{
		{"both transports are accepted on linux", "linux", []string{"virtio-serial", "vsock"}, ""},
		{"vsock is refused on windows, saying why", "windows", []string{"virtio-serial", "vsock"}, "vsock is not supported on windows"},
		{"an unknown transport is named", "linux", []string{"serial"}, `unknown transport "serial"`},
		{"a transport listed twice is refused", "linux", []string{"vsock", "vsock"}, "listed twice"},
		{"an empty list is refused", "linux", nil, "at least one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkTransportsOn(tt.goos, tt.list)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestEffectiveYAMLReadsBackTheSameConfig(t *testing.T) {
	cfg, err := LoadConfigFile(writeConfig(t, "spool_max_age: 36h\nchecks:\n  software: {enabled: false}\n  resources: {interval: 15s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := EffectiveYAML(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"spool_max_age: 36h0m0s\n", "transports: [", "vsock_port: 6021\n", "    enabled: false\n", "memory_limit: 20MiB\n"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("effective config lacks %q:\n%s", want, b)
		}
	}
	again, err := LoadConfigFile(writeConfig(t, string(b)))
	if err != nil {
		t.Fatalf("the effective config does not load: %v\n%s", err, b)
	}
	b2, err := EffectiveYAML(again)
	if err != nil {
		t.Fatal(err)
	}
	if string(b2) != string(b) {
		t.Errorf("effective config changed when read back:\n%s\nthen\n%s", b, b2)
	}
}

func TestEveryOptionIsDocumented(t *testing.T) {
	b, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{"checks", "checks.NAME.enabled", "checks.NAME.interval", "checks.NAME.timeout", "checks.NAME.cpu_budget", "checks.NAME.config"}
	for _, o := range options {
		keys = append(keys, o.key)
	}
	for _, k := range keys {
		if !strings.Contains(string(b), "| `"+k+"` |") {
			t.Errorf("docs/configuration.md has no row for option %s", k)
		}
	}
}
