//go:build linux

package vmlab_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
	"github.com/guestdiag/guestdiag/test/vmlab"
)

// watchedUnit is in debianAgentConfig's processes.units.
const watchedUnit = "vmlab-watched.service"

// pollerScript is the 10 s polling monitor the agent is compared with
// (Heartbeat's way): it writes the guest's clock when it first sees the
// unit not active.
// It marks its first poll, so the kill can follow it: the monitor's worst
// case, a full interval; on average it would see a failure after half.
const pollerScript = `first=1; while [ "$(systemctl is-active ` + watchedUnit + `)" = active ]; do [ -n "$first" ] && : >/run/vmlab-poller.polled; first=; sleep 10; done; date +%s.%N >/run/vmlab-poller`

// execStatus runs cmd in the guest and fails on a non-zero exit.
func execStatus(ctx context.Context, vm *vmlab.VM, cmd string) (string, error) {
	r, err := vm.Exec(ctx, cmd)
	if err == nil && r.Exit != 0 {
		err = fmt.Errorf("%s: exit %d: %s", cmd, r.Exit, r.Output)
	}
	return r.Output, err
}

// measureFailureLatency kills a watched unit's main process with SIGKILL
// and makes a unit run out of memory, and logs how long each took to reach
// the host as a finding, beside the polling monitor's detection time.
func measureFailureLatency(t *testing.T, ctx context.Context, vm *vmlab.VM, envs *envelopeWatch) {
	t.Run("a watched unit killed with SIGKILL is reported, beside a 10 s polling monitor", func(t *testing.T) {
		exec1(t, ctx, vm, "systemd-run --unit="+watchedUnit+" -p Restart=no sleep infinity")
		exec1(t, ctx, vm, "systemd-run --unit=vmlab-poller sh -c '"+pollerScript+"'")
		eventually(t, ctx, 30*time.Second, "the polling monitor's first poll", func(ctx context.Context) error {
			_, err := execStatus(ctx, vm, "test -e /run/vmlab-poller.polled")
			return err
		})
		killed := strings.TrimSpace(exec1(t, ctx, vm, "date +%s.%N; kill -9 $(systemctl show -p MainPID --value "+watchedUnit+")"))
		at := time.Now()
		e, f := envs.awaitFinding(t, ctx, "", at, time.Minute, func(f protocol.Finding) bool {
			return f.Source == watchedUnit && f.Severity != protocol.SeverityInfo
		})
		agent := e.at.Sub(at)
		var poller float64
		eventually(t, ctx, 30*time.Second, "the polling monitor sees the unit down", func(ctx context.Context) error {
			out, err := execStatus(ctx, vm, "cat /run/vmlab-poller")
			if err != nil {
				return err
			}
			done, err1 := strconv.ParseFloat(strings.TrimSpace(out), 64)
			start, err2 := strconv.ParseFloat(killed, 64)
			if err1 != nil || err2 != nil {
				t.Fatalf("guest clock readings %q, %q", killed, out)
			}
			poller = done - start
			return nil
		})
		t.Logf("latency: SIGKILL of %s → %s at the host %v (%s); the 10 s polling monitor saw it %.1f s after the kill (guest clock, no transport)",
			watchedUnit, f.Code, agent.Round(time.Millisecond), f.Message, poller)
	})

	t.Run("a unit killed for running out of memory is reported", func(t *testing.T) {
		at := time.Now()
		// tail keeps a line without newlines in memory until the cgroup's
		// limit makes the kernel kill it.
		exec1(t, ctx, vm, "systemd-run --unit=vmlab-oom -p MemoryMax=32M -p MemorySwapMax=0 sh -c 'head -c 512M /dev/zero | tail'")
		e, f := envs.awaitFinding(t, ctx, "", at, 2*time.Minute, func(f protocol.Finding) bool {
			return f.Code == "proc.oom_killed" || strings.Contains(strings.ToLower(f.Message), "out of memory")
		})
		t.Logf("latency: OOM kill in vmlab-oom.service → %s at the host %v after the start: %s", f.Code, e.at.Sub(at).Round(time.Millisecond), f.Message)
	})
}
