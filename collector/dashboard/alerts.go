package dashboard

import (
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/kb"
)

// maxAlertRows bounds the alerts table; the JSON API has the rest.
const maxAlertRows = 500

// alertRow is one alert as the alerts table and the fleet's firing list
// show it.
type alertRow struct {
	Severity, SevClass string
	State              string
	Host, VM, Href     string
	Check, Code        string
	Source             string
	Summary            string
	Since, SinceAbs    string
	Ended              string
	Flapping           bool
	KBTitle            string
}

func newAlertRow(a *collector.Alert, now time.Time) alertRow {
	r := alertRow{
		Severity: clip(a.Severity, 16), SevClass: statusClass(a.Severity), State: clip(string(a.State), 16),
		Host: clean(a.Key.Host), VM: clean(a.Key.VM), Href: vmHref(a.Key.Host, a.Key.VM),
		Check: clip(a.Key.Check, 64), Code: clip(a.Key.Code, 64), Source: clip(a.Key.Source, 200),
		Summary: clip(a.Summary, 300), Since: ago(now, a.StartsAt), SinceAbs: stamp(a.StartsAt),
		Ended: stamp(a.EndsAt), Flapping: a.Flapping,
	}
	if len(a.KB) > 0 {
		r.KBTitle = clip(a.KB[0].Title, 120)
	}
	return r
}

// alertView is one alert in full, on the VM page: its KB matches and its
// evidence.
type alertView struct {
	alertRow
	ID          string
	Updated     string
	Transitions int
	KB          []kbView
	Message     string
	Lines       []string
	Data        string
}

func newAlertView(a *collector.Alert, now time.Time) alertView {
	v := alertView{
		alertRow: newAlertRow(a, now), ID: "alert-" + clip(a.Fingerprint, 64),
		Updated: stamp(a.Updated), Transitions: a.Transitions,
		Message: clip(a.Evidence.Finding.Message, 4096),
	}
	for _, m := range a.KB {
		v.KB = append(v.KB, kbFromMatch(m))
	}
	for _, l := range a.Evidence.Lines[:min(len(a.Evidence.Lines), 50)] {
		v.Lines = append(v.Lines, clip(l, 1024))
	}
	v.Data = prettyJSON(a.Evidence.Data)
	return v
}

type alertsView struct {
	Filter alertFilterView
	Rows   []alertRow
	Total  int
	Hosts  []string
}

type alertFilterView struct {
	State, Severity, Host, VM, Code string
}

func (s *server) alerts(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := collector.AlertFilter{
		State:    collector.AlertState(oneOf(q.Get("state"), "firing", "resolved")),
		Severity: oneOf(q.Get("severity"), "crit", "warn", "info"),
		Host:     clip(q.Get("host"), 256),
		VM:       clip(q.Get("vm"), 256),
		Code:     clip(q.Get("code"), 128),
	}
	all := s.src.Alerts(f)
	now := s.now()
	v := &alertsView{Total: len(all), Filter: alertFilterView{
		State: string(f.State), Severity: f.Severity, Host: f.Host, VM: f.VM, Code: f.Code,
	}}
	for i := range all[:min(len(all), maxAlertRows)] {
		v.Rows = append(v.Rows, newAlertRow(&all[i], now))
	}
	if vms, ok := s.src.VMs(); ok {
		for i := range vms {
			if i == 0 || vms[i].Host != vms[i-1].Host {
				v.Hosts = append(v.Hosts, clean(vms[i].Host))
			}
		}
	}
	api := url.Values{}
	for k, val := range map[string]string{"state": string(f.State), "severity": f.Severity, "host": f.Host, "vm": f.VM, "code": f.Code} {
		if val != "" {
			api.Set(k, val)
		}
	}
	json := "/api/alerts"
	if len(api) > 0 {
		json += "?" + api.Encode()
	}
	s.render(w, r, http.StatusOK, "alerts", page{Title: "Alerts", Nav: "alerts", Live: true, Host: f.Host, VM: f.VM, JSON: json, Main: v})
}

// oneOf returns s if it is one of the allowed values, else "".
func oneOf(s string, allowed ...string) string {
	for _, a := range allowed {
		if s == a {
			return s
		}
	}
	return ""
}

// kbView is a knowledge-base entry as the pages show it.
type kbView struct {
	ID, Title, Severity, SevClass string
	Match                         string
	Cause                         string
	Resolution                    []string
	References                    []refView
	Samples                       []string
}

type refView struct {
	Text string
	// URL is set only for http and https references: anything else is
	// shown as text, not as a link.
	URL string
}

func newRef(s string) refView {
	r := refView{Text: clip(s, 512)}
	if u, err := url.Parse(s); err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" {
		r.URL = u.String()
	}
	return r
}

func kbFromMatch(m collector.KBMatch) kbView {
	v := kbView{ID: clean(m.ID), Title: clean(m.Title), Severity: clean(m.Severity), SevClass: statusClass(m.Severity), Cause: clean(m.Cause)}
	for _, s := range m.Resolution {
		v.Resolution = append(v.Resolution, clean(s))
	}
	for _, s := range m.References {
		v.References = append(v.References, newRef(s))
	}
	return v
}

func kbFromEntry(e *kb.Entry) kbView {
	v := kbFromMatch(collector.KBMatch{ID: e.ID, Title: e.Title, Severity: e.Severity, Cause: e.Cause, Resolution: e.Resolution, References: e.References})
	v.Match = matchText(e.Match)
	for _, s := range e.Samples[:min(len(e.Samples), 3)] {
		if s.Message != "" {
			v.Samples = append(v.Samples, clip(s.Message, 512))
		}
	}
	return v
}

// matchText says in one line what an entry matches.
func matchText(m kb.Match) string {
	var b []byte
	add := func(k, v string) {
		if v != "" {
			if len(b) > 0 {
				b = append(b, ' ')
			}
			b = append(b, k...)
			b = append(b, '=')
			b = append(b, v...)
		}
	}
	add("code", m.Code)
	add("os", m.OS)
	add("channel", m.Channel)
	for _, p := range m.Provider {
		add("provider", p)
	}
	for _, id := range m.EventIDs {
		add("event_id", strconv.FormatUint(uint64(id), 10))
	}
	add("unit", m.Unit)
	if m.Pattern != "" {
		add("pattern", strconv.Quote(m.Pattern))
	}
	return clean(string(b))
}
