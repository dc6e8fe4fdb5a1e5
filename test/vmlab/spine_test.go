//go:build linux

package vmlab_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/bcrypt"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/internal/collectord"
	"github.com/guestdiag/guestdiag/internal/natstest"
	"github.com/guestdiag/guestdiag/internal/natsutil"
	"github.com/guestdiag/guestdiag/protocol"
	"github.com/guestdiag/guestdiag/test/vmlab"
)

const labHost = "lab-host"

// agentLab builds the agent and the kernel once for a test.
func agentLab(t *testing.T) *vmlab.AgentLab {
	t.Helper()
	l := setupLab(t)
	agent := filepath.Join(t.TempDir(), "guestdiag-agent")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	if err := vmlab.BuildAgent(ctx, agent); err != nil {
		t.Fatal(err)
	}
	return &vmlab.AgentLab{Kernel: l.kernel, Agent: agent, ChannelRoot: shortTempDir(t), WorkDir: t.TempDir()}
}

// faultLab is an agent lab whose guests run vmlab-guest, so tests can
// inject faults, with a real NATS server and a connection to it.
func faultLab(t *testing.T) (*vmlab.AgentLab, *server.Server, *nats.Conn) {
	t.Helper()
	l := agentLab(t)
	helper := filepath.Join(t.TempDir(), "vmlab-guest")
	if err := vmlab.BuildHelper(t.Context(), helper); err != nil {
		t.Fatal(err)
	}
	l.Helper = helper
	srv := natstest.Start(t)
	return l, srv, natstest.Connect(t, srv)
}

// buildRelay builds guestdiag-relay for startRelayProcess.
func buildRelay(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "guestdiag-relay")
	if err := vmlab.Build(t.Context(), bin, "./cmd/guestdiag-relay"); err != nil {
		t.Fatal(err)
	}
	return bin
}

func bootAgent(t *testing.T, ctx context.Context, l *vmlab.AgentLab, g vmlab.AgentGuest) *vmlab.VM {
	t.Helper()
	vm, err := l.Boot(ctx, g)
	if err != nil {
		t.Fatal(err)
	}
	stopOnCleanup(t, vm, g.Name)
	return vm
}

// relayProcess runs guestdiag-relay as its own process, so the outage test can
// kill it the hard way: whatever it published but had not yet acknowledged
// is resent by the agents and must be de-duplicated by JetStream.
type relayProcess struct {
	cmd    *exec.Cmd
	done   chan struct{}
	output bytes.Buffer
}

func startRelayProcess(t *testing.T, bin, natsURL, glob string) *relayProcess {
	t.Helper()
	p := &relayProcess{done: make(chan struct{})}
	p.cmd = exec.Command(bin, "--nats", natsURL, "--host", labHost, "--glob", glob, "--log-level", "warn")
	p.cmd.Stdout, p.cmd.Stderr = &p.output, &p.output
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("relay output:\n%s", p.output.String())
		}
	})
	return p
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *relayProcess) kill() {
	p.cmd.Process.Kill()
	<-p.done
}

func startCollector(t *testing.T, nc *nats.Conn) (api string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := collector.New(collector.Config{}, nc, testLogger(t, "collector"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("collector: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// The lab's dashboard and API user.
const (
	labUser     = "admin"
	labPassword = "lab-password"
)

// labUsersFile writes a users file holding labUser with a bcrypt hash of
// labPassword.
func labUsersFile(t *testing.T) string {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(labPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(p, []byte(labUser+":"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startControlPlane runs the collector as its main does, with the
// dashboard, authentication and KB reloads, and returns its base URL.
func startControlPlane(t *testing.T, nc *nats.Conn, cfg collectord.Config) (base string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- collectord.Run(ctx, nc, ln, cfg, testLogger(t, "collector")) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("collector: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func testLogger(t *testing.T, component string) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("component", component)
	}
	return slog.New(slog.DiscardHandler)
}

func fetchVMs(ctx context.Context, api string) ([]collector.VM, error) {
	return fetchVMsAs(ctx, api, "", "")
}

// fetchVMsAs is fetchVMs with basic auth, when user is set.
func fetchVMsAs(ctx context.Context, api, user, password string) ([]collector.VM, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api+"/api/vms", nil)
	if err != nil {
		return nil, err
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /api/vms: %s", resp.Status)
	}
	var vms []collector.VM
	return vms, json.NewDecoder(resp.Body).Decode(&vms)
}

// eventually polls cond until it returns nil or the deadline passes.
func eventually(t *testing.T, ctx context.Context, within time.Duration, what string, cond func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var err error
	for {
		if err = cond(ctx); err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within %v: %v", what, within, err)
		case <-tick.C:
		}
	}
}

// storedMessage is one guest message as the stream holds it, with the
// host whose relay stamped it and when.
type storedMessage struct {
	host, vm, run string
	seq           uint64
	ts, received  time.Time
	msgID         string
}

func storedGuestMessages(ctx context.Context, js jetstream.JetStream) ([]storedMessage, error) {
	st, err := js.Stream(ctx, natsutil.StreamName)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, err
	}
	var out []storedMessage
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("stream seq %d: %w", seq, err)
		}
		var rep protocol.Report
		if json.Unmarshal(m.Data, &rep) != nil || rep.Guest == nil {
			continue // channel events carry no guest message
		}
		e, err := protocol.Decode(rep.Guest)
		if err != nil {
			return nil, fmt.Errorf("stream seq %d holds an invalid guest line: %w", seq, err)
		}
		out = append(out, storedMessage{host: rep.Host, vm: rep.VM, run: e.Run, seq: e.Seq, ts: e.TS, received: rep.Received, msgID: m.Header.Get(jetstream.MsgIDHeader)})
	}
	return out, nil
}

// TestIntegrationSpine boots two real guests running the agent and checks the
// whole path: virtio-serial → relay → JetStream → collector → API.
func TestIntegrationSpine(t *testing.T) {
	l := agentLab(t)
	ctx := t.Context()

	srv, nc, js := natstest.JetStream(t)

	agentArgs := []string{"--heartbeat", "2s"}
	// beta claims to be alpha: its identity must still come from its channel.
	agentConfig := `{"checks":{"resources":{"interval":"2s"}}}`
	bootAgent(t, ctx, l, vmlab.AgentGuest{Name: "alpha", ID: 1, AgentArgs: agentArgs, AgentConfig: agentConfig})
	bootAgent(t, ctx, l, vmlab.AgentGuest{Name: "beta", ID: 2, Hostname: "alpha", AgentArgs: agentArgs, AgentConfig: agentConfig})

	relayBin := buildRelay(t)
	relay := startRelayProcess(t, relayBin, srv.ClientURL(), l.ChannelGlob())
	api := startCollector(t, nc)

	t.Run("both VMs appear under their host-side names with resources results", func(t *testing.T) {
		eventually(t, ctx, 2*time.Minute, "both VMs with resources results", func(ctx context.Context) error {
			vms, err := fetchVMs(ctx, api)
			if err != nil {
				return err
			}
			var names []string
			for _, vm := range vms {
				if vm.Host != labHost {
					return fmt.Errorf("VM %s on host %q, want %q", vm.Name, vm.Host, labHost)
				}
				if c := vm.Checks["resources"]; c == nil || c.Status == "" {
					return fmt.Errorf("VM %s has no resources result yet", vm.Name)
				}
				names = append(names, vm.Name)
			}
			if !slices.Equal(names, []string{"alpha", "beta"}) {
				return fmt.Errorf("VMs %v, want [alpha beta]", names)
			}
			return nil
		})
	})

	t.Run("a guest claiming another VM's hostname keeps its host-side name", func(t *testing.T) {
		vms, err := fetchVMs(ctx, api)
		if err != nil {
			t.Fatal(err)
		}
		for _, vm := range vms {
			if vm.Hello == nil {
				t.Fatalf("VM %s has no hello", vm.Name)
			}
			if got := vm.Hello.ClaimedHostname; got != "alpha" {
				t.Errorf("VM %s claims hostname %q, want alpha (both guests call themselves alpha)", vm.Name, got)
			}
		}
	})

	t.Run("a relay killed for 20 s loses and doubles nothing", func(t *testing.T) {
		relay.kill()
		outage := time.Now()
		select {
		case <-time.After(20 * time.Second): // the outage itself: guests keep producing
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
		restart := time.Now()
		startRelayProcess(t, relayBin, srv.ClientURL(), l.ChannelGlob())

		// The agents send in order on one connection, so a message made after
		// the restart means everything spooled during the outage was sent
		// before it. ts is the guest's clock, which QEMU's RTC sets from the
		// host's; a second of skew moves the counts below by one at most.
		var msgs []storedMessage
		eventually(t, ctx, 90*time.Second, "messages made after the restart reach the stream", func(ctx context.Context) error {
			var err error
			if msgs, err = storedGuestMessages(ctx, js); err != nil {
				return err
			}
			for _, vm := range []string{"alpha", "beta"} {
				if !slices.ContainsFunc(msgs, func(m storedMessage) bool { return m.vm == vm && m.ts.After(restart) }) {
					return fmt.Errorf("nothing from %s made after the restart yet", vm)
				}
			}
			return nil
		})

		seqs := map[string][]uint64{} // vm/run -> seqs in stream order
		during := map[string]int{}
		for _, m := range msgs {
			key := m.vm + "/" + m.run
			seqs[key] = append(seqs[key], m.seq)
			if m.ts.After(outage) && m.ts.Before(restart) {
				during[m.vm]++
			}
		}
		for key, s := range seqs {
			sorted := slices.Clone(s)
			slices.Sort(sorted)
			for i, seq := range sorted {
				if seq != uint64(i+1) {
					t.Errorf("%s: stored seqs %v are not 1..%d without gaps or doubles", key, sorted, len(sorted))
					break
				}
			}
		}
		for _, vm := range []string{"alpha", "beta"} {
			// 20 s at one result and one heartbeat every 2 s.
			if during[vm] < 10 {
				t.Errorf("%s: %d messages made during the outage reached the stream, want at least 10", vm, during[vm])
			}
		}
		if len(seqs) != 2 {
			t.Errorf("stream holds %d runs (%v), want one per guest", len(seqs), slices.Collect(maps.Keys(seqs)))
		}
		t.Logf("stream holds %d guest messages; made during the outage: %v", len(msgs), during)
	})
}
