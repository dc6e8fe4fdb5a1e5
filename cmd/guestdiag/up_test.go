package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/internal/cli"
	"github.com/guestdiag/guestdiag/protocol"
)

// syncBuffer is written by `up` and read by the test at the same time.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// poll calls f every 10ms until it returns true or 15s have passed.
func poll(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// fakeQEMU listens on a channel socket as QEMU does and, once the relay
// connects, writes the guest lines and reads the relay's acks.
func fakeQEMU(t *testing.T, path string, lines ...protocol.Envelope) <-chan protocol.Ack {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	acks := make(chan protocol.Ack, 16)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		w := protocol.NewWriter(conn)
		conn.Write([]byte("\n"))
		for _, e := range lines {
			if err := w.Write(e); err != nil {
				return
			}
		}
		sc := bufio.NewScanner(conn)
		for sc.Scan() {
			if a, err := protocol.DecodeAck(sc.Bytes()); err == nil {
				acks <- a
			}
		}
	}()
	return acks
}

func TestUpRunsTheControlPlane(t *testing.T) {
	// Unix socket paths are short-limited; t.TempDir can be too long.
	dir, err := os.MkdirTemp("", "gdup")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	store := filepath.Join(dir, "store")
	sock := filepath.Join(dir, "web1.sock")

	ts := time.Now().UTC()
	helloData, _ := json.Marshal(protocol.Hello{Hostname: "db1", OS: "linux", AgentVersion: "0.1.0", Checks: []string{"resources"}})
	acks := fakeQEMU(t, sock,
		protocol.Envelope{V: 1, Kind: protocol.KindHello, Run: "run1", Seq: 1, TS: ts, Data: helloData},
		protocol.Envelope{V: 1, Kind: protocol.KindResult, Run: "run1", Seq: 2, TS: ts, Check: "resources", Status: protocol.StatusWarn, Summary: "memory 91%"},
	)

	var stdout, stderr syncBuffer
	a := app{now: time.Now, width: func(io.Writer) int { return 0 }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() {
		done <- a.run(ctx, []string{"up",
			"--store", store,
			"--nats-listen", "127.0.0.1:0",
			"--http", "127.0.0.1:0",
			"--host", "h1",
			"--glob", filepath.Join(dir, "nothing-*", "org.guestdiag.agent.0"),
			"--channel", "web1=" + sock,
			"--log-level", "warn",
		}, &stdout, &stderr)
	}()

	apiLine := regexp.MustCompile(`api: +(http://\S+)/api/vms`)
	var api string
	poll(t, "up to print the API address", func() bool {
		m := apiLine.FindStringSubmatch(stdout.String())
		if m != nil {
			api = m[1]
		}
		return m != nil
	})
	if !regexp.MustCompile(`nats: +nats://127\.0\.0\.1:\d+`).MatchString(stdout.String()) {
		t.Errorf("start banner has no NATS URL:\n%s", stdout.String())
	}

	poll(t, "/healthz to answer 200", func() bool {
		resp, err := http.Get(api + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	var web1 collector.VM
	poll(t, "web1 to appear in /api/vms with its result", func() bool {
		resp, err := http.Get(api + "/api/vms")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var vms []collector.VM
		if json.NewDecoder(resp.Body).Decode(&vms) != nil || len(vms) != 1 {
			return false
		}
		web1 = vms[0]
		return web1.Checks["resources"] != nil && web1.Channel.State == protocol.ChannelConnected
	})
	if web1.Name != "web1" || web1.Host != "h1" {
		t.Errorf("VM identity: got %q on %q, want web1 on h1", web1.Name, web1.Host)
	}
	if web1.Hello == nil || web1.Hello.ClaimedHostname != "db1" {
		t.Errorf("hello: got %+v, want the claim db1 kept as data", web1.Hello)
	}
	if got := web1.Checks["resources"].Status; got != protocol.StatusWarn {
		t.Errorf("resources status: got %s, want warn", got)
	}
	select {
	case a := <-acks:
		if a.Run != "run1" {
			t.Errorf("ack: got run %q, want run1", a.Run)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("the relay never acknowledged the guest")
	}

	var out, errOut bytes.Buffer
	if code := a.run(context.Background(), []string{"status", "--api", api}, &out, &errOut); code != cli.ExitOK {
		t.Errorf("status against up: exit %d, stderr %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "resources=warn") {
		t.Errorf("status against up: got\n%s\nwant a row with resources=warn", out.String())
	}

	// The advisory scheduler took the lease and published its first plan,
	// which every collector shows on the placement page.
	poll(t, "the advisory scheduler's first plan in /api/placement", func() bool {
		resp, err := http.Get(api + "/api/placement")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var p collector.Placement
		if json.NewDecoder(resp.Body).Decode(&p) != nil {
			return false
		}
		for _, r := range p.Plans {
			if r.Plan.Scheduler == "h1" && r.Plan.Mode == protocol.ModeAdvisory {
				return true
			}
		}
		return false
	})

	cancel()
	select {
	case code := <-done:
		if code != cli.ExitOK {
			t.Errorf("up exit code after cancel: got %d, want 0; stderr:\n%s", code, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("up did not stop within 15s of cancel")
	}
	if !strings.Contains(stdout.String(), "guestdiag up: stopped") {
		t.Errorf("no stop message in:\n%s", stdout.String())
	}
	if _, err := http.Get(api + "/healthz"); err == nil {
		t.Errorf("API still answers after up returned")
	}
	if _, err := os.Stat(filepath.Join(store, "jetstream")); err != nil {
		t.Errorf("store dir has no JetStream data: %v", err)
	}
}

func TestUpFlagsShareTheRelaysChannelSyntax(t *testing.T) {
	cfg, _, err := parseUpFlags([]string{"--glob=", "--channel", "web01=/run/web01.sock,uuid=3F0E2A1C-0000-4000-8000-000000000001"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Relay.Globs == nil || len(cfg.Relay.Globs) != 0 {
		t.Errorf("--glob= gave globs %#v, want globbing off (an empty, non-nil list)", cfg.Relay.Globs)
	}
	if len(cfg.Relay.Static) != 1 || cfg.Relay.Static[0].Name != "web01" || cfg.Relay.Static[0].UUID != "3f0e2a1c-0000-4000-8000-000000000001" {
		t.Errorf("static channels %+v, want web01 with its UUID lower-cased", cfg.Relay.Static)
	}
}
