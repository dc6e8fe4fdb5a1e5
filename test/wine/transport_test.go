package wine

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/internal/winetest"
)

// standinPipe is the named pipe that stands in for the virtio-serial
// device, which cannot exist under Wine. Only the tests point the agent at
// it (--device); the agent's own default is \\.\Global\org.guestdiag.agent.0.
const standinPipe = `\\.\pipe\guestdiag-standin`

// standin is one run of the pipe server: it serves one connection and
// exits after a given number of lines.
type standin struct {
	cmd     *exec.Cmd
	lines   <-chan string
	err     bytes.Buffer
	resumes []wireLine // the resume lines, left out of received's
}

func startStandin(t *testing.T, a *winetest.Prefix, exe string, args ...string) *standin {
	t.Helper()
	s := &standin{cmd: a.Command(context.Background(), exe, append([]string{"-pipe", standinPipe}, args...)...)}
	s.cmd.Stderr = &s.err
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.cmd.Process.Kill(); s.cmd.Wait() })
	s.lines = lines(out)
	// The pipe exists once it says so; only then may the agent find it.
	select {
	case l, ok := <-s.lines:
		if !ok || !strings.HasPrefix(l, "# listening") {
			t.Fatalf("standin did not start: first line %q; stderr: %s", l, s.err.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("standin did not start within 60s")
	}
	return s
}

// received collects every line of one standin run until it exits.
func (s *standin) received(t *testing.T, timeout time.Duration) []wireLine {
	t.Helper()
	var got []wireLine
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-s.lines:
			if !ok {
				if err := s.cmd.Wait(); err != nil {
					t.Fatalf("standin: %v; stderr: %s", err, s.err.String())
				}
				return got
			}
			var w wireLine
			if err := json.Unmarshal([]byte(l), &w); err != nil {
				t.Fatalf("standin got a line that is not JSON: %q: %v", l, err)
			}
			w.raw = l
			if w.Kind == "resume" {
				// Unspooled, first on each connection, outside the seqs.
				s.resumes = append(s.resumes, w)
				continue
			}
			got = append(got, w)
		case <-deadline:
			t.Fatalf("standin still running after %v with %d lines: %v", timeout, len(got), got)
		}
	}
}

// TestIntegrationWineTransportStandin runs the agent under Wine against a
// named pipe standing in for the virtio-serial device: what it sends
// arrives as NDJSON lines, what the host did not acknowledge is sent again
// on the next connection with the same run and seq, and what it did
// acknowledge leaves the spool and is not sent again.
func TestIntegrationWineTransportStandin(t *testing.T) {
	a := newWineAgent(t)
	standinExe := winetest.Build(t, "github.com/guestdiag/guestdiag/test/wine/standin")

	// First connection: the host reads four lines and acknowledges none.
	first := startStandin(t, a.Prefix, standinExe, "-lines", "4")
	agent := a.Command(context.Background(), a.Exe, "--device", standinPipe, "--state-dir", `C:\gdstate`,
		"--heartbeat", "1s", "--config", a.Config, "--log-level", "debug")
	var agentErr bytes.Buffer
	agent.Stderr = &agentErr
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Process.Kill(); agent.Wait() })
	got1 := first.received(t, 90*time.Second)
	if len(first.resumes) != 1 || first.resumes[0].Seq != 1 {
		t.Errorf("first connection: resumes %v, want one, numbered 1", first.resumes)
	}
	if len(got1) != 4 {
		t.Fatalf("first connection: got %d lines, want 4: %v", len(got1), got1)
	}
	if got1[0].Kind != "hello" || got1[0].Seq != 1 {
		t.Fatalf("first line = %s, want the hello with seq 1", got1[0].raw)
	}
	var hello struct {
		OS string `json:"os"`
	}
	json.Unmarshal(got1[0].Data, &hello)
	if hello.OS != "windows" {
		t.Errorf("hello says os %q, want windows: %s", hello.OS, got1[0].raw)
	}
	run := got1[0].Run
	// A hello names the transport the agent is on.
	named := false
	for _, l := range got1 {
		named = named || l.Kind == "hello" && strings.Contains(l.raw, `"transport":"virtio-serial"`)
	}
	if !named {
		t.Errorf("no hello on the first connection names transport virtio-serial: %v", got1)
	}
	for i, l := range got1 {
		if l.Run != run || l.Seq != uint64(i+1) {
			t.Errorf("line %d: run %s seq %d, want run %s seq %d", i, l.Run, l.Seq, run, i+1)
		}
	}

	// Second connection: nothing was acknowledged, so the same four come
	// first, then new ones; every line is acknowledged now.
	second := startStandin(t, a.Prefix, standinExe, "-ack", "-lines", "12")
	got2 := second.received(t, 90*time.Second)
	if len(second.resumes) != 1 || second.resumes[0].Seq != 2 || !strings.Contains(second.resumes[0].raw, `"oldest":1`) {
		t.Errorf("second connection: resumes %v, want one, numbered 2, holding the run from seq 1", second.resumes)
	}
	if len(got2) != 12 {
		t.Fatalf("second connection: got %d lines, want 12", len(got2))
	}
	for i := range got1 {
		if got2[i].Run != run || got2[i].Seq != got1[i].Seq || got2[i].raw != got1[i].raw {
			t.Errorf("second connection line %d = %s, want the unacknowledged %s again", i, got2[i].raw, got1[i].raw)
		}
	}
	// A heartbeat written after the acks took effect says the spool is
	// empty: acks are honoured, not just read.
	drained := false
	for _, l := range got2[len(got1):] {
		var hb struct {
			Spooled *uint64 `json:"spooled"`
		}
		if l.Kind == "heartbeat" && json.Unmarshal(l.Data, &hb) == nil && hb.Spooled != nil && *hb.Spooled == 0 {
			drained = true
		}
		if l.Seq <= got2[len(got1)-1].Seq {
			t.Errorf("after the resent lines came seq %d again: %s", l.Seq, l.raw)
		}
	}
	if !drained {
		t.Errorf("no heartbeat on the acknowledged connection said spooled 0; lines: %v", got2)
	}

	// Third connection: what was acknowledged is gone from the spool. Only
	// the last line may come again, in case its ack was still on the way
	// when the standin left.
	third := startStandin(t, a.Prefix, standinExe, "-ack", "-lines", "2")
	got3 := third.received(t, 90*time.Second)
	lastAcked := got2[len(got2)-2].Seq
	for _, l := range got3 {
		if l.Run == run && l.Seq <= lastAcked {
			t.Errorf("third connection resent acknowledged seq %d (acknowledged up to %d): %s", l.Seq, lastAcked, l.raw)
		}
	}
	if t.Failed() {
		t.Logf("agent log:\n%s", agentErr.String())
	}
	for _, want := range []string{"msg=host_connected transport=virtio-serial", "msg=host_disconnected"} {
		if !strings.Contains(agentErr.String(), want) {
			t.Errorf("agent log lacks %q:\n%s", want, agentErr.String())
		}
	}
	t.Logf("lines: %d unacknowledged, %d acknowledged, %d after", len(got1), len(got2), len(got3))
}
