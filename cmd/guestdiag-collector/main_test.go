package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/internal/cli"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/collector/alertmanager"
	"github.com/guestdiag/guestdiag/internal/collectord"
	"github.com/guestdiag/guestdiag/internal/natstest"
	"github.com/guestdiag/guestdiag/internal/webauth"
)

var defaultHints = collector.HintConfig{
	Thresholds: collector.Thresholds{CPUHighPct: collector.DefaultCPUHighPct, CPULowPct: collector.DefaultCPULowPct, MemHighPct: collector.DefaultMemHighPct},
	Hits:       collector.DefaultHintHits, Window: collector.DefaultHintWindow, ContentionVMs: collector.DefaultContentionVMs,
}

// TestEveryFlagIsDocumented keeps the flag table of docs/configuration.md
// complete.
func TestEveryFlagIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(doc), "## guestdiag-collector\n")
	section, _, _ = strings.Cut(section, "\n## ")
	var cfg collectord.Config
	fs, _, _ := flags(&cfg, &bytes.Buffer{})
	fs.VisitAll(func(f *flag.Flag) {
		if !strings.Contains(section, "`--"+f.Name+"`") {
			t.Errorf("docs/configuration.md, section guestdiag-collector, has no row for --%s", f.Name)
		}
	})
}

func TestParseFlags(t *testing.T) {
	t.Setenv("GUESTDIAG_TOKEN", "")
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	defaults := collector.Config{
		NATSURL: nats.DefaultURL, Listen: collector.DefaultListen, Durable: collector.DefaultDurable,
		Bucket: collector.DefaultBucket, Replicas: 1, AckWait: collector.DefaultAckWait, ChannelGrace: collector.DefaultChannelGrace,
		HostBucket: collector.DefaultHostBucket, Hints: defaultHints, Plans: collector.DefaultPlans,
	}
	tests := []struct {
		name    string
		args    []string
		want    collectord.Config
		wantErr string
	}{
		{"defaults", nil, collectord.Config{Collector: defaults}, ""},
		{"every flag", []string{"--nats", "nats://n1:4222,nats://n2:4222", "--listen", ":9000", "--durable", "d", "--bucket", "b", "--replicas", "3", "--ack-wait", "1m",
			"--kb-dir", "/etc/guestdiag/kb", "--kb-dir", "/srv/kb", "--users", "/etc/guestdiag/users", "--admins", "ops, oncall", "--admins", "lead", "--token-file", tokenFile, "--secure-cookies",
			"--alertmanager", "http://am1:9093", "--alertmanager", "https://am2:9093", "--external-url", "https://guestdiag.example", "--channel-grace", "2m",
			"--host-bucket", "hb", "--hint-cpu-high", "80", "--hint-cpu-low", "10", "--hint-mem-high", "95", "--hint-hits", "2", "--hint-window", "4",
			"--hint-contention", "3", "--hint-host", "h1:cpu_high=95,mem_high=97", "--hint-host", "h2:cpu_low=5", "--plans", "10"},
			collectord.Config{
				Collector: collector.Config{
					NATSURL: "nats://n1:4222,nats://n2:4222", Listen: ":9000", Durable: "d", Bucket: "b", Replicas: 3, AckWait: time.Minute,
					KBDirs: []string{"/etc/guestdiag/kb", "/srv/kb"}, ChannelGrace: 2 * time.Minute,
					HostBucket: "hb", Plans: 10, Hints: collector.HintConfig{
						Thresholds: collector.Thresholds{CPUHighPct: 80, CPULowPct: 10, MemHighPct: 95}, Hits: 2, Window: 4, ContentionVMs: 3,
						Hosts: map[string]collector.Thresholds{"h1": {CPUHighPct: 95, MemHighPct: 97}, "h2": {CPULowPct: 5}},
					},
				},
				Auth:         webauth.Config{UsersFile: "/etc/guestdiag/users", Token: "s3cret", Secure: true, Admins: []string{"ops", "oncall", "lead"}},
				Alertmanager: alertmanager.Config{URLs: []string{"http://am1:9093", "https://am2:9093"}, ExternalURL: "https://guestdiag.example"},
			}, ""},
		{"zero replicas", []string{"--replicas", "0"}, collectord.Config{}, "--replicas"},
		{"a stray argument", []string{"extra"}, collectord.Config{}, "extra"},
		{"an Alertmanager that is not a URL", []string{"--alertmanager", "am1:9093"}, collectord.Config{}, "not an http or https URL"},
		{"an empty admin name", []string{"--admins", "ops,,lead"}, collectord.Config{}, "empty name"},
		{"a missing token file", []string{"--token-file", filepath.Join(dir, "nope")}, collectord.Config{}, "--token-file"},
		{"a low threshold above the high one", []string{"--hint-cpu-low", "90"}, collectord.Config{}, "not below cpu high"},
		{"more hits than the window holds", []string{"--hint-hits", "6"}, collectord.Config{}, "6 of 5"},
		{"a host override without a host", []string{"--hint-host", "cpu_high=90"}, collectord.Config{}, "HOST:"},
		{"a host override of an unknown threshold", []string{"--hint-host", "h1:disk=90"}, collectord.Config{}, "unknown threshold"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := parseFlags(tt.args, &bytes.Buffer{})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error: got %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("config:\ngot  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestRunConsumesUntilCancelled(t *testing.T) {
	s := natstest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--nats", s.ClientURL(), "--listen", "127.0.0.1:0", "--durable", "from-flags", "--log-level", "error"}, &stdout, &stderr)
	}()

	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		_, err := js.Consumer(cctx, "GUESTDIAG", "from-flags")
		ccancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("durable from --durable never appeared: %v", err)
		}
		<-tick.C
	}

	cancel()
	select {
	case code := <-done:
		if code != cli.ExitOK {
			t.Errorf("exit code after cancel: got %d, want 0; stderr: %s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return within 10s of cancel")
	}
}
