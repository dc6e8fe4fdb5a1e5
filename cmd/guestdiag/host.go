package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/internal/cli"
	"github.com/guestdiag/guestdiag/protocol"
)

var (
	hostListCmd = cli.Command{
		Name: "host list", Args: "[flags]",
		Summary: "list hosts with their load, drain marks and placement hints",
	}
	hostDrainCmd = cli.Command{
		Name: "host drain", Args: "[flags] HOST",
		Summary: "mark a host for maintenance: the scheduler plans to empty it",
	}
	hostUndrainCmd = cli.Command{
		Name: "host undrain", Args: "[flags] HOST",
		Summary: "remove a host's maintenance mark",
	}
)

func (a app) hostList(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := cli.NewFlagSet("guestdiag host list", hostListCmd.Usage("guestdiag"), stderr)
	api := addAPIFlags(fs)
	asJSON := fs.Bool("json", false, "print the API's JSON instead of a table")
	if err := cli.Parse(fs, args); err != nil {
		return cli.UsageExit(stderr, "guestdiag host list", err)
	}
	ctx, cancel := context.WithTimeout(ctx, api.timeout)
	defer cancel()
	body, err := api.client().raw(ctx, "/api/placement", nil)
	switch {
	case err != nil:
	case *asJSON:
		err = writeJSON(stdout, body)
	default:
		var p collector.Placement
		if err = json.Unmarshal(body, &p); err != nil {
			err = fmt.Errorf("/api/placement: not a placement: %w", err)
		} else {
			err = writeHosts(stdout, p.Hosts, a.now(), a.width(stdout))
		}
	}
	if err != nil {
		return failed(stderr, "host list", err)
	}
	return cli.ExitOK
}

// writeHosts prints hosts as a table whose HINTS give way to fit the
// terminal.
func writeHosts(w io.Writer, hosts []collector.HostPlacement, now time.Time, width int) error {
	if len(hosts) == 0 {
		_, err := fmt.Fprintln(w, "no hosts")
		return err
	}
	t := &table{flex: 5}
	t.add("HOST", "CPU", "MEM", "VMS", "DRAIN", "HINTS")
	for _, h := range hosts {
		cpu, mem := "-", "-"
		if u := h.Usage; u != nil {
			cpu, mem = pct(u.CPU.UsedPct, u, "cpu"), pct(u.Memory.UsedPct, u, "mem")
		}
		drain := "-"
		if d := h.Drain; d != nil {
			drain = fmt.Sprintf("%s %s ago", cell(d.By, maxCellRunes), span(now.Sub(d.Since)))
			if d.Reason != "" {
				drain += ": " + cell(d.Reason, maxCellRunes)
			}
		}
		hints := make([]string, 0, len(h.Hints))
		for _, hint := range h.Hints {
			s := cell(string(hint.Kind), maxCellRunes)
			if hint.Resource != "" {
				s += "(" + cell(hint.Resource, maxCellRunes) + ")"
			}
			hints = append(hints, s)
		}
		t.add(cell(h.Host, maxCellRunes), cpu, mem, fmt.Sprint(h.VMs), drain, cmp.Or(strings.Join(hints, " "), "-"))
	}
	return t.render(w, width)
}

// pct is a usage figure, or "?" when the relay could not gather it.
func pct(v float64, u *protocol.HostUsage, figure string) string {
	if u.Lacks(figure) {
		return "?"
	}
	return fmt.Sprintf("%.0f%%", v)
}

func (a app) hostDrain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return a.drain(ctx, args, stdout, stderr, true)
}

func (a app) hostUndrain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return a.drain(ctx, args, stdout, stderr, false)
}

func (a app) drain(ctx context.Context, args []string, stdout, stderr io.Writer, drain bool) int {
	cmd, what := hostUndrainCmd, "undrain"
	if drain {
		cmd, what = hostDrainCmd, "drain"
	}
	name := "guestdiag host " + what
	fs := cli.NewFlagSet(name, cmd.Usage("guestdiag"), stderr)
	api := addAPIFlags(fs)
	var reason *string
	if drain {
		reason = fs.String("reason", "", "why, for the other operators (the placement page and `host list` show it)")
	}
	hosts, err := cli.ParseArgs(fs, args)
	switch {
	case err != nil:
	case len(hosts) == 0:
		err = cli.ArgErrorf("missing the host name")
	case len(hosts) > 1:
		err = cli.ArgErrorf("unexpected argument %q", hosts[1])
	}
	if err != nil {
		return cli.UsageExit(stderr, name, err)
	}
	body := []byte("{}")
	if drain {
		body, _ = json.Marshal(collector.DrainRequest{Reason: *reason})
	}
	ctx, cancel := context.WithTimeout(ctx, api.timeout)
	defer cancel()
	answer, err := api.client().do(ctx, http.MethodPost, "/api/hosts/"+url.PathEscape(hosts[0])+"/"+what, nil, body)
	if err != nil {
		return failed(stderr, "host "+what, err)
	}
	var hp collector.HostPlacement
	if err := json.Unmarshal(answer, &hp); err != nil {
		return failed(stderr, "host "+what, fmt.Errorf("the API's answer is not a host: %w", err))
	}
	if hp.Drain != nil {
		fmt.Fprintf(stdout, "%s drained by %s since %s\n", cell(hp.Host, maxCellRunes), cell(hp.Drain.By, maxCellRunes), hp.Drain.Since.UTC().Format(time.RFC3339))
	} else {
		fmt.Fprintf(stdout, "%s not drained\n", cell(hp.Host, maxCellRunes))
	}
	return cli.ExitOK
}
