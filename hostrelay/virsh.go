package hostrelay

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/guestdiag/guestdiag/internal/pause"
	"github.com/guestdiag/guestdiag/protocol"
)

// maxVirshLine bounds one line of virsh's output; a lifecycle line is a
// domain name and a few words.
const maxVirshLine = 64 << 10

// virshEvent is one lifecycle line of "virsh event --timestamp".
type virshEvent struct {
	TS     time.Time
	Domain string
	Event  string // Started, Suspended, Resumed, Stopped, Shutdown, PMSuspended, Crashed, …
	Detail string // Booted, Paused, Migrated, I/O Error, Panicked, …
}

const virshPrefix = "event 'lifecycle' for domain '"

// parseVirshEvent reads one line of
// "virsh event --all --loop --event lifecycle --timestamp" run with
// LC_ALL=C:
//
//	2024-05-02 10:00:00.123+0000: event 'lifecycle' for domain 'web01': Suspended Paused
//
// The domain name is printed as it is, quotes included, but the words
// after it never hold "': ", so the last one ends the name.
func parseVirshEvent(line string) (virshEvent, bool) {
	var ev virshEvent
	ts, rest, ok := strings.Cut(line, ": ")
	if !ok {
		return ev, false
	}
	t, err := time.Parse("2006-01-02 15:04:05.000-0700", ts)
	if err != nil {
		return ev, false
	}
	rest, ok = strings.CutPrefix(rest, virshPrefix)
	i := strings.LastIndex(rest, "': ")
	if !ok || i < 0 {
		return ev, false
	}
	ev.TS, ev.Domain = t.UTC(), rest[:i]
	ev.Event, ev.Detail, _ = strings.Cut(strings.TrimSpace(rest[i+len("': "):]), " ")
	if ev.Domain == "" || ev.Event == "" {
		return ev, false
	}
	return ev, true
}

// state maps a libvirt lifecycle event to the VM state it announces; ""
// for those that say nothing about running (Defined, Undefined).
func (ev virshEvent) state() protocol.VMState {
	switch ev.Event {
	case "Started", "Resumed":
		return protocol.VMRunning
	case "Suspended":
		if ev.Detail == "Migrated" || ev.Detail == "Post-copy" {
			return protocol.VMMigrating
		}
		return protocol.VMPaused
	case "PMSuspended":
		return protocol.VMPaused
	case "Stopped":
		switch ev.Detail {
		case "Migrated":
			return protocol.VMMigrated
		case "Crashed", "Failed":
			return protocol.VMCrashed
		}
		return protocol.VMShutdown
	case "Shutdown":
		return protocol.VMShutdown
	case "Crashed":
		return protocol.VMPanicked
	}
	return ""
}

// watchVirsh follows libvirt's lifecycle events through virsh until ctx
// ends, starting virsh again with backoff whenever it exits. libvirt
// reports changes only: a VM's state before the relay started is not
// published from here.
func (r *Relay) watchVirsh(ctx context.Context, bin string) {
	last := make(map[string]*vmLifecycle) // by domain name
	var failing logOnce
	backoff := r.cfg.BackoffMin
	for {
		start := time.Now()
		err := r.followVirsh(ctx, bin, last)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) >= r.cfg.BackoffMax {
			backoff = r.cfg.BackoffMin
		}
		failing.log(r.log, "virsh_events_ended", "virsh", bin, "uri", r.cfg.Lifecycle.VirshURI, "err", err, "retry_in", backoff)
		if pause.For(ctx, backoff) != nil {
			return
		}
		backoff = min(backoff*2, r.cfg.BackoffMax)
	}
}

func (r *Relay) followVirsh(ctx context.Context, bin string, last map[string]*vmLifecycle) error {
	cmd := exec.CommandContext(ctx, bin, "-c", r.cfg.Lifecycle.VirshURI, "event", "--all", "--loop", "--event", "lifecycle", "--timestamp")
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 0, 4096), maxVirshLine)
	for sc.Scan() {
		ev, ok := parseVirshEvent(sc.Text())
		if !ok {
			continue // the "events received" summary, other event types
		}
		state := ev.state()
		if state == "" {
			continue
		}
		if !utf8.ValidString(ev.Domain) {
			r.log.Warn("libvirt_name_invalid", "domain", []byte(ev.Domain))
			continue
		}
		l := last[ev.Domain]
		if l == nil {
			l = &vmLifecycle{}
			last[ev.Domain] = l
		}
		reason := strings.ToLower(ev.Event + " " + ev.Detail)
		if l.next(state, reason) {
			r.publishLifecycle(Channel{Name: ev.Domain}, state, reason, "libvirt", ev.TS)
		}
		if ev.Event == "Undefined" {
			delete(last, ev.Domain)
		}
	}
	scanErr := sc.Err()
	// A line over the bound leaves virsh writing into a pipe nobody reads.
	cmd.Process.Kill()
	err = cmd.Wait()
	return errors.Join(scanErr, err)
}
