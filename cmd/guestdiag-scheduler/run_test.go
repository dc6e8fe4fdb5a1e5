package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/internal/cli"
	"github.com/guestdiag/guestdiag/internal/natstest"
	"github.com/guestdiag/guestdiag/internal/natsutil"
	"github.com/guestdiag/guestdiag/protocol"
)

func writeFile(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "scheduler.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigCheck(t *testing.T) {
	good := writeFile(t, "interval: 2m\nhosts:\n  n1:\n    empty: true\n")
	if code, out, errOut := runCmd("config", "check", good); code != cli.ExitOK || !strings.HasSuffix(out, ": ok\n") {
		t.Errorf("good file: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	bad := writeFile(t, "interval: 2m\nhosts:\n  n1:\n    cpu: {low: 90, high: 80}\n")
	code, _, errOut := runCmd("config", "check", bad)
	if want := bad + ":4: hosts.n1.cpu: low 90 is not below high 80"; code != cli.ExitFailed || !strings.Contains(errOut, want) {
		t.Errorf("bad file: exit %d, stderr %q, want %q", code, errOut, want)
	}
}

func TestExecuteModeWithoutAnExecutorRefusesToStart(t *testing.T) {
	cfg := writeFile(t, "")
	// The NATS address is never dialled: the refusal comes first.
	code, _, errOut := runCmd("run", "--config", cfg, "--mode", "execute", "--nats", "nats://127.0.0.1:1")
	if code != cli.ExitFailed || !strings.Contains(errOut, "execute mode needs --executor") {
		t.Errorf("no --executor: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = runCmd("run", "--config", cfg, "--mode", "execute", "--executor", "vmware", "--nats", "nats://127.0.0.1:1")
	if code != cli.ExitFailed || !strings.Contains(errOut, `executor \"vmware\": unknown; known: [libvirt qmp]`) {
		t.Errorf("unknown executor: exit %d, stderr %q", code, errOut)
	}
}

func TestPlanPrintsWhatTheStateGives(t *testing.T) {
	s, _, js := natstest.JetStream(t)
	if _, err := natsutil.EnsureStream(t.Context(), js, natsutil.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	const gib = 1 << 30
	for _, u := range []protocol.HostUsage{
		{V: 1, Host: "a", TS: time.Now(), IntervalS: 10, CPU: protocol.HostCPU{Count: 4, UsedPct: 95},
			Memory: protocol.HostMemory{TotalBytes: 16 * gib, AvailableBytes: 10 * gib},
			VMs:    []protocol.VMUsage{{VM: "busy\x1b[31m", CPUPct: 300, RSSBytes: gib, MemoryBytes: gib}, {VM: "idle", CPUPct: 50, RSSBytes: gib}}},
		{V: 1, Host: "b", TS: time.Now(), IntervalS: 10, CPU: protocol.HostCPU{Count: 8, UsedPct: 2},
			Memory: protocol.HostMemory{TotalBytes: 16 * gib, AvailableBytes: 15 * gib}},
	} {
		b, _ := json.Marshal(u)
		if _, err := js.Publish(t.Context(), protocol.HostSubject(u.Host), b); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errOut := runCmd("plan", "--nats", s.ClientURL(), "--config", writeFile(t, ""))
	if code != cli.ExitOK {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if !strings.Contains(out, `move "busy\x1b[31m": a -> b`) {
		t.Errorf("got\n%s\nwant the busy VM's move, its name escaped", out)
	}
	if !strings.Contains(out, "acting scheduler: none has run yet") {
		t.Errorf("got\n%s\nwant the line saying no scheduler has run", out)
	}
	if strings.Contains(out, "\x1b") {
		t.Error("a VM name reached the terminal unescaped")
	}
}

func TestPlanDoesNotSayNoSchedulerRanWhenItCouldNotAsk(t *testing.T) {
	s, _, _ := natstest.JetStream(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var out strings.Builder
	printStatus(ctx, natstest.Connect(t, s), &out)
	if got := out.String(); !strings.HasPrefix(got, "acting scheduler: unknown (") {
		t.Errorf("got %q, want the acting scheduler unknown with why", got)
	}
}
