package collector

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"slices"
	"time"
)

// Policy holds the lifecycle's timing rules.
type Policy struct {
	// FlapCount toggles of a condition within FlapWindow mark its alert
	// flapping: it then stays firing until the condition has been clear
	// for a whole FlapWindow.
	FlapCount  int
	FlapWindow time.Duration
	// Renotify is how often a firing alert is published again.
	Renotify time.Duration
	// Retention is how long a resolved alert is kept as history.
	Retention time.Duration
}

// Lifecycle defaults.
const (
	DefaultFlapCount  = 4
	DefaultFlapWindow = 10 * time.Minute
	DefaultRenotify   = 4 * time.Hour
	DefaultRetention  = 7 * 24 * time.Hour
)

func (p Policy) withDefaults() Policy {
	if p.FlapCount <= 0 {
		p.FlapCount = DefaultFlapCount
	}
	if p.FlapWindow <= 0 {
		p.FlapWindow = DefaultFlapWindow
	}
	if p.Renotify <= 0 {
		p.Renotify = DefaultRenotify
	}
	if p.Retention <= 0 {
		p.Retention = DefaultRetention
	}
	return p
}

// Fingerprint identifies the alert of key: hex of the first 16 bytes of
// SHA-256 over its fields, each ended by a zero byte so that no two keys
// share a fingerprint by shifting text from one field to the next.
func Fingerprint(k AlertKey) string {
	h := sha256.New()
	for _, f := range []string{k.Host, k.VM, k.Check, k.Code, k.Source} {
		h.Write([]byte(f))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// observation is what one look at a condition found: whether it holds and,
// if it does, how it reads. A zero origin marks a condition the collector
// itself observed, which has no guest message to order by.
type observation struct {
	key      AlertKey
	present  bool
	severity string
	origin   Origin
	summary  string
	labels   map[string]string
	kb       []KBMatch
	evidence Evidence
}

// action is what the caller must do with the result of a step.
type action int

const (
	keep   action = iota // nothing changed
	write                // store the new state, tell no one
	notify               // store the new state, then publish it
	remove               // delete the record: its history expired
)

// step is the alert lifecycle: given the alert's current record (nil when
// there is none), an observation (nil for a tick of the clock) and the
// time, it returns the next record and what to do with it. It is pure and
// deterministic, so that every collector deciding on the same record
// decides the same, and compare-and-set settles which one writes.
func step(prev *Alert, obs *observation, now time.Time, p Policy) (Alert, action) {
	if obs == nil {
		if prev == nil {
			return Alert{}, keep
		}
		return tick(*prev, now, p)
	}
	if prev == nil {
		if !obs.present {
			return Alert{}, keep
		}
		a := Alert{
			Fingerprint: Fingerprint(obs.key), Key: obs.key, State: AlertFiring,
			StartsAt: now, Updated: now, Toggles: []time.Time{now}, Transitions: 1, Origin: obs.origin,
		}
		a.describe(obs)
		return a.notified(now), notify
	}
	if obs.origin.Run != "" && prev.Origin.Run != "" && !prev.Origin.supersededBy(obs.origin) {
		return *prev, keep
	}
	a := prev.clone()
	a.Origin = obs.origin
	a.Toggles = recent(a.Toggles, now, p.FlapWindow)
	toggle := func() {
		a.Toggles = append(a.Toggles, now)
		a.Transitions = len(a.Toggles)
		a.Updated = now
	}
	act := write
	switch {
	case obs.present && a.State == AlertResolved:
		toggle()
		a.State, a.StartsAt, a.EndsAt = AlertFiring, now, time.Time{}
		a.Flapping = a.Flapping || len(a.Toggles) >= p.FlapCount
		a.describe(obs)
		act = notify
	case obs.present:
		if !a.ClearSince.IsZero() {
			toggle()
			a.ClearSince = time.Time{}
		}
		if a.Severity != obs.severity {
			act = notify
		}
		if a.describe(obs) {
			a.Updated = now
		}
	case a.State == AlertResolved:
		return *prev, keep
	case a.Flapping:
		if a.ClearSince.IsZero() {
			toggle()
			a.ClearSince = now
		}
	default:
		toggle()
		if len(a.Toggles) >= p.FlapCount {
			a.Flapping, a.ClearSince = true, now
		} else {
			// History keeps the finding, not the check's data: kept for
			// days, up to 32 KiB each would be the bulk of the bucket
			// and of every collector's memory.
			a.State, a.EndsAt = AlertResolved, now
			a.Evidence.Data = nil
		}
		act = notify
	}
	if act == write {
		// A newer origin or an expired toggle alone is not worth a write.
		same := a
		same.Origin, same.Toggles, same.Transitions = prev.Origin, prev.Toggles, prev.Transitions
		if sameJSON(&same, prev) {
			return *prev, keep
		}
	}
	if act == notify {
		a = a.notified(now)
	}
	return a, act
}

// tick applies what time alone changes: a flapping alert clear for a
// whole window resolves, one that has held steadily for a window stops
// flapping, a long-firing alert is published again, and resolved history
// expires.
func tick(a Alert, now time.Time, p Policy) (Alert, action) {
	switch {
	case a.State == AlertResolved:
		if now.Sub(a.EndsAt) >= p.Retention {
			return a, remove
		}
		return a, keep
	case a.Flapping && !a.ClearSince.IsZero() && now.Sub(a.ClearSince) >= p.FlapWindow:
		a = a.clone()
		a.State, a.EndsAt, a.Updated = AlertResolved, now, now
		a.Flapping, a.ClearSince, a.Toggles, a.Transitions = false, time.Time{}, nil, 0
		a.Evidence.Data = nil
		return a.notified(now), notify
	case now.Sub(a.Notified) >= p.Renotify:
		a = a.clone()
		return a.notified(now), notify
	case a.Flapping && a.ClearSince.IsZero() && len(recent(a.Toggles, now, p.FlapWindow)) == 0:
		a = a.clone()
		a.Flapping, a.Toggles, a.Transitions, a.Updated = false, nil, 0, now
		return a, write
	}
	return a, keep
}

// describe copies how the observation reads into a, reporting whether
// anything changed.
func (a *Alert) describe(obs *observation) bool {
	changed := a.Severity != obs.severity || a.Summary != obs.summary ||
		!maps.Equal(a.Labels, obs.labels) || !sameJSON(a.KB, obs.kb) ||
		!sameJSON(a.Evidence, obs.evidence)
	a.Severity, a.Summary, a.Labels, a.KB, a.Evidence = obs.severity, obs.summary, obs.labels, obs.kb, obs.evidence
	return changed
}

func (a Alert) notified(now time.Time) Alert {
	a.Seq++
	a.Notified = now
	a.Pending = true
	return a
}

// clone copies a deeply enough that changing the copy's toggles cannot
// touch a record another goroutine reads.
func (a *Alert) clone() Alert {
	c := *a
	c.Toggles = slices.Clone(a.Toggles)
	return c
}

// sameJSON compares two values as they are stored: times decoded from a
// record and times taken from a guest line may differ in location and
// still be the same instant.
func sameJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
}

// recent drops the times older than window before now.
func recent(ts []time.Time, now time.Time, window time.Duration) []time.Time {
	i := 0
	for i < len(ts) && now.Sub(ts[i]) >= window {
		i++
	}
	return ts[i:]
}
