package collector

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// ev is one input to the lifecycle: at offset at, the condition holds
// (on), clears (off), the check could not look (no input at all), or only
// time passes (tick).
type ev struct {
	at       time.Duration
	what     string // on, off, tick
	severity string
}

// want is the alert after an input: its state, whether it is flapping,
// and whether the input made a notification.
type want struct {
	state    AlertState // "" = no record
	flapping bool
	notified bool
}

func TestLifecycle(t *testing.T) {
	p := Policy{FlapCount: 4, FlapWindow: 10 * time.Minute, Renotify: time.Hour, Retention: 24 * time.Hour}
	m := time.Minute
	tests := []struct {
		name  string
		evs   []ev
		wants []want
	}{
		{"a condition fires once and resolves once",
			[]ev{{0, "on", "warn"}, {m, "off", ""}},
			[]want{{AlertFiring, false, true}, {AlertResolved, false, true}}},
		{"a repeated finding updates without notifying",
			[]ev{{0, "on", "warn"}, {m, "on", "warn"}, {2 * m, "on", "warn"}},
			[]want{{AlertFiring, false, true}, {AlertFiring, false, false}, {AlertFiring, false, false}}},
		{"a clear condition with no alert raises nothing",
			[]ev{{0, "off", ""}, {m, "tick", ""}},
			[]want{{"", false, false}, {"", false, false}}},
		{"a severity change notifies",
			[]ev{{0, "on", "warn"}, {m, "on", "crit"}, {2 * m, "on", "crit"}, {3 * m, "on", "warn"}},
			[]want{{AlertFiring, false, true}, {AlertFiring, false, true}, {AlertFiring, false, false}, {AlertFiring, false, true}}},
		{"a long-firing alert is notified again after the interval",
			[]ev{{0, "on", "warn"}, {30 * m, "tick", ""}, {60 * m, "tick", ""}, {61 * m, "tick", ""}, {120 * m, "tick", ""}},
			[]want{{AlertFiring, false, true}, {AlertFiring, false, false}, {AlertFiring, false, true}, {AlertFiring, false, false}, {AlertFiring, false, true}}},
		{"a condition toggling four times in the window stays one firing alert, flapping",
			[]ev{{0, "on", "warn"}, {m, "off", ""}, {2 * m, "on", "warn"}, {3 * m, "off", ""}, {4 * m, "on", "warn"}, {5 * m, "off", ""}},
			[]want{{AlertFiring, false, true}, {AlertResolved, false, true}, {AlertFiring, false, true}, {AlertFiring, true, true}, {AlertFiring, true, false}, {AlertFiring, true, false}}},
		{"a flapping alert resolves after a whole window clear",
			[]ev{{0, "on", "warn"}, {m, "off", ""}, {2 * m, "on", "warn"}, {3 * m, "off", ""}, {12 * m, "tick", ""}, {13 * m, "tick", ""}, {14 * m, "tick", ""}},
			[]want{{AlertFiring, false, true}, {AlertResolved, false, true}, {AlertFiring, false, true}, {AlertFiring, true, true}, {AlertFiring, true, false}, {AlertResolved, false, true}, {AlertResolved, false, false}}},
		{"toggles spread wider than the window do not flap",
			[]ev{{0, "on", "warn"}, {4 * m, "off", ""}, {8 * m, "on", "warn"}, {12 * m, "off", ""}, {16 * m, "on", "warn"}, {20 * m, "off", ""}},
			[]want{{AlertFiring, false, true}, {AlertResolved, false, true}, {AlertFiring, false, true}, {AlertResolved, false, true}, {AlertFiring, false, true}, {AlertResolved, false, true}}},
		{"a flapping alert that holds for a window stops flapping",
			[]ev{{0, "on", "warn"}, {m, "off", ""}, {2 * m, "on", "warn"}, {3 * m, "off", ""}, {4 * m, "on", "warn"}, {15 * m, "tick", ""}},
			[]want{{AlertFiring, false, true}, {AlertResolved, false, true}, {AlertFiring, false, true}, {AlertFiring, true, true}, {AlertFiring, true, false}, {AlertFiring, false, false}}},
		{"resolved history expires after the retention",
			[]ev{{0, "on", "warn"}, {m, "off", ""}, {23 * time.Hour, "tick", ""}, {m + 24*time.Hour, "tick", ""}},
			[]want{{AlertFiring, false, true}, {AlertResolved, false, true}, {AlertResolved, false, false}, {"", false, false}}},
	}
	key := AlertKey{Host: "h1", VM: "web1", Check: "resources", Code: "res.disk_full", Source: "/var"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cur *Alert
			seq := uint64(0)
			notes := uint64(0)
			for i, e := range tt.evs {
				now := t0.Add(e.at)
				var obs *observation
				if e.what != "tick" {
					seq++
					obs = &observation{key: key, present: e.what == "on", severity: e.severity, origin: Origin{Run: "r", Seq: seq, Received: now}}
				}
				next, act := step(cur, obs, now, p)
				switch act {
				case remove:
					cur = nil
				case write, notify:
					cur = &next
				}
				got := want{notified: act == notify}
				if cur != nil {
					got.state, got.flapping = cur.State, cur.Flapping
				}
				if got != tt.wants[i] {
					t.Errorf("after %s at %v: got %+v, want %+v", e.what, e.at, got, tt.wants[i])
				}
				if act == notify {
					notes++
					if cur.Seq != notes || !cur.Pending || !cur.Notified.Equal(now) {
						t.Errorf("after %s at %v: notification %d recorded as seq %d pending %v at %v", e.what, e.at, notes, cur.Seq, cur.Pending, cur.Notified)
					}
				}
				if cur != nil {
					cur.Pending = false
				}
			}
		})
	}
}

func TestLifecycleIgnoresOlderObservations(t *testing.T) {
	key := AlertKey{Host: "h1", VM: "web1", Check: "resources", Code: "res.disk_full"}
	p := Policy{}.withDefaults()
	fired, act := step(nil, &observation{key: key, present: true, severity: "warn", origin: Origin{Run: "r", Seq: 5, Received: t0}}, t0, p)
	if act != notify {
		t.Fatalf("first observation: got action %v, want notify", act)
	}
	for _, seq := range []uint64{4, 5} {
		t.Run(fmt.Sprintf("a clear result of seq %d after seq 5 changes nothing", seq), func(t *testing.T) {
			got, act := step(&fired, &observation{key: key, origin: Origin{Run: "r", Seq: seq, Received: t0}}, t0.Add(time.Minute), p)
			if act != keep || got.State != AlertFiring {
				t.Errorf("got %v %s, want keep firing", act, got.State)
			}
		})
	}
}

func TestFingerprint(t *testing.T) {
	base := AlertKey{Host: "h1", VM: "web1", Check: "resources", Code: "res.disk_full", Source: "/var"}
	fp := Fingerprint(base)
	if len(fp) != 32 || strings.Trim(fp, "0123456789abcdef") != "" {
		t.Errorf("fingerprint %q: want 32 lowercase hex digits", fp)
	}
	if Fingerprint(base) != fp {
		t.Errorf("fingerprint of the same key differs between calls")
	}
	others := []AlertKey{
		{Host: "h2", VM: "web1", Check: "resources", Code: "res.disk_full", Source: "/var"},
		{Host: "h1", VM: "web1", Check: "resources", Code: "res.disk_full", Source: "/home"},
		{Host: "h1", VM: "web", Check: "1resources", Code: "res.disk_full", Source: "/var"},
		{Host: "h1", VM: "web1", Check: "resources", Code: "res.disk_full"},
	}
	for _, k := range others {
		if Fingerprint(k) == fp {
			t.Errorf("%+v shares the fingerprint of %+v", k, base)
		}
	}
}
