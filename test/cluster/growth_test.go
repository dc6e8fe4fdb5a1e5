package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/hostrelay"
	"github.com/guestdiag/guestdiag/internal/collectord"
	"github.com/guestdiag/guestdiag/internal/natstest"
	"github.com/guestdiag/guestdiag/internal/natsutil"
	"github.com/guestdiag/guestdiag/protocol"
)

// guestdiagStreams are the streams `guestdiag up` leaves in its store: the
// stream, the timeline and the three KV buckets.
var guestdiagStreams = []string{"GUESTDIAG", "GUESTDIAG_TIMELINE", "KV_" + collector.DefaultBucket, "KV_" + collector.DefaultAlertBucket, "KV_" + collector.DefaultLivenessBucket}

// natsCLI finds the nats CLI (scripts/deps.sh installs it), skipping the
// test without it unless GUESTDIAG_REQUIRE_NATSCLI is set.
func natsCLI(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("nats")
	if err != nil {
		// Where scripts/deps.sh's go install puts it, which need not be on PATH.
		if gopath, gerr := exec.Command("go", "env", "GOPATH").Output(); gerr == nil {
			bin := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "nats")
			if _, serr := os.Stat(bin); serr == nil {
				return bin
			}
		}
		if os.Getenv("GUESTDIAG_REQUIRE_NATSCLI") != "" {
			t.Fatalf("the nats CLI is required (GUESTDIAG_REQUIRE_NATSCLI) and missing: %v", err)
		}
		t.Skipf("the nats CLI is missing (scripts/deps.sh installs it): %v", err)
	}
	return p
}

// natsServer builds the nats-server command of go.mod's version.
func natsServer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "nats-server")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2").CombinedOutput()
	if err != nil {
		t.Fatalf("go build nats-server: %v\n%s", err, out)
	}
	return bin
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return string(out)
}

// history is what a user would check survived: every stream's messages and
// what the collector's API shows.
type history struct {
	streams map[string]uint64 // messages per stream
	vms     []string          // "<host>/<vm> <status> <seq>" per VM
	alerts  []string          // "<fingerprint> <state> <seq>" per alert
	events  int               // timeline entries of web00
}

func readHistory(t *testing.T, js jetstream.JetStream, col *running) history {
	t.Helper()
	h := history{streams: map[string]uint64{}}
	for _, name := range guestdiagStreams {
		info, err := streamInfo(t, js, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		h.streams[name] = info.State.Msgs
	}
	vms, _ := col.c.VMs()
	for _, v := range vms {
		n := v.Checks["network"]
		h.vms = append(h.vms, fmt.Sprintf("%s/%s %s %d", v.Host, v.Name, n.Status, n.Seq))
	}
	for _, a := range col.c.Alerts(collector.AlertFilter{}) {
		h.alerts = append(h.alerts, fmt.Sprintf("%s %s %d", a.Fingerprint, a.State, a.Seq))
	}
	slices.Sort(h.vms)
	slices.Sort(h.alerts)
	h.events = len(col.c.Timeline("h1", "web00"))
	return h
}

func (h history) String() string {
	return fmt.Sprintf("streams %v, %d VMs %v, %d alerts %v, web00's timeline %d", h.streams, len(h.vms), h.vms, len(h.alerts), h.alerts, h.events)
}

// waitIdle waits until the collectors' durable consumer has nothing
// pending or unacknowledged.
func waitIdle(t *testing.T, js jetstream.JetStream, within time.Duration) {
	t.Helper()
	waitFor(t, within, "the collectors' consumer idle", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		cons, err := js.Consumer(ctx, natsutil.StreamName, collector.DefaultDurable)
		if err != nil {
			return false
		}
		info, err := cons.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
}

func TestGrowFromGuestdiagUpToAClusterKeepsTheHistory(t *testing.T) {
	skipUnderRace(t)
	cli := natsCLI(t)
	nsBin := natsServer(t)
	const vms = 20

	// 1. The history `guestdiag up` leaves: its embedded server (as up
	// starts it) with a collector at R1 that saw every VM's gateway go
	// down and come back.
	oldStore := t.TempDir()
	old, err := natsutil.StartServer(natsutil.ServerConfig{Port: -1, StoreDir: oldStore, ServerName: "guestdiag-h1"})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(old.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	col := startCollector(t, nc, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	waitFor(t, time.Minute, "the collector's setup", func() bool {
		_, err := streamInfo(t, js, "KV_"+collector.DefaultBucket)
		return err == nil
	})
	for _, step := range []struct {
		seq    uint64
		status protocol.Status
	}{{1, protocol.StatusCrit}, {2, protocol.StatusOK}} {
		for i := range vms {
			subject, body, id := report(t, "h1", fmt.Sprintf("web%02d", i), "r1", step.seq, step.status)
			if _, err := js.Publish(ctx, subject, body, jetstream.WithMsgID(id)); err != nil {
				t.Fatal(err)
			}
		}
		waitIdle(t, js, 20*time.Second)
	}
	waitFor(t, 20*time.Second, "every alert resolved", func() bool {
		return len(col.c.Alerts(collector.AlertFilter{State: collector.AlertResolved})) == vms
	})
	before := readHistory(t, js, col)
	col.stop()
	nc.Close()
	old.Shutdown()
	old.WaitForShutdown()

	// 2. The doc's steps. Serve the old store alone and back it up.
	port := natstest.FreePort(t)
	srv := exec.Command(nsBin, "--jetstream", "--store_dir", oldStore, "--addr", "127.0.0.1", "--port", fmt.Sprint(port))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if srv.ProcessState == nil {
			_ = srv.Process.Kill()
			_ = srv.Wait()
		}
	})
	waitFor(t, 10*time.Second, "nats-server on the old store", func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	backup := filepath.Join(t.TempDir(), "guestdiag-backup")
	run(t, cli, "--server", fmt.Sprintf("nats://127.0.0.1:%d", port), "account", "backup", "--consumers", "-f", backup)
	if err := srv.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	_ = srv.Wait()

	// The cluster, and every stream restored into it at R3 by the admin.
	c := startConfCluster(t)
	admin := []string{"--server", strings.Split(c.URLs(), ",")[0], "--user", "admin", "--password", passwords["admin"], "--tlsca", filepath.Join(c.dir, "ca.pem")}
	for _, name := range guestdiagStreams {
		run(t, cli, append(admin, "stream", "restore", "--replicas", "3", "--no-progress", filepath.Join(backup, name))...)
	}

	// 3. Collectors (here one) and relays on the cluster with their users.
	cnc := c.connect(t, "collector", collectord.CollectorInboxPrefix)
	cjs, err := jetstream.New(cnc)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range guestdiagStreams {
		waitFor(t, 3*time.Minute, name+" current on three nodes", func() bool {
			info, err := streamInfo(t, cjs, name)
			if err != nil || info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
				return false
			}
			for _, r := range info.Cluster.Replicas {
				if !r.Current {
					return false
				}
			}
			return true
		})
	}
	grown := startCollector(t, cnc, 3)
	waitFor(t, time.Minute, "the grown collector's view", func() bool {
		vs, ready := grown.c.VMs()
		return ready && len(vs) == vms && len(grown.c.Alerts(collector.AlertFilter{})) == vms
	})
	after := readHistory(t, cjs, grown)
	t.Logf("history of the single node: %s", before)
	if got, want := after.String(), before.String(); got != want {
		t.Errorf("history on the cluster:\n got %s\nwant %s", got, want)
	}

	// An agent resends what its relay published before the move but saw
	// no ack for: the restored stream still knows the message id.
	h1, err := jetstream.New(c.connect(t, "relay-h1", hostrelay.RelayInboxPrefix("h1")))
	if err != nil {
		t.Fatal(err)
	}
	resend, body, id := report(t, "h1", "web01", "r1", 2, protocol.StatusOK)
	ack, err := h1.Publish(ctx, resend, body, jetstream.WithMsgID(id))
	if err != nil {
		t.Fatalf("resend: %v", err)
	}
	// JetStream does not always know the restored messages' ids (seen both
	// ways here, docs/deploy.md says so); what must hold is that the
	// collector takes a copy as stale, checked below.
	t.Logf("a resend of a message stored before the move: duplicate %v", ack.Duplicate)

	// 4. The original node goes; the history stays, and new reports go on
	// from where the single node stopped.
	c.Kill(0)
	subject, body, id := report(t, "h1", "web00", "r1", 3, protocol.StatusCrit)
	// As a relay does, publish again until acknowledged: a publish sent
	// while the streams elect new leaders may go unanswered.
	waitFor(t, time.Minute, "a report acknowledged after n1 went", func() bool {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := h1.Publish(pctx, subject, body, jetstream.WithMsgID(id))
		return err == nil
	})
	waitFor(t, 30*time.Second, "web00's gateway alert firing again", func() bool {
		return len(grown.c.Alerts(collector.AlertFilter{State: collector.AlertFiring})) == 1
	})
	waitIdle(t, cjs, 20*time.Second)
	lost := readHistory(t, cjs, grown)
	if i := slices.Index(lost.vms, "h1/web01 ok 2"); i < 0 {
		t.Errorf("web01 after its resend: got %v, want h1/web01 ok 2 unchanged", lost.vms)
	}
	if !slices.Contains(lost.vms, "h1/web00 crit 3") {
		t.Errorf("web00 after n1 went: got %v, want h1/web00 crit 3, its report after the move applied", lost.vms)
	}
	if lost.streams["GUESTDIAG"] < before.streams["GUESTDIAG"]+1 || len(lost.vms) != vms || len(lost.alerts) != vms {
		t.Errorf("history without n1: got %s, want %s plus web00's new report", lost, before)
	}
}
