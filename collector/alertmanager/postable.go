package alertmanager

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/protocol"
)

// Bounds on what a guest's text may grow into once it is a label or an
// annotation: Alertmanager keeps every label value in memory and puts both
// into every notification.
const (
	maxLabelValue = 1024
	maxAnnotation = 4096
	maxEvidence   = 2048
)

// postableAlert is one element of the body of POST /api/v2/alerts.
type postableAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt,omitzero"`
	EndsAt       time.Time         `json:"endsAt,omitzero"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// postable turns a into what Alertmanager accepts. A firing alert ends
// lifetime after now, so Alertmanager resolves it by itself if we stop
// resending it.
func postable(a collector.Alert, now time.Time, lifetime time.Duration, externalURL string) postableAlert {
	p := postableAlert{
		Labels:      labels(a),
		Annotations: annotations(a),
		StartsAt:    a.StartsAt,
	}
	if a.State == collector.AlertResolved {
		p.EndsAt = a.EndsAt
		if p.EndsAt.IsZero() {
			p.EndsAt = now
		}
		// Alertmanager rejects an alert that ends before it starts.
		if !p.StartsAt.IsZero() && p.EndsAt.Before(p.StartsAt) {
			p.EndsAt = p.StartsAt
		}
	} else {
		p.EndsAt = now.Add(lifetime)
	}
	if externalURL != "" {
		p.GeneratorURL = strings.TrimRight(externalURL, "/") + "/vm/" +
			url.PathEscape(a.Key.Host) + "/" + url.PathEscape(a.Key.VM)
	}
	return p
}

// labels are a's Labels with the alert's own fields over them, since those
// are what identifies it: Alertmanager fingerprints an alert by its labels.
func labels(a collector.Alert) map[string]string {
	l := make(map[string]string, len(a.Labels)+7)
	for _, k := range slices.Sorted(maps.Keys(a.Labels)) {
		setLabel(l, labelName(k), a.Labels[k])
	}
	setLabel(l, "alertname", a.Key.Code)
	setLabel(l, "host", a.Key.Host)
	setLabel(l, "vm", a.Key.VM)
	setLabel(l, "check", a.Key.Check)
	setLabel(l, "severity", a.Severity)
	setLabel(l, "source", a.Key.Source)
	if len(a.KB) > 0 {
		setLabel(l, "kb_id", a.KB[0].ID)
	}
	if len(l) == 0 {
		// Alertmanager refuses an alert with no label at all.
		l["alertname"] = "guestdiag"
	}
	return l
}

// setLabel drops empty values: to Alertmanager an empty label is no label,
// and keeping it would only make two spellings of one alert.
func setLabel(l map[string]string, name, value string) {
	if name == "" || value == "" {
		return
	}
	l[name] = text(value, maxLabelValue)
}

// labelName makes s a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*),
// which Alertmanager 0.25 and later require, by replacing every other
// character with an underscore.
func labelName(s string) string {
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == '_', 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', i > 0 && '0' <= r && r <= '9':
			b.WriteRune(r)
		case i == 0 && '0' <= r && r <= '9':
			b.WriteByte('_')
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// annotations say what is wrong and how to fix it, from the first KB match
// when there is one.
func annotations(a collector.Alert) map[string]string {
	msg := a.Evidence.Finding.Message
	summary := a.Summary
	if summary == "" {
		summary = fmt.Sprintf("%s on %s/%s", a.Key.Code, a.Key.Host, a.Key.VM)
	}
	an := map[string]string{
		"summary":     summary,
		"description": msg,
		"evidence":    text(msg, maxEvidence),
	}
	if len(a.KB) > 0 {
		kb := a.KB[0]
		if kb.Cause != "" {
			an["description"] = kb.Cause
		}
		var steps strings.Builder
		for i, s := range kb.Resolution {
			fmt.Fprintf(&steps, "%d. %s\n", i+1, s)
		}
		an["resolution"] = strings.TrimSuffix(steps.String(), "\n")
		an["kb_title"] = kb.Title
		if len(kb.References) > 0 {
			an["runbook_url"] = kb.References[0]
		}
	}
	for k, v := range an {
		if v == "" {
			delete(an, k)
			continue
		}
		an[k] = text(v, maxAnnotation)
	}
	return an
}

// text makes s valid UTF-8, which Alertmanager requires of label and
// annotation values, and at most n bytes.
func text(s string, n int) string {
	return protocol.Clip(strings.ToValidUTF8(s, "\uFFFD"), n)
}
