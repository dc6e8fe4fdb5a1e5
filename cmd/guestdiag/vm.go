package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/internal/cli"
)

var vmCmd = cli.Command{
	Name: "vm", Args: "[flags] NAME",
	Summary: "show one VM: checks, findings, alerts with their fix, timeline",
}

// timelineShown is how many of the newest timeline events vm prints.
const timelineShown = 10

// vmReport is everything vm prints about one VM. AlertsServed and
// TimelineServed are false when the collector does not serve them.
type vmReport struct {
	VM             collector.VM
	Alerts         []collector.Alert
	Timeline       []collector.TimelineEvent
	AlertsServed   bool
	TimelineServed bool
}

func (a app) vm(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := cli.NewFlagSet("guestdiag vm", vmCmd.Usage("guestdiag"), stderr)
	api := addAPIFlags(fs)
	host := fs.String("host", "", "the VM's `host`, needed when several hosts have a VM of that name")
	names, err := cli.ParseArgs(fs, args)
	switch {
	case err != nil:
	case len(names) == 0:
		err = cli.ArgErrorf("missing the VM name")
	case len(names) > 1:
		err = cli.ArgErrorf("unexpected argument %q", names[1])
	}
	if err != nil {
		return cli.UsageExit(stderr, "guestdiag vm", err)
	}
	ctx, cancel := context.WithTimeout(ctx, api.timeout)
	defer cancel()
	r, err := fetchVM(ctx, api.client(), names[0], *host)
	if e, ok := errors.AsType[*apiError](err); ok && e.code == http.StatusConflict && len(e.body.Candidates) > 0 {
		return ambiguous(stderr, names[0], e.body.Candidates)
	}
	if err == nil {
		err = writeVM(stdout, r, a.now(), a.width(stdout))
	}
	if err != nil {
		return failed(stderr, "vm", err)
	}
	return cli.ExitOK
}

// ambiguous says which hosts have a VM of that name, as the commands that
// pick one.
func ambiguous(stderr io.Writer, name string, hosts []string) int {
	fmt.Fprintf(stderr, "guestdiag vm: %d hosts have a VM named %s; choose one with --host:\n", len(hosts), cell(name, maxCellRunes))
	for _, h := range hosts {
		fmt.Fprintf(stderr, "  guestdiag vm --host %s %s\n", cell(h, maxCellRunes), cell(name, maxCellRunes))
	}
	return cli.ExitFailed
}

func fetchVM(ctx context.Context, c *client, name, host string) (vmReport, error) {
	var r vmReport
	var err error
	if r.VM, err = c.vm(ctx, name, host); err != nil {
		return r, err
	}
	// Ask by the host the record names, so that a name on several hosts
	// never mixes in another VM's alerts. A collector from before alerts
	// answers 404; the rest of the page still stands.
	r.Alerts, err = c.alerts(ctx, collector.AlertFilter{State: collector.AlertFiring, VM: r.VM.Name, Host: r.VM.Host})
	if r.AlertsServed = err == nil; err != nil && statusOf(err) != http.StatusNotFound {
		return r, err
	}
	r.Timeline, err = c.timeline(ctx, r.VM.Name, r.VM.Host)
	if r.TimelineServed = err == nil; err != nil && statusOf(err) != http.StatusNotFound {
		return r, err
	}
	return r, nil
}

// page collects indented lines of safe text wrapped to a terminal width
// (0: not wrapped).
type page struct {
	b     strings.Builder
	width int
}

// line writes safe text at indent; the lines it wraps onto are indented by
// hang more.
func (p *page) line(indent, hang int, safe string) {
	first, rest := 0, 0
	if p.width > 0 {
		first = max(p.width-indent, minFlex)
		rest = max(p.width-indent-hang, minFlex)
	}
	for i, l := range wrap(safe, first, rest) {
		pad := indent
		if i > 0 {
			pad += hang
		}
		p.b.WriteString(strings.Repeat(" ", pad))
		p.b.WriteString(l)
		p.b.WriteByte('\n')
	}
}

func (p *page) blank() { p.b.WriteByte('\n') }

// field writes "  name   value" with names padded to one width.
func (p *page) field(name, safe string) {
	p.line(2, 12, fmt.Sprintf("%-11s %s", name, safe))
}

// text is s made safe for a page: escaped and capped, not yet wrapped.
func text(s string) string { return cell(s, maxTextRunes) }

// writeVM prints a VM's page. Everything in it that came from the API goes
// through cell or text.
func writeVM(w io.Writer, r vmReport, now time.Time, width int) error {
	p := &page{width: width}
	v := r.VM
	p.line(0, 2, text(v.Name)+" on host "+text(v.Host))
	if v.UUID != "" {
		p.field("uuid", text(v.UUID))
	}
	channel := cmp.Or(string(v.Channel.State), "unknown")
	if !v.Channel.Since.IsZero() {
		channel += " since " + age(now, v.Channel.Since)
	}
	if v.Channel.Reason != "" {
		channel += ": " + v.Channel.Reason
	}
	channel = text(channel)
	if v.Channel.Name != "" {
		channel += " (" + text(v.Channel.Name) + ")"
	}
	p.field("channel", channel)
	p.field("last seen", age(now, v.LastSeen))
	if h := v.Hello; h != nil {
		agent := "agent " + cmp.Or(h.AgentVersion, "?") + " on " + cmp.Or(h.OS, "?")
		var about []string
		for _, s := range []string{h.Platform, h.Kernel, h.Arch} {
			if s != "" {
				about = append(about, s)
			}
		}
		if len(about) > 0 {
			agent += " (" + strings.Join(about, ", ") + ")"
		}
		p.field("hello", text(agent))
		if h.ClaimedHostname != "" {
			p.field("hostname", text(h.ClaimedHostname)+" (the guest's claim)")
		}
	} else {
		p.field("hello", "none yet")
	}
	if hb := v.Heartbeat; hb != nil {
		p.field("heartbeat", fmt.Sprintf("%s ago, uptime %s, %d spooled, %d dropped",
			strings.TrimSuffix(age(now, hb.Received), " ago"), span(time.Duration(hb.UptimeSec)*time.Second), hb.Spooled, hb.Dropped))
	}

	p.blank()
	writeChecks(p, v.Checks, now)
	p.blank()
	writeFiring(p, r, now)
	p.blank()
	writeTimeline(p, r, now)
	_, err := io.WriteString(w, p.b.String())
	return err
}

func writeChecks(p *page, checks map[string]*collector.Check, now time.Time) {
	if len(checks) == 0 {
		p.line(0, 0, "checks: none reported yet")
		return
	}
	p.line(0, 0, "checks")
	names := make([]string, 0, len(checks))
	for n := range checks {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int {
		return cmp.Or(cmp.Compare(rank(checks[a].Status), rank(checks[b].Status)), cmp.Compare(a, b))
	})
	for _, n := range names {
		c := checks[n]
		line := cell(n, maxCellRunes) + "  " + cell(string(c.Status), maxCellRunes)
		if c.Summary != "" {
			line += "  " + text(c.Summary)
		}
		line += "  (" + age(now, c.Received) + ")"
		p.line(2, 4, line)
		for _, f := range c.Findings {
			fl := cell(string(f.Severity), maxCellRunes) + "  " + cell(f.Code, maxCellRunes)
			if f.Source != "" {
				fl += "  [" + cell(f.Source, maxCellRunes) + "]"
			}
			if f.Count > 1 {
				fl += fmt.Sprintf("  ×%d", f.Count)
			}
			fl += "  " + text(f.Message)
			p.line(4, 4, fl)
		}
		if c.FindingsTotal > len(c.Findings) {
			p.line(4, 0, fmt.Sprintf("and %d more findings the collector did not keep", c.FindingsTotal-len(c.Findings)))
		}
	}
}

func writeFiring(p *page, r vmReport, now time.Time) {
	switch {
	case !r.AlertsServed:
		p.line(0, 0, "alerts: this collector does not serve alerts")
		return
	case len(r.Alerts) == 0:
		p.line(0, 0, "firing alerts: none")
		return
	}
	alerts := slices.Clone(r.Alerts)
	sortAlerts(alerts)
	p.line(0, 0, "firing alerts")
	for _, a := range alerts {
		line := cell(a.Severity, maxCellRunes) + "  " + cell(a.Key.Code, maxCellRunes)
		if a.Key.Check != "" {
			line += "  " + cell(a.Key.Check, maxCellRunes)
		}
		if a.Key.Source != "" {
			line += "  [" + cell(a.Key.Source, maxCellRunes) + "]"
		}
		line += "  for " + span(now.Sub(a.StartsAt))
		if a.Flapping {
			line += ", flapping"
		}
		if a.Summary != "" {
			line += "  " + text(a.Summary)
		}
		p.line(2, 4, line)
		if len(a.KB) == 0 {
			p.line(4, 0, "no knowledge-base entry matches")
			continue
		}
		kb := a.KB[0]
		p.line(4, 4, "kb "+cell(kb.ID, maxCellRunes)+": "+prose(kb.Title))
		for i, step := range kb.Resolution {
			num := fmt.Sprintf("%d. ", i+1)
			p.line(6, len(num), num+prose(step))
		}
		if more := len(a.KB) - 1; more > 0 {
			p.line(4, 0, fmt.Sprintf("%d more matching entries: guestdiag alerts -json -vm %s", more, text(a.Key.VM)))
		}
	}
}

func writeTimeline(p *page, r vmReport, now time.Time) {
	switch {
	case !r.TimelineServed:
		p.line(0, 0, "timeline: this collector does not serve timelines")
		return
	case len(r.Timeline) == 0:
		p.line(0, 0, "timeline: empty")
		return
	}
	events := r.Timeline
	head := "timeline"
	if len(events) > timelineShown {
		events = events[:timelineShown]
		head = fmt.Sprintf("timeline, newest %d of %d", timelineShown, len(r.Timeline))
	}
	p.line(0, 0, head)
	t := &table{flex: 3}
	for _, e := range events {
		change := ""
		if e.From != "" || e.To != "" {
			change = cmp.Or(cell(e.From, maxCellRunes), "-") + " → " + cmp.Or(cell(e.To, maxCellRunes), "-")
		}
		subject := cell(e.Kind, maxCellRunes)
		if e.Check != "" {
			subject += " " + cell(e.Check, maxCellRunes)
		}
		t.add("  "+age(now, e.TS), subject, change, text(e.Text))
	}
	t.render(&p.b, p.width)
}
