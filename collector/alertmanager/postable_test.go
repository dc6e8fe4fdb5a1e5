package alertmanager

import (
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/protocol"
)

// testAlert is a firing disk alert with one KB match, as the collector
// raises it.
func testAlert(vm, code string) collector.Alert {
	start := time.Now().Add(-time.Minute).Round(time.Millisecond)
	return collector.Alert{
		Fingerprint: "fp-" + vm + "-" + code,
		Key:         collector.AlertKey{Host: "host1", VM: vm, Check: "disk", Code: code, Source: "/var"},
		State:       collector.AlertFiring,
		Severity:    "crit",
		Summary:     "/var on " + vm + " is almost full",
		StartsAt:    start,
		Updated:     start,
		Labels:      map[string]string{"team": "storage"},
		KB: []collector.KBMatch{{
			ID:         "disk.full",
			Title:      "Filesystem almost full",
			Severity:   "crit",
			Cause:      "Files or logs filled the filesystem.",
			Resolution: []string{"Run du -xh /var | sort -h | tail.", "Remove or rotate what is not needed."},
			References: []string{"https://example.org/runbooks/disk-full", "https://example.org/other"},
		}},
		Evidence: collector.Evidence{Finding: protocol.Finding{
			Code: code, Severity: protocol.SeverityCrit, Message: "/var is 97% full", Source: "/var",
		}},
	}
}

// resolvedAlert is a resolved a, later than a.
func resolvedAlert(a collector.Alert) collector.Alert {
	now := time.Now().Round(time.Millisecond)
	a.State = collector.AlertResolved
	a.EndsAt = now.Add(-time.Second)
	a.Updated = now
	return a
}

func TestLabels(t *testing.T) {
	tests := []struct {
		name string
		edit func(*collector.Alert)
		want map[string]string
	}{
		{
			name: "an alert is labelled by its code, place, check, severity, source and KB entry",
			edit: func(*collector.Alert) {},
			want: map[string]string{
				"alertname": "disk.full", "host": "host1", "vm": "vm1", "check": "disk",
				"severity": "crit", "source": "/var", "kb_id": "disk.full", "team": "storage",
			},
		},
		{
			name: "empty values and an alert without KB match carry no label for them",
			edit: func(a *collector.Alert) {
				a.KB = nil
				a.Key.Source = ""
				a.Labels = map[string]string{"empty": ""}
			},
			want: map[string]string{
				"alertname": "disk.full", "host": "host1", "vm": "vm1", "check": "disk", "severity": "crit",
			},
		},
		{
			name: "invalid label names become valid ones",
			edit: func(a *collector.Alert) {
				a.Labels = map[string]string{"kb.id-2": "x", "9lives": "y", "é": "z"}
			},
			want: map[string]string{
				"alertname": "disk.full", "host": "host1", "vm": "vm1", "check": "disk",
				"severity": "crit", "source": "/var", "kb_id": "disk.full",
				"kb_id_2": "x", "_9lives": "y", "_": "z",
			},
		},
		{
			name: "the alert's own fields win over its labels",
			edit: func(a *collector.Alert) {
				a.Labels = map[string]string{"alertname": "other", "severity": "info"}
			},
			want: map[string]string{
				"alertname": "disk.full", "host": "host1", "vm": "vm1", "check": "disk",
				"severity": "crit", "source": "/var", "kb_id": "disk.full",
			},
		},
		{
			name: "invalid UTF-8 in a value is replaced and a long value clipped",
			edit: func(a *collector.Alert) {
				a.Key.Source = "/mnt/\xff\xfe<b>"
				a.Labels = map[string]string{"long": strings.Repeat("x", 5000)}
			},
			want: map[string]string{
				"alertname": "disk.full", "host": "host1", "vm": "vm1", "check": "disk",
				"severity": "crit", "source": "/mnt/\uFFFD<b>", "kb_id": "disk.full",
				"long": strings.Repeat("x", maxLabelValue-len("…")) + "…",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := testAlert("vm1", "disk.full")
			tt.edit(&a)
			if got := labels(a); !maps.Equal(got, tt.want) {
				t.Errorf("labels:\n got %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestAnnotations(t *testing.T) {
	t.Run("an alert with a KB match says its cause, steps, title and runbook", func(t *testing.T) {
		got := annotations(testAlert("vm1", "disk.full"))
		want := map[string]string{
			"summary":     "/var on vm1 is almost full",
			"description": "Files or logs filled the filesystem.",
			"resolution":  "1. Run du -xh /var | sort -h | tail.\n2. Remove or rotate what is not needed.",
			"kb_title":    "Filesystem almost full",
			"runbook_url": "https://example.org/runbooks/disk-full",
			"evidence":    "/var is 97% full",
		}
		if !maps.Equal(got, want) {
			t.Errorf("annotations:\n got %q\nwant %q", got, want)
		}
	})
	t.Run("an alert without KB match is described by its finding", func(t *testing.T) {
		a := testAlert("vm1", "disk.full")
		a.KB = nil
		a.Summary = ""
		got := annotations(a)
		want := map[string]string{
			"summary":     "disk.full on host1/vm1",
			"description": "/var is 97% full",
			"evidence":    "/var is 97% full",
		}
		if !maps.Equal(got, want) {
			t.Errorf("annotations:\n got %q\nwant %q", got, want)
		}
	})
	t.Run("a long finding message is bounded in the evidence", func(t *testing.T) {
		a := testAlert("vm1", "disk.full")
		a.Evidence.Finding.Message = strings.Repeat("é", 3000)
		got := annotations(a)["evidence"]
		if len(got) > maxEvidence || !strings.HasSuffix(got, "…") {
			t.Errorf("evidence is %d bytes ending %q, want at most %d ending with …", len(got), got[len(got)-8:], maxEvidence)
		}
	})
}

func TestPostableTimes(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	firing := testAlert("vm 1/a", "disk.full")
	firing.StartsAt = now.Add(-time.Hour)
	resolved := resolvedAlert(firing)
	resolved.EndsAt = now.Add(-time.Second)
	noEnd := resolved
	noEnd.EndsAt = time.Time{}
	tests := []struct {
		name       string
		alert      collector.Alert
		wantEndsAt time.Time
	}{
		{"a firing alert ends four resend intervals from now", firing, now.Add(4 * time.Minute)},
		{"a resolved alert ends when it resolved", resolved, now.Add(-time.Second)},
		{"a resolved alert without an end ends now", noEnd, now},
		{"a resolved alert never ends before it starts", func() collector.Alert {
			a := resolved
			a.EndsAt = now.Add(-2 * time.Hour)
			return a
		}(), now.Add(-time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := postable(tt.alert, now, 4*time.Minute, "https://dash.example/")
			if !p.EndsAt.Equal(tt.wantEndsAt) {
				t.Errorf("endsAt %v, want %v", p.EndsAt, tt.wantEndsAt)
			}
			if !p.StartsAt.Equal(firing.StartsAt) {
				t.Errorf("startsAt %v, want %v", p.StartsAt, firing.StartsAt)
			}
			if got, want := p.GeneratorURL, "https://dash.example/vm/host1/vm%201%2Fa"; got != want {
				t.Errorf("generatorURL %q, want %q", got, want)
			}
		})
	}
}
