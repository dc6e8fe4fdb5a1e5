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
	"strings"
	"text/tabwriter"
	"time"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/protocol"
)

const defaultAPI = "http://" + collector.DefaultListen

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
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("%s: %s: %s", url, resp.Status, e.Error)
		}
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	var vms []collector.VM
	if err := json.Unmarshal(body, &vms); err != nil {
		return nil, fmt.Errorf("%s: not a VM list: %w", url, err)
	}
	return vms, nil
}

// writeTable prints one line per VM in the order given (the API sorts by
// host, then name).
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", v.Host, v.Name, channel, age(now, v.LastSeen), agent, checksColumn(v.Checks))
	}
	return tw.Flush()
}

// checksColumn names the checks that are not ok, worst first, and counts
// the rest, so a healthy VM takes little room: "resources=crit network=warn +4 ok".
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
	parts := make([]string, 0, len(bad)+1)
	for _, b := range bad {
		parts = append(parts, b.name+"="+string(b.status))
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
