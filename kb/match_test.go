package kb

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// allSamples returns every sample of every entry.
func allSamples(k *KB) []Finding {
	var out []Finding
	for _, e := range k.entries {
		out = append(out, e.Samples...)
	}
	return out
}

func sameMatches(t *testing.T, k *KB, f Finding, where string) {
	t.Helper()
	got, want := k.Match(f), matchNaive(k.entries, &f)
	if !slices.Equal(got, want) {
		t.Errorf("%s: %+v: fast Match gave %q, naive gave %q", where, f, ids(got), ids(want))
	}
}

func TestFastMatchEqualsNaive(t *testing.T) {
	k := shippedKB(t)
	for i, s := range allSamples(k) {
		sameMatches(t, k, s, "sample "+itoa(i))
		// The same message alone, and in other cases, must agree too.
		sameMatches(t, k, Finding{Message: s.Message}, "sample message "+itoa(i))
		sameMatches(t, k, Finding{OS: s.OS, Unit: strings.ToUpper(s.Unit), Message: strings.ToUpper(s.Message)}, "upper-cased sample "+itoa(i))
	}
	for _, l := range readBenign(t) {
		sameMatches(t, k, l.f, l.where)
	}
}

func TestDerivedLiteralsAreInEveryMatch(t *testing.T) {
	tests := []struct {
		name, pattern string
		want          []string
		matches       []string
	}{
		{"a concatenation takes its longest literal", `Out of memory: Killed process \d+ \(([^)]+)\)`, []string{"out of memory: killed process "},
			[]string{"Out of memory: Killed process 12 (java)"}},
		{"an alternation takes a literal from each branch", `(?i)(soft|hard) lockup`, []string{" lockup"},
			[]string{"BUG: soft lockup", "HARD LOCKUP"}},
		{"an alternation of whole literals gives each", `EXT4-fs error|XFS \(\w+\): Corruption`, []string{"ext4-fs error", "): corruption"},
			[]string{"EXT4-fs error (device vda1)", "XFS (vdb): Corruption detected"}},
		{"an optional part is no literal", `(foo)?\d+`, nil, []string{"12"}},
		{"a short literal is not worth it", `\w+: \d+`, nil, []string{"a: 1"}},
		{"a repeat of at least one keeps the literal", `(abc){2,}x`, []string{"abc"}, []string{"abcabcx"}},
		{"a non-ASCII fold is folded", `(?i)ſsh failed`, []string{"ssh failed"}, []string{"SSH FAILED", "ſsh failed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := deriveLiterals(tt.pattern)
			if !slices.Equal(got, tt.want) {
				t.Errorf("deriveLiterals(%q) = %q, want %q", tt.pattern, got, tt.want)
			}
			if got == nil {
				return
			}
			for _, m := range tt.matches {
				if !containsAnyFolded(m, got) {
					t.Errorf("%q matches %q but contains none of %q", m, tt.pattern, got)
				}
			}
		})
	}
}

func TestMatchIsSafeForConcurrentUse(t *testing.T) {
	k := shippedKB(t)
	samples := allSamples(k)
	want := make([][]*Entry, len(samples))
	for i, s := range samples {
		want[i] = k.Match(s)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for g := range 4 {
		wg.Go(func() {
			for n := range 200 {
				i := (n*7 + g) % len(samples)
				if got := k.Match(samples[i]); !slices.Equal(got, want[i]) {
					errs <- ids(got)[0]
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("concurrent Match differed (first id %s)", e)
	}
}

func TestMatchDoesNotAllocateWhenNothingMatches(t *testing.T) {
	k := shippedKB(t)
	f := Finding{OS: "linux", Unit: "CRON", Message: "(root) CMD (   cd / && run-parts --report /etc/cron.hourly)"}
	if got := k.Match(f); got != nil {
		t.Fatalf("Match gave %q for a benign line", ids(got))
	}
	if n := testing.AllocsPerRun(100, func() { k.Match(f) }); n != 0 {
		t.Errorf("Match allocated %.1f times per call", n)
	}
}

func FuzzMatch(f *testing.F) {
	k := shippedKB(f)
	for _, s := range allSamples(k) {
		f.Add(s.Message, s.Unit, s.EventID)
	}
	f.Add("\u212Aernel panic", "KERNEL", uint32(41))
	f.Fuzz(func(t *testing.T, msg, unit string, ev uint32) {
		for _, fd := range []Finding{{Message: msg}, {OS: "linux", Unit: unit, Message: msg}, {OS: "windows", EventID: ev, Provider: unit, Message: msg}} {
			if got, want := k.Match(fd), matchNaive(k.entries, &fd); !slices.Equal(got, want) {
				t.Errorf("%+v: fast gave %q, naive %q", fd, ids(got), ids(want))
			}
		}
	})
}

// mixedCorpus is a deterministic stand-in for what a collector matches: the
// benign lines drawn at random, half Linux and half Windows whatever the
// sizes of the corpora, with about 2 % of lines taken from the entries'
// samples.
func mixedCorpus(t testing.TB, k *KB, n int) []Finding {
	t.Helper()
	var linux, windows []Finding
	for _, l := range readBenign(t) {
		if l.f.OS == "windows" {
			windows = append(windows, l.f)
		} else {
			linux = append(linux, l.f)
		}
	}
	samples := allSamples(k)
	rng := rand.New(rand.NewPCG(7, 11))
	out := make([]Finding, n)
	for i := range out {
		switch {
		case rng.IntN(50) == 0:
			out[i] = samples[rng.IntN(len(samples))]
		case rng.IntN(2) == 0 && len(windows) > 0:
			out[i] = windows[rng.IntN(len(windows))]
		default:
			out[i] = linux[rng.IntN(len(linux))]
		}
	}
	return out
}

func BenchmarkMatch(b *testing.B) {
	k := shippedKB(b)
	corpus := mixedCorpus(b, k, 100_000)
	var bytes int64
	for _, f := range corpus {
		bytes += int64(len(f.Message))
	}
	b.SetBytes(bytes / int64(len(corpus)))
	i := 0
	var cpu0 time.Duration
	for b.Loop() {
		if cpu0 == 0 {
			cpu0 = cpuTime()
		}
		k.Match(corpus[i])
		i++
		if i == len(corpus) {
			i = 0
		}
	}
	// lines/s is per wall second, as benchmarks go; lines/cpu-s counts
	// only the CPU this process got, which on a shared machine is the
	// per-core figure.
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
	b.ReportMetric(float64(b.N)/(cpuTime()-cpu0).Seconds(), "lines/cpu-s")
	b.ReportMetric(float64(k.Len()), "entries")
}

func BenchmarkMatchNaive(b *testing.B) {
	k := shippedKB(b)
	corpus := mixedCorpus(b, k, 100_000)
	i := 0
	for b.Loop() {
		f := corpus[i]
		matchNaive(k.entries, &f)
		i = (i + 1) % len(corpus)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}

func itoa(i int) string { return strconv.Itoa(i) }
