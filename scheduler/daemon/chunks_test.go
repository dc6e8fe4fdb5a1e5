package daemon

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
	"github.com/guestdiag/guestdiag/scheduler/inventory"
)

// backendVirsh is a stand-in for virsh (libvirt is not installed here): on
// host a, hog and small share the isolated network backend; it answers
// for host a only while ok says so, and counts host a's rounds.
func backendVirsh(ok func() bool, rounds *atomic.Int32) func(host string) inventory.Runner {
	return func(host string) inventory.Runner {
		return func(_ context.Context, args ...string) ([]byte, error) {
			switch {
			case host != "a":
				return []byte("\n"), nil
			case args[0] == "list":
				rounds.Add(1)
				if !ok() {
					return nil, errors.New("stand-in: ssh: connect to host a: connection refused")
				}
				return []byte("hog\nsmall\n\n"), nil
			case args[0] == "domiflist":
				return []byte(" Interface   Type      Source    Model    MAC\n---------------------------------------------\n vnet0       network   backend   virtio   52:54:00:00:00:0" + args[1][:1] + "\n\n"), nil
			case args[0] == "net-dumpxml":
				return []byte("<network><name>backend</name><bridge name='virbr1'/></network>"), nil
			}
			return nil, errors.New("unexpected virsh call")
		}
	}
}

func TestAHostWhoseLibvirtFailsKeepsItsLastChunks(t *testing.T) {
	_, js := setup(t)
	publishFleet(t, js)
	var rounds atomic.Int32
	var logs bytes.Buffer
	f := fastFile()
	f.Libvirt.Refresh = Duration(10 * time.Millisecond)
	d := &daemon{cfg: Config{Virsh: backendVirsh(func() bool { return rounds.Load() <= 1 }, &rounds)}, f: f,
		fleet: inventory.NewFleet(inventory.Demand{}), log: slog.New(slog.NewTextHandler(&logs, nil))}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	if err := follow(ctx, js, d.fleet, time.Minute, func(protocol.Hint) {}, d.log); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	first, _ := d.chunks(ctx, now)
	if first["hog"] != "a/net/backend" {
		t.Fatalf("got chunks %v from the first answer, want hog and small in a/net/backend", first)
	}
	got, unknown := d.chunks(ctx, now.Add(time.Second))
	if rounds.Load() != 2 {
		t.Fatalf("got %d rounds of virsh on a, want 2", rounds.Load())
	}
	if got["hog"] != "a/net/backend" || got["small"] != "a/net/backend" || len(unknown) != 0 {
		t.Errorf("after a failed refresh: got chunks %v and unknown %v, want a's last chunks kept", got, unknown)
	}
	if !strings.Contains(logs.String(), "libvirt_chunks_kept") || !strings.Contains(logs.String(), "connection refused") {
		t.Errorf("got log %q, want libvirt_chunks_kept with virsh's error", logs.String())
	}
}

func TestAHostWhoseLibvirtNeverAnsweredIsNoSource(t *testing.T) {
	s, js := setup(t)
	publishFleet(t, js)
	plans := watchPlans(t, s)
	var rounds atomic.Int32
	startDaemon(t, s, Config{Name: "sched-a", Virsh: backendVirsh(func() bool { return false }, &rounds)})
	p := plans.nextPlan(t, 5*time.Second)
	if len(p.Moves) != 0 {
		t.Errorf("got moves %+v off a, whose chunks are unknown; want none", p.Moves)
	}
	i := slices.IndexFunc(p.Unresolved, func(u protocol.PlanProblem) bool { return u.Host == "a" })
	if i < 0 || !strings.Contains(p.Unresolved[i].Reason, "libvirt never answered") || !strings.Contains(p.Unresolved[i].Reason, "connection refused") {
		t.Errorf("got unresolved %+v, want a with libvirt's failure", p.Unresolved)
	}
}
