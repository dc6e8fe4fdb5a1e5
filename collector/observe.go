package collector

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/guestdiag/guestdiag/kb"
	"github.com/guestdiag/guestdiag/protocol"
)

// Matcher finds the knowledge-base entries for a finding; *kb.KB is one.
type Matcher interface {
	Match(kb.Finding) []*kb.Entry
}

// Codes the collector raises itself.
const (
	CodeAgentSilent = "vm.agent_silent"
	CodeChannelDown = "vm.channel_down"
	CodeCheckStale  = "check.stale"
	// CodeCheckStatus is raised when a check reports warn or crit without
	// a warn or crit finding to say why: the alert then carries the
	// status as its severity, so warn to crit is one alert growing worse.
	CodeCheckStatus = "check.status"
	// CodeTooManyAlerts stands for the conditions a VM reported beyond
	// maxAlertsPerVM: a guest naming fresh sources in every result would
	// otherwise make alert records and publications without end.
	CodeTooManyAlerts = "vm.too_many_alerts"
)

const (
	// maxKBMatches is how many entries an alert carries.
	maxKBMatches = 5
	// maxEvidenceLines is how many log lines an alert carries.
	maxEvidenceLines = 10
	// maxAlertsPerVM bounds a VM's alerts that are firing or began within
	// the flap window; a new condition beyond it is counted in the VM's
	// vm.too_many_alerts instead. Counting recent starts too bounds the
	// rate of new alerts, not only how many fire at once.
	maxAlertsPerVM = 64
	// maxResolvedPerVM bounds a VM's resolved alerts kept as history; the
	// oldest go first.
	maxResolvedPerVM = 64
)

// alertable reports whether a finding raises an alert: info findings
// only inform.
func alertable(f *protocol.Finding) bool {
	return f.Severity == protocol.SeverityWarn || f.Severity == protocol.SeverityCrit
}

// FindingKey is the key of the alert that finding f of check raises on v.
func FindingKey(v *VM, check string, f *protocol.Finding) AlertKey {
	return AlertKey{Host: v.Host, VM: v.Name, Check: check, Code: f.Code, Source: findingSource(f)}
}

// findingSource is the part of an alert's key that tells two findings of
// one code apart: the source, provider, event id and unit it names, so
// two full filesystems, two failing units or two event ids are two alerts.
func findingSource(f *protocol.Finding) string {
	var parts []string
	for _, p := range []string{f.Source, f.Provider, eventID(f.EventID), f.Unit} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, "/")
}

func eventID(id uint32) string {
	if id == 0 {
		return ""
	}
	return strconv.FormatUint(uint64(id), 10)
}

// checkKeys returns the alert keys the check's stored result raises, with
// the observation of each; status-only alerts use CodeCheckStatus.
func (c *Collector) checkObservations(v *VM, name string) map[AlertKey]*observation {
	ch := v.Checks[name]
	out := make(map[AlertKey]*observation)
	if ch == nil {
		return out
	}
	for i := range ch.Findings {
		f := &ch.Findings[i]
		if !alertable(f) {
			continue
		}
		key := FindingKey(v, name, f)
		if prev, ok := out[key]; ok && severityRank(prev.severity) >= severityRank(string(f.Severity)) {
			continue
		}
		out[key] = c.findingObservation(v, key, f, ch)
	}
	if len(out) == 0 && (ch.Status == protocol.StatusWarn || ch.Status == protocol.StatusCrit) {
		key := AlertKey{Host: v.Host, VM: v.Name, Check: name, Code: CodeCheckStatus}
		f := protocol.Finding{Code: CodeCheckStatus, Severity: protocol.Severity(ch.Status), Message: name + " reports " + string(ch.Status) + ": " + ch.Summary}
		out[key] = c.findingObservation(v, key, &f, ch)
	}
	return out
}

// resultObservations compares a check's result before and after one
// message: every alertable condition now present is observed present;
// every one present before, or firing in the watched alerts, and gone now
// is observed clear, unless the check could not look (status unknown). A
// result whose findings were cut to maxStoredFindings clears no finding's
// alert: the finding may be among those dropped, and reordering between
// runs would otherwise resolve and re-fire conditions that still hold.
func (c *Collector) resultObservations(old, cur *VM, name string) []*observation {
	now := c.checkObservations(cur, name)
	ch := cur.Checks[name]
	out := make([]*observation, 0, len(now))
	for _, o := range now {
		out = append(out, o)
	}
	if ch == nil {
		return out
	}
	if ch.Status == protocol.StatusUnknown {
		return c.capObservations(cur, out, ch.Origin, time.Now())
	}
	truncated := ch.FindingsTotal > len(ch.Findings)
	clear := func(k AlertKey) {
		if truncated && k.Code != CodeCheckStatus {
			return
		}
		if _, ok := now[k]; !ok {
			now[k] = &observation{key: k, origin: ch.Origin}
			out = append(out, now[k])
		}
	}
	for k := range c.checkObservations(old, name) {
		clear(k)
	}
	c.mu.RLock()
	var firing []AlertKey
	for kvKey := range c.alertsByVM[Key(cur.Host, cur.Name)] {
		if r := c.alerts[kvKey]; r.a.State == AlertFiring && r.a.Key.Check == name && r.a.Key.Code != CodeCheckStale {
			firing = append(firing, r.a.Key)
		}
	}
	c.mu.RUnlock()
	for _, k := range firing {
		clear(k)
	}
	return c.capObservations(cur, out, ch.Origin, time.Now())
}

// lateResult is what a result of u's check causes that reaches the
// collector after a newer result of that check was applied to rec: a
// message redelivered after its first delivery was lost with a NATS node,
// while the VM's next messages went to another collector. The record keeps
// the newer result, but the conditions of the late one did hold until
// then: each is observed present with the late result's origin, then
// judged by rec's result, which clears those it no longer shows. The
// alert records' origins make this harmless to repeat: once an alert has
// seen the newer result, the late one changes nothing, so no alert is
// raised twice.
func (c *Collector) lateResult(rec *VM, u update) effectsPlan {
	p := effectsPlan{host: rec.Host, vm: rec.Name}
	cur := rec.Checks[u.check]
	if u.check == "" || cur == nil {
		return p
	}
	late := rec.clone()
	delete(late.Checks, u.check)
	if u.apply(&late) != applied {
		return p
	}
	lc := late.Checks[u.check]
	if lc.Run == cur.Run && lc.Seq == cur.Seq {
		// The record holds this very result: its write decided them.
		return p
	}
	held := c.checkObservations(&late, u.check)
	if len(held) == 0 {
		return p
	}
	present := make([]*observation, 0, len(held))
	for _, o := range held {
		present = append(present, o)
	}
	p.obs = c.capObservations(&late, present, lc.Origin, time.Now())
	for _, o := range c.resultObservations(&late, rec, u.check) {
		if _, ok := held[o.key]; ok && !o.present {
			p.obs = append(p.obs, o)
		}
	}
	return p
}

// capObservations lets through the observations of out that keep cur
// within maxAlertsPerVM and replaces the new conditions beyond it with one
// observation of CodeTooManyAlerts counting them. With none beyond it and
// the VM back under the limit, a firing vm.too_many_alerts is observed
// clear.
func (c *Collector) capObservations(cur *VM, out []*observation, origin Origin, now time.Time) []*observation {
	tooMany := AlertKey{Host: cur.Host, VM: cur.Name, Code: CodeTooManyAlerts}
	// What this message clears frees its place, unless it began within
	// the window or flap damping keeps it firing.
	cleared := make(map[AlertKey]bool)
	for _, o := range out {
		if !o.present {
			cleared[o.key] = true
		}
	}
	c.mu.RLock()
	used := 0
	for kvKey := range c.alertsByVM[Key(cur.Host, cur.Name)] {
		a := c.alerts[kvKey].a
		// A flapping alert stays firing when cleared.
		firing := a.State == AlertFiring && (a.Flapping || !cleared[a.Key])
		if a.Key.Code != CodeTooManyAlerts && (firing || now.Sub(a.StartsAt) < c.cfg.Policy.FlapWindow) {
			used++
		}
	}
	var prevTooMany *Alert
	if r, ok := c.alerts[AlertKV(tooMany)]; ok && r.a.State == AlertFiring {
		prevTooMany = &r.a
	}
	// Deterministic order, so that the same result lets the same
	// conditions through on every collector.
	slices.SortFunc(out, func(a, b *observation) int {
		return cmp.Or(cmp.Compare(a.key.Check, b.key.Check), cmp.Compare(a.key.Code, b.key.Code), cmp.Compare(a.key.Source, b.key.Source))
	})
	kept := out[:0]
	suppressed := 0
	for _, o := range out {
		if o.present {
			if r, ok := c.alerts[AlertKV(o.key)]; !ok || r.a.State != AlertFiring {
				if used >= maxAlertsPerVM {
					suppressed++
					continue
				}
				used++
			}
		}
		kept = append(kept, o)
	}
	c.mu.RUnlock()
	switch {
	case suppressed > 0:
		kept = append(kept, c.tooManyObservation(cur, tooMany, prevTooMany, suppressed, origin))
	case prevTooMany != nil && used < maxAlertsPerVM:
		kept = append(kept, &observation{key: tooMany, origin: origin})
	}
	return kept
}

// tooManyData is the evidence data of a vm.too_many_alerts alert.
type tooManyData struct {
	Suppressed int `json:"suppressed"`
	Limit      int `json:"limit"`
}

// tooManyObservation observes vm.too_many_alerts with n more conditions
// suppressed than prev (its firing alert, or nil) counted.
func (c *Collector) tooManyObservation(v *VM, key AlertKey, prev *Alert, n int, origin Origin) *observation {
	var d tooManyData
	if prev != nil {
		// A record that does not decode starts the count again.
		_ = json.Unmarshal(prev.Evidence.Data, &d)
	}
	d.Suppressed += n
	d.Limit = maxAlertsPerVM
	msg := fmt.Sprintf("%d new conditions were not raised as alerts: the VM has %d alerts firing or begun within %s", d.Suppressed, maxAlertsPerVM, c.cfg.Policy.FlapWindow)
	f := protocol.Finding{Code: CodeTooManyAlerts, Severity: protocol.SeverityWarn, Message: msg}
	o := c.findingObservation(v, key, &f, nil)
	o.origin = origin
	o.evidence.Data, _ = json.Marshal(d)
	return o
}

// kbFinding is what the knowledge base is asked about finding f of v: for
// a Windows event the finding's source is the event log channel.
func kbFinding(v *VM, f *protocol.Finding) kb.Finding {
	q := kb.Finding{Code: f.Code, Provider: f.Provider, EventID: f.EventID, Unit: f.Unit, Message: f.Message}
	if v.Hello != nil {
		q.OS = v.Hello.OS
	}
	if q.OS == "windows" {
		q.Channel = f.Source
	}
	return q
}

// findingObservation describes a present condition: its KB matches,
// summary, labels and evidence.
func (c *Collector) findingObservation(v *VM, key AlertKey, f *protocol.Finding, ch *Check) *observation {
	o := &observation{key: key, present: true, severity: string(f.Severity), evidence: Evidence{Finding: *f}}
	if ch != nil {
		o.origin = ch.Origin
		o.evidence.Data = ch.Data
		o.evidence.Lines = logLines(ch.Data, f)
	}
	if m := c.matcher(); m != nil {
		for _, e := range m.Match(kbFinding(v, f)) {
			if len(o.kb) == maxKBMatches {
				break
			}
			o.kb = append(o.kb, KBMatch{ID: e.ID, Title: e.Title, Severity: e.Severity, Cause: e.Cause, Resolution: e.Resolution, References: e.References})
		}
	}
	what := f.Message
	if len(o.kb) > 0 {
		what = o.kb[0].Title
	}
	o.summary = what + " on " + v.Name + " (" + v.Host + ")"
	o.labels = map[string]string{"alertname": key.Code, "host": key.Host, "vm": key.VM, "severity": o.severity}
	for k, val := range map[string]string{"check": key.Check, "source": key.Source} {
		if val != "" {
			o.labels[k] = val
		}
	}
	if len(o.kb) > 0 {
		o.labels["kb_id"] = o.kb[0].ID
	}
	return o
}

// logLines picks the raw entries of the logs check's data that belong to
// finding f (docs/checks.md: data.entries), newest last, as the alert's
// source lines.
func logLines(data json.RawMessage, f *protocol.Finding) []string {
	if len(data) == 0 || !strings.HasPrefix(f.Code, "log.") {
		return nil
	}
	var d struct {
		Entries []struct {
			Source   string `json:"source"`
			Unit     string `json:"unit"`
			Provider string `json:"provider"`
			EventID  uint32 `json:"event_id"`
			Message  string `json:"message"`
		} `json:"entries"`
	}
	if json.Unmarshal(data, &d) != nil {
		return nil
	}
	var lines []string
	for _, e := range d.Entries {
		if e.Source == f.Source && e.Unit == f.Unit && e.Provider == f.Provider && e.EventID == f.EventID {
			lines = append(lines, e.Message)
		}
	}
	return lines[max(0, len(lines)-maxEvidenceLines):]
}
