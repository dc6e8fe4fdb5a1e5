package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/internal/cli"
	"github.com/guestdiag/guestdiag/protocol"
)

var statusCmd = cli.Command{
	Name: "status", Args: "[flags]",
	Summary: "print the fleet table with each VM's firing alerts and checks",
}

func (a app) status(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := cli.NewFlagSet("guestdiag status", statusCmd.Usage("guestdiag"), stderr)
	api := addAPIFlags(fs)
	if err := cli.Parse(fs, args); err != nil {
		return cli.UsageExit(stderr, "guestdiag status", err)
	}
	ctx, cancel := context.WithTimeout(ctx, api.timeout)
	defer cancel()
	c := api.client()
	vms, err := c.vms(ctx)
	if err != nil {
		return failed(stderr, "status", err)
	}
	// A collector from before alerts answers 404: the fleet table still
	// stands, with the counts marked unknown.
	alerts, err := c.alerts(ctx, collector.AlertFilter{State: collector.AlertFiring})
	if err != nil && statusOf(err) != http.StatusNotFound {
		return failed(stderr, "status", err)
	}
	counts := countAlerts(alerts, err == nil)
	if err := writeStatus(stdout, vms, counts, a.now(), a.width(stdout)); err != nil {
		return failed(stderr, "status", err)
	}
	return cli.ExitOK
}

// alertCounts are the firing alerts by VM and by severity; known is false
// when the collector does not serve alerts.
type alertCounts struct {
	known bool
	byVM  map[[2]string]map[string]int // host, vm → severity → count
	total map[string]int
	n     int
}

func countAlerts(alerts []collector.Alert, known bool) alertCounts {
	c := alertCounts{known: known, byVM: map[[2]string]map[string]int{}, total: map[string]int{}}
	for _, a := range alerts {
		if a.State != collector.AlertFiring {
			continue
		}
		k := [2]string{a.Key.Host, a.Key.VM}
		if c.byVM[k] == nil {
			c.byVM[k] = map[string]int{}
		}
		c.byVM[k][a.Severity]++
		c.total[a.Severity]++
		c.n++
	}
	return c
}

// bySeverity reads counts worst first, joined by sep: "2 crit 1 warn".
func bySeverity(counts map[string]int, sep string) string {
	sevs := make([]string, 0, len(counts))
	for s := range counts {
		sevs = append(sevs, s)
	}
	slices.SortFunc(sevs, func(a, b string) int {
		return cmp.Or(cmp.Compare(severityRank(a), severityRank(b)), cmp.Compare(a, b))
	})
	parts := make([]string, len(sevs))
	for i, s := range sevs {
		parts[i] = fmt.Sprintf("%d %s", counts[s], cell(s, maxCellRunes))
	}
	return strings.Join(parts, sep)
}

// writeStatus prints one line per VM in the order given (the API sorts by
// host, then name) and a line of totals. Every string from the API goes
// through cell.
func writeStatus(w io.Writer, vms []collector.VM, alerts alertCounts, now time.Time, width int) error {
	if len(vms) == 0 {
		_, err := fmt.Fprintln(w, "no VMs reported yet")
		return err
	}
	t := &table{flex: 6}
	t.add("HOST", "VM", "CHANNEL", "LAST-SEEN", "AGENT", "ALERTS", "CHECKS")
	hosts := map[string]bool{}
	for _, v := range vms {
		hosts[v.Host] = true
		channel := cmp.Or(string(v.Channel.State), "-")
		agent := "-"
		if v.Hello != nil {
			agent = v.Hello.AgentVersion
		}
		firing := "?"
		if alerts.known {
			firing = cmp.Or(bySeverity(alerts.byVM[[2]string{v.Host, v.Name}], " "), "-")
		}
		t.add(cell(v.Host, maxCellRunes), cell(v.Name, maxCellRunes), cell(channel, maxCellRunes),
			age(now, v.LastSeen), cell(agent, maxCellRunes), firing, checksColumn(v.Checks))
	}
	if err := t.render(w, width); err != nil {
		return err
	}
	total := fmt.Sprintf("%s on %s", plural(len(vms), "VM"), plural(len(hosts), "host"))
	switch {
	case !alerts.known:
		total += "; this collector does not serve alerts"
	case alerts.n == 0:
		total += "; no firing alerts"
	default:
		total += fmt.Sprintf("; %s firing: %s", plural(alerts.n, "alert"), bySeverity(alerts.total, ", "))
	}
	_, err := fmt.Fprintln(w, total)
	return err
}

func plural(n int, noun string) string {
	switch {
	case n == 1:
		return "1 " + noun
	case strings.HasSuffix(noun, "y"):
		return fmt.Sprintf("%d %sies", n, noun[:len(noun)-1])
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// checksColumn names the checks that are not ok, worst first, and counts
// the rest, so a healthy VM takes little room: "resources=crit network=warn +4 ok".
// Names beyond maxChecksRunes are counted too: "+3 not ok".
func checksColumn(checks map[string]*collector.Check) string {
	if len(checks) == 0 {
		return "-"
	}
	type named struct {
		name   string
		status protocol.Status
	}
	var bad []named
	ok := 0
	for name, c := range checks {
		if c.Status == protocol.StatusOK {
			ok++
			continue
		}
		bad = append(bad, named{name, c.Status})
	}
	slices.SortFunc(bad, func(a, b named) int {
		return cmp.Or(cmp.Compare(rank(a.status), rank(b.status)), cmp.Compare(a.name, b.name))
	})
	parts := make([]string, 0, len(bad)+2)
	width := 0
	for i, b := range bad {
		p := cell(b.name, maxCellRunes) + "=" + cell(string(b.status), maxCellRunes)
		width += utf8.RuneCountInString(p)
		if width > maxChecksRunes {
			parts = append(parts, fmt.Sprintf("+%d not ok", len(bad)-i))
			break
		}
		parts = append(parts, p)
		width++ // the space after it
	}
	switch {
	case ok > 0 && len(bad) > 0:
		parts = append(parts, fmt.Sprintf("+%d ok", ok))
	case ok > 0:
		parts = append(parts, fmt.Sprintf("%d ok", ok))
	}
	return strings.Join(parts, " ")
}

// severityRank orders alert severities worst first; unknown ones last.
func severityRank(s string) int {
	switch s {
	case "crit":
		return 0
	case "warn":
		return 1
	case "info":
		return 2
	}
	return 3
}

func rank(s protocol.Status) int {
	switch s {
	case protocol.StatusCrit:
		return 0
	case protocol.StatusWarn:
		return 1
	case protocol.StatusUnknown:
		return 2
	}
	return 3
}

// age says how long ago t was, in the largest whole unit.
func age(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd ago", int(d/(24*time.Hour)))
}
