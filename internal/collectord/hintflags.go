package collectord

import (
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/guestdiag/guestdiag/collector"
)

// hintFlags registers the placement hint options (docs/scheduler.md).
func hintFlags(fs *flag.FlagSet, cfg *collector.Config) {
	h := &cfg.Hints
	h.Thresholds = collector.Thresholds{CPUHighPct: collector.DefaultCPUHighPct, CPULowPct: collector.DefaultCPULowPct, MemHighPct: collector.DefaultMemHighPct}
	h.Hits, h.Window, h.ContentionVMs = collector.DefaultHintHits, collector.DefaultHintWindow, collector.DefaultContentionVMs
	cfg.Plans = collector.DefaultPlans
	fs.Float64Var(&h.CPUHighPct, "hint-cpu-high", h.CPUHighPct, "host CPU used `percent` above which a sample counts towards overloaded")
	fs.Float64Var(&h.CPULowPct, "hint-cpu-low", h.CPULowPct, "host CPU used `percent` below which a sample counts towards underloaded")
	fs.Float64Var(&h.MemHighPct, "hint-mem-high", h.MemHighPct, "host memory used `percent` above which a sample counts towards overloaded")
	fs.IntVar(&h.Hits, "hint-hits", h.Hits, "samples of the window (k of n) that must cross a threshold to raise a hint")
	fs.IntVar(&h.Window, "hint-window", h.Window, "host samples (n) a load hint looks at")
	fs.IntVar(&h.ContentionVMs, "hint-contention", h.ContentionVMs, "guests on one host reporting res.steal_high that make it contended")
	fs.Func("hint-host", "per-host thresholds `HOST:cpu_high=P,cpu_low=P,mem_high=P` (any of them); repeat for several hosts", func(s string) error {
		host, t, err := parseHostThresholds(s)
		if err != nil {
			return err
		}
		if h.Hosts == nil {
			h.Hosts = make(map[string]collector.Thresholds)
		}
		h.Hosts[host] = t
		return nil
	})
	fs.IntVar(&cfg.Plans, "plans", cfg.Plans, "newest scheduler plans every collector keeps and shows")
}

func parseHostThresholds(s string) (string, collector.Thresholds, error) {
	var t collector.Thresholds
	host, spec, ok := strings.Cut(s, ":")
	if !ok || host == "" || spec == "" {
		return "", t, fmt.Errorf("%q: want HOST:cpu_high=P,cpu_low=P,mem_high=P", s)
	}
	for kv := range strings.SplitSeq(spec, ",") {
		k, v, ok := strings.Cut(kv, "=")
		p, err := strconv.ParseFloat(v, 64)
		if !ok || err != nil || p <= 0 || p > 100 {
			return "", t, fmt.Errorf("%q: %q is not KEY=PERCENT with a percent above 0 and at most 100", s, kv)
		}
		switch k {
		case "cpu_high":
			t.CPUHighPct = p
		case "cpu_low":
			t.CPULowPct = p
		case "mem_high":
			t.MemHighPct = p
		default:
			return "", t, fmt.Errorf("%q: unknown threshold %q; want cpu_high, cpu_low or mem_high", s, k)
		}
	}
	return host, t, nil
}
