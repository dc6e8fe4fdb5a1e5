package hostrelay

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
)

// knownChecks are the checks the agent ships (package checks) and the name
// of its events about itself; each may become a subject token under any
// VM. checknames_test.go keeps the list in step with the checks package,
// which the relay does not import.
var knownChecks = []string{"firewall", "logs", "network", "processes", "resources", "software", protocol.AgentCheck}

// DefaultMaxAnnouncedChecks bounds the check names, beyond knownChecks, that
// one VM's hellos may announce. Each name is a subject in the stream, so
// the bound keeps a guest from inventing subjects without end: with the
// seven known names, a heartbeat and a channel subject, a VM has at most
// 25 subjects.
const DefaultMaxAnnouncedChecks = 16

// checkNames is what one VM may use as a check name in a subject: the known
// checks and those its hellos announced, up to a bound. Names announced
// once stay allowed while the relay watches the VM's channel, since spooled
// messages of an older run may still come.
type checkNames struct {
	mu        sync.Mutex
	max       int
	announced []string
}

// allowed reports whether a result or event may carry check.
func (c *checkNames) allowed(check string) bool {
	if slices.Contains(knownChecks, check) {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Contains(c.announced, check)
}

// announce takes the checks of a validated hello and reports how many it
// could not take because the VM is at its bound.
func (c *checkNames) announce(data []byte) (refused int) {
	var h protocol.Hello
	if json.Unmarshal(data, &h) != nil { // validated already: cannot fail
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, name := range h.Checks {
		if slices.Contains(knownChecks, name) || slices.Contains(c.announced, name) {
			continue
		}
		if len(c.announced) >= c.max {
			refused++
			continue
		}
		c.announced = append(c.announced, name)
	}
	return refused
}

// screen decides whether a validated envelope may be published, and says
// why not. A hello widens what later results may name.
func (v *vmState) screen(env *protocol.Envelope) (DropReason, bool) {
	v.lag.Store(int64(time.Since(env.TS)))
	switch env.Kind {
	case protocol.KindHello:
		if n := v.checks.announce(env.Data); n > 0 {
			// The hello itself is fine; what it could not announce is
			// refused when a result names it.
			v.overAnnounced.Add(uint64(n))
		}
	case protocol.KindResult, protocol.KindEvent:
		if !v.checks.allowed(env.Check) {
			return DropUnknownCheck, false
		}
	}
	return "", true
}

// refuse counts and logs a valid message the relay will not publish; the
// session still acknowledges it in its turn.
func (s *session) refuse(ctx context.Context, env protocol.Envelope, reason DropReason) {
	s.vm.drop(reason)
	s.vm.logGuest(ctx, s.r.log, slog.LevelWarn, "guest_message_refused",
		slog.String("vm", s.ch.Name), slog.String("channel", s.ch.Path),
		slog.String("run", env.Run), slog.Uint64("seq", env.Seq),
		slog.String("check", env.Check), slog.String("reason", string(reason)))
}
