//go:build linux

package vmlab_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/guestdiag/guestdiag/internal/pkgbuild"
	"github.com/guestdiag/guestdiag/protocol"
	"github.com/guestdiag/guestdiag/test/vmlab"
)

// debianName is the guest's libvirt-style name; its hostname is debian-lab.
const debianName = "debian-lab"

// debianAgentConfig keeps the network check's "internet" on QEMU's DNS
// address, which answers on the restricted user network. Processes polls
// only every minute, so that what reaches the host sooner came by its
// events (D-Bus signals, /dev/kmsg, memory.events), not by a poll.
const debianAgentConfig = `checks:
  network:
    interval: 60s
    config:
      internet_targets: [10.0.2.3]
      dns_name: ""
  processes:
    interval: 60s
    config:
      units: [vmlab-watched.service]
  firewall:
    interval: 60s
  logs:
    interval: 60s
  resources:
    interval: 30s
  software:
    interval: 60s
`

// installScript is boot.sh of the first boot: install the agent's package
// under systemd, as an image build would, and power off.
const installScript = `#!/bin/sh
trap 'echo "vmlab: install failed"; systemctl --no-block start poweroff.target' EXIT
set -eu
dpkg -i /run/vmlab/guestdiag-agent_1.deb
# Over the package's agent.yaml (all comments): the same in both versions,
# so the upgrade keeps this one without asking.
install -m 0644 /run/vmlab/agent.yaml /etc/guestdiag/agent.yaml
guestdiag-agent config check /etc/guestdiag/agent.yaml >/dev/null
# An error entry the journal keeps from this boot: the condition under which
# the logs check was once seen to miss the first new error (issue 8).
logger -p user.err -t vmlab "vmlab-install: an error entry from the install boot"
echo "vmlab: install done: guestdiag-agent $(dpkg-query -W -f='${Version}' guestdiag-agent)"
trap - EXIT
# Straight to the target: systemctl poweroff would ask the masked logind first.
systemctl --no-block start poweroff.target
`

// serveScript is boot.sh of the second boot: only the lab's command server.
// The agent is not started by anything here.
const serveScript = `#!/bin/sh
set -eu
systemd-run --unit=vmlab-guest --collect /run/vmlab/vmlab-guest serve ` + vmlab.LabChannelName + `
echo "vmlab: serving"
`

// procstatScript prints, for the agent, each of its children and
// qemu-guest-agent, "ROLE PID VmHWM_kB utime stime starttime" (ticks, from
// /proc/PID/stat after the comm field), then the tick rate and uptime.
const procstatScript = `#!/bin/sh
set -eu
show() {
	role=$1 pid=$2
	hwm=$(awk '/^VmHWM:/ {print $2}' /proc/$pid/status)
	set -- $(sed 's/.*) //' /proc/$pid/stat)
	echo "$role $pid $hwm ${12} ${13} ${20}"
}
agent=$(systemctl show -p MainPID --value guestdiag-agent)
show agent "$agent"
for c in $(cat /proc/$agent/task/*/children); do show "child:$(cat /proc/$c/comm)" "$c"; done
show qemu-ga "$(systemctl show -p MainPID --value qemu-guest-agent)"
echo "clk $(getconf CLK_TCK)"
echo "uptime $(cut -d' ' -f1 /proc/uptime)"
`

// The ruleset the firewall subtest adds with nft -f.
const vmlabRuleset = `table inet vmlab {
	chain input {
		type filter hook input priority 0; policy accept;
		tcp dport 2222 drop
	}
}
`

// debianImage skips as setupLab does, and returns the cached Debian image,
// building it first when needed.
func debianImage(t *testing.T) vmlab.DebianImage {
	t.Helper()
	mode := os.Getenv("GUESTDIAG_VMLAB")
	if mode != "1" && mode != "require" {
		t.Skip("boots a Debian guest under QEMU; enable with GUESTDIAG_VMLAB=1 as root on a Debian host with qemu-system-x86, qemu-utils and mmdebstrap (scripts/deps.sh)")
	}
	missing := func(err error) {
		t.Helper()
		if mode == "require" || os.Getenv("CI") == "true" {
			t.Fatalf("the Debian guest is required here but cannot run: %v", err)
		}
		t.Skipf("Debian guest cannot run here: %v", err)
	}
	for _, err := range []error{vmlab.Prerequisites(), vmlab.DebianPrerequisites()} {
		if err != nil {
			missing(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	img, err := vmlab.EnsureDebianImage(ctx, "")
	if errors.Is(err, vmlab.ErrMissingPrerequisite) {
		missing(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if img.Built > 0 {
		t.Logf("built the Debian image in %v (cached in %s)", img.Built.Round(time.Second), img.Dir)
	} else {
		t.Logf("Debian image from the cache: %s", img.Dir)
	}
	return img
}

// envelopeWatch records every guest envelope the relay publishes for one
// VM, with its arrival time on NATS.
type envelopeWatch struct {
	mu    sync.Mutex
	seen  []seenEnvelope
	added chan struct{}
}

type seenEnvelope struct {
	at time.Time
	protocol.Envelope
}

func watchEnvelopes(t *testing.T, nc *nats.Conn, vm string) *envelopeWatch {
	t.Helper()
	w := &envelopeWatch{added: make(chan struct{}, 1)}
	// Hellos, heartbeats and reports each have their own subject.
	sub, err := nc.Subscribe(protocol.SubjectPrefix+".>", func(m *nats.Msg) {
		at := time.Now()
		var rep protocol.Report
		if json.Unmarshal(m.Data, &rep) != nil || rep.Guest == nil || rep.Host != labHost || rep.VM != vm {
			return
		}
		e, err := protocol.Decode(rep.Guest)
		if err != nil {
			return
		}
		w.mu.Lock()
		w.seen = append(w.seen, seenEnvelope{at: at, Envelope: e})
		w.mu.Unlock()
		select {
		case w.added <- struct{}{}:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	return w
}

// await returns the first envelope that match accepts, waiting up to within.
func (w *envelopeWatch) await(t *testing.T, ctx context.Context, what string, within time.Duration, match func(seenEnvelope) bool) seenEnvelope {
	t.Helper()
	return awaitFirst(t, ctx, &w.mu, &w.seen, w.added, within, match, func(seen []seenEnvelope) string {
		var codes []string
		for _, e := range seen {
			for _, f := range e.Findings {
				codes = append(codes, e.Check+":"+f.Code+" "+strconv.Quote(f.Message))
			}
		}
		return fmt.Sprintf("no %s within %v (%d envelopes seen; findings: %v)", what, within, len(seen), codes)
	})
}

// findings returns every finding with code in envelopes that keep accepts.
func (w *envelopeWatch) findings(code string, keep func(seenEnvelope) bool) []protocol.Finding {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []protocol.Finding
	for _, e := range w.seen {
		if !keep(e) {
			continue
		}
		for _, f := range e.Findings {
			if f.Code == code {
				out = append(out, f)
			}
		}
	}
	return out
}

// awaitFinding waits for a finding with code (any code when empty)
// arriving after since that match accepts.
func (w *envelopeWatch) awaitFinding(t *testing.T, ctx context.Context, code string, since time.Time, within time.Duration, match func(protocol.Finding) bool) (seenEnvelope, protocol.Finding) {
	t.Helper()
	var got protocol.Finding
	e := w.await(t, ctx, code, within, func(e seenEnvelope) bool {
		if !e.at.After(since) {
			return false
		}
		for _, f := range e.Findings {
			if (code == "" || f.Code == code) && (match == nil || match(f)) {
				got = f
				return true
			}
		}
		return false
	})
	return e, got
}

func awaitHello(t *testing.T, ctx context.Context, w *envelopeWatch, version string, within time.Duration) (seenEnvelope, protocol.Hello) {
	t.Helper()
	var hello protocol.Hello
	e := w.await(t, ctx, "hello from agent "+version, within, func(e seenEnvelope) bool {
		return e.Kind == protocol.KindHello && json.Unmarshal(e.Data, &hello) == nil && hello.AgentVersion == version
	})
	return e, hello
}

// awaitAllChecks waits for a result of every check from run.
func awaitAllChecks(t *testing.T, ctx context.Context, w *envelopeWatch, run string, within time.Duration) {
	t.Helper()
	for _, c := range []string{"firewall", "logs", "network", "processes", "resources", "software"} {
		w.await(t, ctx, "a "+c+" result of run "+run, within, func(e seenEnvelope) bool {
			return e.Kind == protocol.KindResult && e.Run == run && e.Check == c
		})
	}
}

// buildAgentPackage builds the agent at version and its deb as `make
// packages` does, into work/guestdiag-agent_VERSION.deb.
func buildAgentPackage(t *testing.T, ctx context.Context, work, version string) {
	t.Helper()
	bin := filepath.Join(work, "bin-"+version)
	if err := vmlab.BuildAgentVersion(ctx, filepath.Join(bin, "linux_amd64", "guestdiag-agent"), version); err != nil {
		t.Fatal(err)
	}
	p, ok := pkgbuild.ByName("guestdiag-agent")
	if !ok {
		t.Fatal("internal/pkgbuild has no guestdiag-agent package")
	}
	in := pkgbuild.Inputs{Packaging: "../../packaging", Bin: bin, Version: version, MTime: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	built, err := pkgbuild.Build(p, in, "deb", "amd64", filepath.Join(work, "pkg-"+version))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(built, filepath.Join(work, "guestdiag-agent_"+version+".deb")); err != nil {
		t.Fatal(err)
	}
}

func buildDeb(t *testing.T, ctx context.Context, dst string, d vmlab.Deb) {
	t.Helper()
	if err := vmlab.BuildDeb(ctx, dst, d); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
