package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/protocol"
)

const defaultAPI = "http://" + collector.DefaultListen

// Caps, in runes after escaping, on what the API may put on the screen.
const (
	maxCellRunes   = 48  // one cell of the table, or one check name
	maxChecksRunes = 120 // the names of the checks that are not ok
	maxErrorRunes  = 300 // an error message of the API
)

func (c *cli) status(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("guestdiag status", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	api := fs.String("api", defaultAPI, "collector API base `url`")
	timeout := fs.Duration("timeout", 10*time.Second, "time limit of the request")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(c.stderr, "guestdiag status: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	vms, err := fetchVMs(ctx, *api)
	if err != nil {
		fmt.Fprintf(c.stderr, "guestdiag status: %v\n", err)
		return exitFailed
	}
	if err := writeTable(c.stdout, vms, c.now()); err != nil {
		fmt.Fprintf(c.stderr, "guestdiag status: %v\n", err)
		return exitFailed
	}
	return exitOK
}

func fetchVMs(ctx context.Context, api string) ([]collector.VM, error) {
	url := strings.TrimRight(api, "/") + "/api/vms"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("bad --api: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the collector API at %s (is `guestdiag up` or guestdiag-collector running?): %w", api, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e collector.APIError
		status := cell(resp.Status, maxCellRunes)
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("%s: %s: %s", url, status, cell(e.Error, maxErrorRunes))
		}
		return nil, fmt.Errorf("%s: %s", url, status)
	}
	var vms []collector.VM
	if err := json.Unmarshal(body, &vms); err != nil {
		return nil, fmt.Errorf("%s: not a VM list: %w", url, err)
	}
	return vms, nil
}

// writeTable prints one line per VM in the order given (the API sorts by
// host, then name). Every string from the API goes through cell.
func writeTable(w io.Writer, vms []collector.VM, now time.Time) error {
	if len(vms) == 0 {
		_, err := fmt.Fprintln(w, "no VMs reported yet")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tVM\tCHANNEL\tLAST-SEEN\tAGENT\tCHECKS")
	for _, v := range vms {
		channel := cmp.Or(string(v.Channel.State), "-")
		agent := "-"
		if v.Hello != nil {
			agent = v.Hello.AgentVersion
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n",
			cell(v.Host, maxCellRunes), cell(v.Name, maxCellRunes), cell(channel, maxCellRunes),
			age(now, v.LastSeen), cell(agent, maxCellRunes), checksColumn(v.Checks))
	}
	return tw.Flush()
}

// cell makes s safe to print as one table cell, at most limit runes wide.
// What the API returns comes from hosts and guests: a newline in it could
// forge a row, a tab shift the columns, an escape sequence drive the
// terminal, a bidi override reorder the line. So every character that is
// not printable, every byte of invalid UTF-8 and the backslash itself are
// written as Go escapes (\x1b, \n, \u202e, \\), and a longer result is cut
// at a whole escape and ends in "…".
func cell(s string, limit int) string {
	var b strings.Builder
	width, cut := 0, 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		var piece string
		switch {
		case r == utf8.RuneError && size == 1:
			piece = fmt.Sprintf(`\x%02x`, s[i])
		case r == '\\':
			piece = `\\`
		case unicode.IsPrint(r):
			piece = s[i : i+size]
		default:
			q := strconv.QuoteRune(r)
			piece = q[1 : len(q)-1]
		}
		i += size
		width += utf8.RuneCountInString(piece)
		if width > limit {
			return b.String()[:cut] + "…"
		}
		b.WriteString(piece)
		if width < limit {
			cut = b.Len()
		}
	}
	return b.String()
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
