package collector

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
)

const (
	// sweepEvery is how often every collector looks at the whole fleet
	// for conditions that only time reveals.
	sweepEvery = time.Second
	// silentBeats heartbeat intervals without a message make an agent
	// silent; staleRuns intervals without a result make a check stale.
	silentBeats = 3
	staleRuns   = 3
	// Intervals assumed when an older agent's hello does not state them.
	defaultHeartbeat = 10 * time.Second
	defaultInterval  = 60 * time.Second
	// pendingGrace is how long a transition may stay unpublished before
	// the sweep takes its publication over from the collector that wrote
	// it (and presumably died): longer than one publication can take.
	pendingGrace = 2 * opTimeout
)

// sweepLoop runs the sweep every sweepEvery until ctx ends. Every
// collector sweeps; compare-and-set on the alert records lets only one of
// them make each transition.
func (c *Collector) sweepLoop(ctx context.Context, b *backend) {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.sweep(ctx, b, time.Now().UTC())
		}
	}
}

// sweepItem is one alert the sweep must take a fresh look at.
type sweepItem struct {
	key AlertKey
	obs *observation // nil: a tick of the clock
}

// sweep raises and resolves the collector's own alerts, lets time act on
// every alert (flap resolution, re-notification, expiry) and publishes
// transitions a dead collector left pending. The watched copies only
// decide what to look at; each change is decided again on the record
// itself.
func (c *Collector) sweep(ctx context.Context, b *backend, now time.Time) {
	var work []sweepItem
	var repub []alertRecord
	var repubKeys []string
	c.mu.RLock()
	if !c.ready || !c.alertsReady || !c.liveReady() {
		c.mu.RUnlock()
		return
	}
	// Collector-raised alerts that fire, by VM key: the only ones whose
	// clearing the VM scan must look for.
	own := make(map[string][]AlertKey)
	retire := c.orphanAlerts(now)
	for kvKey, r := range c.alerts {
		if retire[kvKey] {
			continue
		}
		a := &r.a
		if a.State == AlertFiring && collectorCode(a.Key.Code) {
			vk := Key(a.Key.Host, a.Key.VM)
			own[vk] = append(own[vk], a.Key)
		}
		if _, act := step(a, nil, now, c.cfg.Policy); act != keep {
			work = append(work, sweepItem{key: a.Key})
		}
		if a.Pending && now.Sub(a.Notified) >= pendingGrace {
			repub, repubKeys = append(repub, r), append(repubKeys, kvKey)
		}
	}
	c.mergedVMs(func(vk string, v VM) {
		obs := c.vmObservations(&v, own[vk], now)
		obs = append(obs, c.droppedCheckObservations(&v, vk)...)
		for _, o := range obs {
			var prev *Alert
			if r, ok := c.alerts[AlertKV(o.key)]; ok {
				prev = &r.a
			}
			if _, act := step(prev, o, now, c.cfg.Policy); act != keep {
				work = append(work, sweepItem{key: o.key, obs: o})
			}
		}
	})
	c.mu.RUnlock()
	for _, w := range work {
		if err := c.observe(ctx, b, w.key, w.obs, now); err != nil && ctx.Err() == nil {
			c.log.Warn("sweep_alert_failed", "host", w.key.Host, "vm", w.key.VM, "code", w.key.Code, "err", err)
		}
	}
	for kvKey := range retire {
		if err := c.retire(ctx, b, kvKey, now); err != nil && ctx.Err() == nil {
			c.log.Warn("sweep_retire_failed", "key", kvKey, "err", err)
		}
	}
	for i, r := range repub {
		c.log.Info("alert_republished", "fingerprint", r.a.Fingerprint, "seq", r.a.Seq)
		c.publish(ctx, b, repubKeys[i], r.a, r.rev)
	}
}

func collectorCode(code string) bool {
	return code == CodeAgentSilent || code == CodeChannelDown || code == CodeCheckStale ||
		code == CodeGuestPanicked || code == CodeVMStopped
}

// vmObservations observes the collector's own conditions on v: those that
// hold, and those in firing (its firing collector-raised alerts) that no
// longer do. A condition that cannot be judged (the agent's checks while
// the channel is briefly down) is not observed at all.
func (c *Collector) vmObservations(v *VM, firing []AlertKey, now time.Time) []*observation {
	var out []*observation
	judged := make(map[AlertKey]bool)
	present := func(code, check, msg string, sev protocol.Severity) {
		key := AlertKey{Host: v.Host, VM: v.Name, Check: check, Code: code}
		f := protocol.Finding{Code: code, Severity: sev, Message: msg}
		judged[key] = true
		out = append(out, c.findingObservation(v, key, &f, nil))
	}
	clearAll := func(code string) {
		for _, k := range firing {
			if k.Code == code && !judged[k] {
				judged[k] = true
				out = append(out, &observation{key: k})
			}
		}
	}
	f, stopped := lifecycleFinding(v, now)
	if f != nil {
		present(f.Code, "", f.Message, f.Severity)
	}
	clearAll(CodeGuestPanicked)
	clearAll(CodeVMStopped)
	if stopped {
		// The host says the VM does not run: that explains the rest.
		clearAll(CodeAgentSilent)
		clearAll(CodeCheckStale)
		clearAll(CodeChannelDown)
		return out
	}
	down := v.Channel.State == protocol.ChannelDisconnected
	if down && now.Sub(v.Channel.Since) > c.cfg.ChannelGrace {
		msg := "channel disconnected since " + v.Channel.Since.UTC().Format(time.RFC3339)
		if v.Channel.Reason != "" {
			msg += ": " + v.Channel.Reason
		}
		present(CodeChannelDown, "", msg, protocol.SeverityWarn)
		// The dead channel explains the silence and the stale checks.
		clearAll(CodeAgentSilent)
		clearAll(CodeCheckStale)
		clearAll(CodeChannelDown)
		return out
	}
	clearAll(CodeChannelDown)
	if down {
		return out
	}
	hb := defaultHeartbeat
	if v.Hello != nil && v.Hello.HeartbeatS > 0 {
		hb = time.Duration(v.Hello.HeartbeatS) * time.Second
	}
	last := v.LastSeen
	if v.Channel.Since.After(last) {
		last = v.Channel.Since
	}
	if !last.IsZero() && now.Sub(last) > silentBeats*hb {
		msg := fmt.Sprintf("no message from the agent since %s (heartbeat every %s)", last.UTC().Format(time.RFC3339), hb)
		present(CodeAgentSilent, "", msg, protocol.SeverityCrit)
		clearAll(CodeCheckStale)
		return out
	}
	clearAll(CodeAgentSilent)
	if v.Hello != nil {
		for _, name := range v.Hello.Checks {
			every := defaultInterval
			if s := v.Hello.Intervals[name]; s > 0 {
				every = time.Duration(s) * time.Second
			}
			since := v.Hello.Received
			if ch := v.Checks[name]; ch != nil && ch.Received.After(since) {
				since = ch.Received
			}
			if now.Sub(since) > staleRuns*every {
				msg := fmt.Sprintf("%s has not reported since %s (interval %s)", name, since.UTC().Format(time.RFC3339), every)
				present(CodeCheckStale, name, msg, protocol.SeverityWarn)
			}
		}
	}
	clearAll(CodeCheckStale)
	return out
}

// droppedCheckObservations clears the firing alerts that v's checks raised
// and that no result can clear any more: those of a check the VM's latest
// hello, newer than the alert's last observation, no longer lists (an
// agent upgraded or reconfigured without it). The caller holds c.mu.
func (c *Collector) droppedCheckObservations(v *VM, vk string) []*observation {
	if v.Hello == nil {
		return nil
	}
	var out []*observation
	for kvKey := range c.alertsByVM[vk] {
		r := c.alerts[kvKey]
		k := r.a.Key
		if r.a.State != AlertFiring || k.Check == "" || collectorCode(k.Code) || slices.Contains(v.Hello.Checks, k.Check) {
			continue
		}
		if !r.a.Origin.supersededBy(v.Hello.Origin) {
			continue
		}
		out = append(out, &observation{key: k, origin: v.Hello.Origin})
	}
	return out
}
