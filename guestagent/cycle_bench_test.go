//go:build linux

package guestagent

import (
	"log/slog"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/checks"
)

// BenchmarkCycle runs every check once per iteration, as the agent does
// when all six come due together, and reports the process's CPU time per
// cycle. Waiting for ping replies costs wall time, not CPU, so cpu-ms/cycle
// leaves it out. The network check pings its gateway, so this runs only
// from test/bench/cycle.sh, which gives it a network namespace with a veth
// gateway and a config file in GUESTDIAG_BENCH_CONFIG.
func BenchmarkCycle(b *testing.B) {
	path := os.Getenv("GUESTDIAG_BENCH_CONFIG")
	if path == "" {
		b.Skip("pings a gateway: run test/bench/cycle.sh, which makes a network namespace for it")
	}
	fc, err := LoadConfigFile(path)
	if err != nil {
		b.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	var runs []checks.Runner
	for _, r := range checks.All() {
		run, err := BuildCheck(r.Name, fc.Checks[r.Name], b.TempDir(), logger)
		if err != nil {
			b.Fatal(err)
		}
		runs = append(runs, run)
	}
	cycle := func() {
		for _, run := range runs {
			run.Report = func(res checks.Result) bool {
				if res.Status == "unknown" {
					b.Logf("%s: unknown: %s", run.Check.Name(), res.Summary)
				}
				return true
			}
			run.Once(b.Context())
		}
	}
	// The first cycle records baselines and the first CPU window; the agent
	// does that once per start.
	cycle()
	b.ReportAllocs()
	before := cpuTime()
	b.ResetTimer()
	for b.Loop() {
		cycle()
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-before)/float64(time.Millisecond)/float64(b.N), "cpu-ms/cycle")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
