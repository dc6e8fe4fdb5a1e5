package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/internal/cli"
)

var alertsCmd = cli.Command{
	Name: "alerts", Args: "[flags]",
	Summary: "list alerts, firing and worst first",
}

func (a app) alerts(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := cli.NewFlagSet("guestdiag alerts", alertsCmd.Usage("guestdiag"), stderr)
	api := addAPIFlags(fs)
	var f collector.AlertFilter
	fs.Func("state", "only alerts in this `state`: firing or resolved (default both)", func(s string) error {
		if s != string(collector.AlertFiring) && s != string(collector.AlertResolved) {
			return fmt.Errorf("%q is neither firing nor resolved", s)
		}
		f.State = collector.AlertState(s)
		return nil
	})
	fs.Func("severity", "only alerts of this `severity`: crit, warn or info", func(s string) error {
		if severityRank(s) > 2 {
			return fmt.Errorf("%q is not crit, warn or info", s)
		}
		f.Severity = s
		return nil
	})
	fs.StringVar(&f.Host, "host", "", "only alerts of VMs on this `host`")
	fs.StringVar(&f.VM, "vm", "", "only alerts of VMs of this `name`")
	fs.StringVar(&f.Code, "code", "", "only alerts of this finding `code`, such as fs.full")
	asJSON := fs.Bool("json", false, "print the API's JSON instead of a table")
	if err := cli.Parse(fs, args); err != nil {
		return cli.UsageExit(stderr, "guestdiag alerts", err)
	}
	ctx, cancel := context.WithTimeout(ctx, api.timeout)
	defer cancel()
	c := api.client()
	if *asJSON {
		body, err := c.raw(ctx, "/api/alerts", alertQuery(f))
		if err == nil {
			err = writeJSON(stdout, body)
		}
		if err != nil {
			return failed(stderr, "alerts", err)
		}
		return cli.ExitOK
	}
	alerts, err := c.alerts(ctx, f)
	if err == nil {
		err = writeAlerts(stdout, alerts, f, a.now(), a.width(stdout))
	}
	if err != nil {
		return failed(stderr, "alerts", err)
	}
	return cli.ExitOK
}

// writeAlerts prints the alerts as a table whose SUMMARY gives way to fit
// the terminal. It sorts them as the API promises to, so that the order
// holds whatever the collector's version.
func writeAlerts(w io.Writer, alerts []collector.Alert, f collector.AlertFilter, now time.Time, width int) error {
	if len(alerts) == 0 {
		what := "alerts"
		if f.State != "" {
			what = string(f.State) + " alerts"
		}
		if f != (collector.AlertFilter{State: f.State}) {
			what += " match"
		}
		_, err := fmt.Fprintf(w, "no %s\n", what)
		return err
	}
	alerts = slices.Clone(alerts)
	sortAlerts(alerts)
	t := &table{flex: 6}
	t.add("SEVERITY", "STATE", "HOST", "VM", "CODE", "SINCE", "SUMMARY", "KB")
	for _, a := range alerts {
		t.add(cell(a.Severity, maxCellRunes), stateOf(a), cell(a.Key.Host, maxCellRunes), cell(a.Key.VM, maxCellRunes),
			cell(a.Key.Code, maxCellRunes), span(now.Sub(inStateSince(a))),
			cell(a.Summary, maxTextRunes), kbColumn(a.KB))
	}
	return t.render(w, width)
}

// sortAlerts orders alerts firing first, then crit, warn, info, then newest
// first.
func sortAlerts(alerts []collector.Alert) {
	slices.SortStableFunc(alerts, func(a, b collector.Alert) int {
		return cmp.Or(
			cmp.Compare(stateRank(a.State), stateRank(b.State)),
			cmp.Compare(severityRank(a.Severity), severityRank(b.Severity)),
			b.StartsAt.Compare(a.StartsAt),
		)
	})
}

func stateRank(s collector.AlertState) int {
	if s == collector.AlertFiring {
		return 0
	}
	return 1
}

// stateOf is the alert's state, "flapping" for a firing alert that is
// being held up by flap damping.
func stateOf(a collector.Alert) string {
	if a.State == collector.AlertFiring && a.Flapping {
		return "flapping"
	}
	return cmp.Or(cell(string(a.State), maxCellRunes), "-")
}

// inStateSince is when the alert entered its state: when it started firing,
// or when it resolved.
func inStateSince(a collector.Alert) time.Time {
	if a.State == collector.AlertResolved && !a.EndsAt.IsZero() {
		return a.EndsAt
	}
	return a.StartsAt
}

// kbColumn is the first match's id, and how many more there are.
func kbColumn(kb []collector.KBMatch) string {
	switch len(kb) {
	case 0:
		return "-"
	case 1:
		return cell(kb[0].ID, maxCellRunes)
	}
	return fmt.Sprintf("%s +%d", cell(kb[0].ID, maxCellRunes), len(kb)-1)
}

// span says how long d is in its two largest units: 45s, 12m, 3h12m, 2d4h.
func span(d time.Duration) string {
	switch {
	case d < time.Second:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", d/time.Second)
	case d < time.Hour:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%dm", d/time.Hour, d%time.Hour/time.Minute)
	}
	return fmt.Sprintf("%dd%dh", d/(24*time.Hour), d%(24*time.Hour)/time.Hour)
}

// writeJSON prints a JSON answer indented, with every character that is not
// printable, DEL and every invalid byte written as a \u
// escape. The result is the same JSON value, safe on a terminal and still
// fit for jq. Outside strings JSON is ASCII, so escaping is always inside
// one.
func writeJSON(w io.Writer, body []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, bytes.TrimSpace(body), "", "  "); err != nil {
		return fmt.Errorf("the API's answer is not JSON: %w", err)
	}
	var b strings.Builder
	for s := buf.String(); s != ""; {
		r, size := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteString(`\ufffd`)
		case (r < utf8.RuneSelf && r != 0x7f) || unicode.IsPrint(r):
			b.WriteString(s[:size])
		case r > 0xffff:
			r1, r2 := utf16.EncodeRune(r)
			fmt.Fprintf(&b, `\u%04x\u%04x`, r1, r2)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
		s = s[size:]
	}
	b.WriteByte('\n')
	_, err := io.WriteString(w, b.String())
	return err
}
