//go:build linux

package vmlab_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/checks/processes"
	"github.com/guestdiag/guestdiag/protocol"
	"github.com/guestdiag/guestdiag/test/vmlab"
)

// watchedUnit is in debianAgentConfig's processes.units.
const watchedUnit = "vmlab-watched.service"

// pollerScript is the 10 s polling monitor the agent is compared with
// (Heartbeat's way): it writes the guest's clock to /run/NAME.down when it
// first sees unit not active (through a rename, so that no reader sees the
// file empty). It marks its first poll in /run/NAME.polled,
// so that the failure can follow it: the monitor's worst case, a full
// interval; on average it would see a failure after half.
func pollerScript(name, unit string) string {
	return fmt.Sprintf(`first=1; while [ "$(systemctl is-active %s)" = active ]; do [ -n "$first" ] && : >/run/%s.polled; first=; sleep 10; done; date +%%s.%%N >/run/%s.tmp; mv /run/%s.tmp /run/%s.down`, unit, name, name, name, name)
}

// execStatus runs cmd in the guest and fails on a non-zero exit.
func execStatus(ctx context.Context, vm *vmlab.VM, cmd string) (string, error) {
	r, err := vm.Exec(ctx, cmd)
	if err == nil && r.Exit != 0 {
		err = fmt.Errorf("%s: exit %d: %s", cmd, r.Exit, r.Output)
	}
	return r.Output, err
}

// guestClock is the guest's clock less the host's, read over the lab's
// command channel: the guest under TCG keeps its own time, so a guest
// timestamp is put on the host's clock with it, give or take half the
// round trip.
type guestClock struct {
	offset, plusMinus time.Duration
}

func readGuestClock(t *testing.T, ctx context.Context, vm *vmlab.VM) guestClock {
	t.Helper()
	best := guestClock{plusMinus: time.Hour}
	// The shortest of a few round trips bounds the offset best.
	for range 5 {
		before := time.Now()
		out := exec1(t, ctx, vm, "date +%s.%N")
		after := time.Now()
		guest := parseGuestTime(t, out)
		if half := after.Sub(before) / 2; half < best.plusMinus {
			best = guestClock{offset: guest.Sub(before.Add(half)), plusMinus: half}
		}
	}
	return best
}

// onHost puts guest time g on the host's clock.
func (c guestClock) onHost(g time.Time) time.Time { return g.Add(-c.offset) }

func parseGuestTime(t *testing.T, s string) time.Time {
	t.Helper()
	sec, frac, _ := strings.Cut(strings.TrimSpace(s), ".")
	n, err1 := strconv.ParseInt(sec, 10, 64)
	ns, err2 := strconv.ParseInt((frac + "000000000")[:9], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("guest clock reading %q", s)
	}
	return time.Unix(n, ns)
}

// startPoller starts the polling monitor of unit as unit vmlab-NAME and
// waits for its first poll.
func startPoller(t *testing.T, ctx context.Context, vm *vmlab.VM, name, unit string) {
	t.Helper()
	exec1(t, ctx, vm, "systemd-run --unit="+name+" sh -c '"+pollerScript(name, unit)+"'")
	eventually(t, ctx, 30*time.Second, "the polling monitor's first poll", func(ctx context.Context) error {
		_, err := execStatus(ctx, vm, "test -e /run/"+name+".polled")
		return err
	})
}

// pollerSaw returns when the polling monitor NAME saw its unit down, on the
// guest's clock.
func pollerSaw(t *testing.T, ctx context.Context, vm *vmlab.VM, name string) time.Time {
	t.Helper()
	var out string
	eventually(t, ctx, 30*time.Second, "the polling monitor sees the unit down", func(ctx context.Context) error {
		var err error
		out, err = execStatus(ctx, vm, "cat /run/"+name+".down")
		return err
	})
	return parseGuestTime(t, out)
}

// processesEvents is the part of a processes result that holds its events.
type processesEvents struct {
	ServiceExits []processes.ServiceExit `json:"service_exits"`
	OOMKills     []processes.OOMKill     `json:"oom_kills"`
}

// measureFailureLatency kills a watched unit's main process with SIGKILL
// and makes a unit run out of memory, and logs how long each took to be
// seen by the agent and to reach the host as a finding, beside a 10 s
// polling monitor of the same unit.
func measureFailureLatency(t *testing.T, ctx context.Context, vm *vmlab.VM, envs *envelopeWatch) {
	t.Run("a watched unit killed with SIGKILL is reported within seconds, beside a 10 s polling monitor", func(t *testing.T) {
		exec1(t, ctx, vm, "systemd-run --unit="+watchedUnit+" -p Restart=no sleep infinity")
		startPoller(t, ctx, vm, "vmlab-poller", watchedUnit)
		clock := readGuestClock(t, ctx, vm)
		at := time.Now()
		exec1(t, ctx, vm, "kill -9 $(systemctl show -p MainPID --value "+watchedUnit+")")
		var exit processes.ServiceExit
		e, f := envs.awaitFinding(t, ctx, "", at, time.Minute, func(f protocol.Finding) bool {
			return f.Source == watchedUnit && (f.Code == "proc.service_failed" || f.Code == "proc.service_restarted")
		})
		var data processesEvents
		if err := json.Unmarshal(e.Data, &data); err != nil {
			t.Fatalf("processes data: %v: %s", err, e.Data)
		}
		for _, x := range data.ServiceExits {
			if x.Unit == watchedUnit {
				exit = x
			}
		}
		if exit.Exited == nil {
			t.Fatalf("%s arrived without a service_exits entry with its exit time (not from a D-Bus signal?): %s", f.Code, e.Data)
		}
		if exit.Signal != "SIGKILL" {
			t.Errorf("service_exits says signal %q, want SIGKILL: %+v", exit.Signal, exit)
		}
		exited := *exit.Exited
		poller := pollerSaw(t, ctx, vm, "vmlab-poller").Sub(exited)
		agent := exit.Seen.Sub(exited)
		endToEnd := e.at.Sub(clock.onHost(exited))
		t.Logf("latency: SIGKILL of %s → %s: agent saw it %v after the exit (guest clock), at the host %v (±%v, clock offset %v); the 10 s polling monitor saw it %v after (guest clock) — %s",
			watchedUnit, f.Code, agent.Round(time.Millisecond), endToEnd.Round(time.Millisecond), clock.plusMinus.Round(time.Millisecond), clock.offset.Round(time.Millisecond), poller.Round(time.Millisecond), f.Message)
		if endToEnd >= poller {
			t.Errorf("the event reached the host %v after the exit, no sooner than the 10 s polling monitor (%v)", endToEnd, poller)
		}
	})

	t.Run("a unit killed for running out of memory arrives as proc.oom_killed, beside a 10 s polling monitor", func(t *testing.T) {
		// tail keeps a line without newlines in memory until the cgroup's
		// limit makes the kernel kill it; it waits for the go file, so the
		// polling monitor has polled once before.
		exec1(t, ctx, vm, "systemd-run --unit=vmlab-oom -p MemoryMax=32M -p MemorySwapMax=0 sh -c 'while [ ! -e /run/vmlab-oom.go ]; do sleep 0.2; done; head -c 512M /dev/zero | tail'")
		startPoller(t, ctx, vm, "vmlab-oompoller", "vmlab-oom.service")
		clock := readGuestClock(t, ctx, vm)
		at := time.Now()
		exec1(t, ctx, vm, "touch /run/vmlab-oom.go")
		var kill processes.OOMKill
		e, f := envs.awaitFinding(t, ctx, "proc.oom_killed", at, 2*time.Minute, func(f protocol.Finding) bool {
			return f.Unit == "vmlab-oom.service" || strings.Contains(f.Source+" "+f.Message, "vmlab-oom")
		})
		t.Logf("proc.oom_killed: %s", f.Message)
		var data processesEvents
		if err := json.Unmarshal(e.Data, &data); err != nil {
			t.Fatalf("processes data: %v: %s", err, e.Data)
		}
		for _, k := range data.OOMKills {
			if k.Unit == "vmlab-oom.service" || strings.Contains(k.Cgroup, "vmlab-oom") {
				kill = k
			}
		}
		if kill.Seen.IsZero() {
			t.Fatalf("proc.oom_killed arrived without an oom_kills entry for vmlab-oom.service: %s", e.Data)
		}
		t.Logf("oom_kills entry: source %s, victim %s[%d], cgroup %s, unit %s, anon-rss %d kB, memory.current %v, memory.max %v, memory.peak %v", kill.Source, kill.Name, kill.PID, kill.Cgroup, kill.Unit, kill.AnonRSSKB, derefOr(kill.MemCurrent), derefOr(kill.MemMax), derefOr(kill.MemPeak))
		if kill.At == nil {
			t.Fatalf("the oom_kills entry has no kill time (source %s): %+v", kill.Source, kill)
		}
		killed := *kill.At
		poller := pollerSaw(t, ctx, vm, "vmlab-oompoller").Sub(killed)
		agent := kill.Seen.Sub(killed)
		endToEnd := e.at.Sub(clock.onHost(killed))
		t.Logf("latency: OOM kill in vmlab-oom.service → proc.oom_killed: agent saw it %v after the kill (guest clock), at the host %v (±%v); the 10 s polling monitor saw the unit down %v after (guest clock)",
			agent.Round(time.Millisecond), endToEnd.Round(time.Millisecond), clock.plusMinus.Round(time.Millisecond), poller.Round(time.Millisecond))
		// The kernel's own stamp of the record, put on today's wall clock
		// by dmesg: if it differs from the agent's at, the guest's wall
		// clock moved against its monotonic one since the agent started.
		kernelAt := strings.TrimSpace(execAny(t, ctx, vm, "dmesg --time-format=iso | grep 'Killed process "+strconv.Itoa(kill.PID)+" ' | tail -n 1 | cut -d' ' -f1"))
		if k, err := time.Parse("2006-01-02T15:04:05,000000-07:00", kernelAt); err == nil {
			t.Logf("dmesg stamps the record %s: agent's at %v off it, agent's seen %v after it", kernelAt, killed.Sub(k).Round(time.Millisecond), kill.Seen.Sub(k).Round(time.Millisecond))
		} else {
			t.Logf("dmesg's stamp of the record: %q", kernelAt)
		}
		// Not compared as the SIGKILL is: the kill comes when tail has
		// filled 32 MB, seconds after the go file, at any point of the
		// monitor's 10 s sleep, so its figure is one draw from 0 – 10 s.
	})
}

func derefOr(p *uint64) any {
	if p == nil {
		return "unread"
	}
	return *p
}
