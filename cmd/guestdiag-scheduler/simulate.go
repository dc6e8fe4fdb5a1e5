package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/guestdiag/guestdiag/internal/cli"
	"github.com/guestdiag/guestdiag/scheduler/sim"
)

// policies are the simulator's policies by name: guestdiag's planner and
// the baselines it is measured against.
var policies = map[string]func() sim.Policy{
	"guestdiag":   func() sim.Policy { return &sim.Ours{Low: 0.2, High: 0.8, Cooldown: 6} },
	"thr-mmt-0.8": func() sim.Policy { return sim.Beloglazov{Param: 0.8} },
	"lr-mmt-1.2":  func() sim.Policy { return sim.Beloglazov{LR: true, Param: 1.2} },
	"xenguard":    func() sim.Policy { return sim.XenGuard{Low: 0.1, High: 0.7, Step: 0.1} },
	"sandpiper":   func() sim.Policy { return sim.Sandpiper{Threshold: 0.8, K: 3, N: 5} },
}

const defaultPolicies = "guestdiag,thr-mmt-0.8,lr-mmt-1.2,xenguard,sandpiper"

type dayResult struct {
	Day    string     `json:"day"`
	Result sim.Result `json:"result"`
}

func simulate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("guestdiag-scheduler simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	names := fs.String("policies", defaultPolicies, "comma-separated `policies` to run")
	packed := fs.Bool("packed", false, "start from VMs packed by their first sample instead of CloudSim's spread start")
	jsonOut := fs.Bool("json", false, "print every day's result as JSON lines")
	workers := fs.Int("j", 2, "days simulated at once")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: guestdiag-scheduler simulate [flags] DAY_DIR...\n\nPolicies: %s.\n\n", strings.Join(slices.Sorted(maps.Keys(policies)), ", "))
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cli.ExitOK
		}
		return cli.ExitUsage
	}
	if fs.NArg() == 0 || *workers < 1 {
		fs.Usage()
		return cli.ExitUsage
	}
	var chosen []string
	for _, n := range strings.Split(*names, ",") {
		if _, ok := policies[n]; !ok {
			fmt.Fprintf(stderr, "guestdiag-scheduler simulate: unknown policy %q (have %s)\n", n, strings.Join(slices.Sorted(maps.Keys(policies)), ", "))
			return cli.ExitUsage
		}
		chosen = append(chosen, n)
	}
	days := fs.Args()
	traces := make([][]sim.Trace, len(days))
	for i, d := range days {
		t, err := sim.LoadDay(d)
		if err != nil {
			fmt.Fprintf(stderr, "guestdiag-scheduler simulate: %v\n", err)
			return cli.ExitFailed
		}
		traces[i] = t
	}

	bar := newProgress(stderr, len(days)*len(chosen))
	results := make(map[string][]dayResult, len(chosen))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, *workers)
	var failed error
	for _, name := range chosen {
		results[name] = make([]dayResult, len(days))
	}
	for _, name := range chosen {
		for i := range days {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				if ctx.Err() != nil {
					return
				}
				r, err := sim.Run(sim.PlanetLabSetup(), traces[i], policies[name](), sim.Options{
					Packed:   *packed,
					Progress: func(step, steps int) { bar.step(1.0 / float64(steps)) },
				})
				mu.Lock()
				defer mu.Unlock()
				if err != nil && failed == nil {
					failed = fmt.Errorf("%s on %s: %w", name, days[i], err)
				}
				results[name][i] = dayResult{Day: filepath.Base(days[i]), Result: r}
			}()
		}
	}
	wg.Wait()
	bar.done()
	if failed != nil {
		fmt.Fprintf(stderr, "guestdiag-scheduler simulate: %v\n", failed)
		return cli.ExitFailed
	}
	if ctx.Err() != nil {
		return cli.ExitFailed
	}
	if *jsonOut {
		enc := json.NewEncoder(stdout)
		for _, name := range chosen {
			for _, d := range results[name] {
				d.Result.ActiveHosts = nil
				if err := enc.Encode(struct {
					Policy string `json:"policy"`
					dayResult
				}{name, d}); err != nil {
					return cli.ExitFailed
				}
			}
		}
		return cli.ExitOK
	}
	start := "CloudSim's start (each VM placed asking for all of its MIPS)"
	if *packed {
		start = "packed start (best fit by first sample, up to 80 %)"
	}
	fmt.Fprintf(stdout, "%d days, %s, medians over the days; Beloglazov & Buyya's set-up (800 hosts, CCPE 2012)\n\n", len(days), start)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "policy\tmigrations\tSLATAH\tPDM\tSLAV\tenergy kWh\tESV\tmean active hosts\t")
	for _, name := range chosen {
		rs := results[name]
		med := func(f func(sim.Result) float64) float64 { return median(rs, f) }
		fmt.Fprintf(tw, "%s\t%.0f\t%.2f %%\t%.3f %%\t%.2e\t%.1f\t%.2e\t%.0f\t\n", name,
			med(func(r sim.Result) float64 { return float64(r.Migrations) }),
			med(func(r sim.Result) float64 { return r.SLATAH * 100 }),
			med(func(r sim.Result) float64 { return r.PDM * 100 }),
			med(sim.Result.SLAV), med(func(r sim.Result) float64 { return r.EnergyKWh }),
			med(sim.Result.ESV), med(meanActive))
	}
	if err := tw.Flush(); err != nil {
		return cli.ExitFailed
	}
	return cli.ExitOK
}

func meanActive(r sim.Result) float64 {
	if len(r.ActiveHosts) == 0 {
		return 0
	}
	sum := 0
	for _, n := range r.ActiveHosts {
		sum += n
	}
	return float64(sum) / float64(len(r.ActiveHosts))
}

func median(rs []dayResult, f func(sim.Result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r.Result)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// progress draws a bar on stderr when it is a terminal, and nothing
// otherwise, so logs and pipes stay clean.
type progress struct {
	mu       sync.Mutex
	w        io.Writer
	tty      bool
	total    float64
	finished float64
	shown    int
}

func newProgress(w io.Writer, runs int) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progress{w: w, tty: tty, total: float64(runs), shown: -1}
}

func (p *progress) step(frac float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.finished += frac
	if !p.tty {
		return
	}
	pct := int(100 * p.finished / p.total)
	if pct == p.shown {
		return
	}
	p.shown = pct
	const width = 40
	n := width * pct / 100
	fmt.Fprintf(p.w, "\r[%s%s] %3d %%", strings.Repeat("#", n), strings.Repeat(".", width-n), pct)
}

func (p *progress) done() {
	if p.tty && p.shown >= 0 {
		fmt.Fprintln(p.w)
	}
}
