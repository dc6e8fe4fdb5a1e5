package collector

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
)

// run feeds samples to a fresh host record as applySample does and
// returns, per sample, the transitions as "kind/resource state".
func runSamples(cfg HintConfig, samples []protocol.HostUsage) []string {
	c := &Collector{cfg: Config{Hints: cfg}.withDefaults()}
	rec := &hostRecord{Host: "h1"}
	var out []string
	for i := range samples {
		hints, _ := c.applySample(rec, &samples[i], guestSignals{})
		var s []string
		for _, h := range hints {
			s = append(s, fmt.Sprintf("%s/%s %s", h.Kind, h.Resource, h.State))
		}
		out = append(out, strings.Join(s, ","))
	}
	return out
}

func usage(i int, cpu, mem float64, errs ...string) protocol.HostUsage {
	return protocol.HostUsage{V: 1, Host: "h1", TS: time.Unix(int64(1000+10*i), 0).UTC(), CPU: protocol.HostCPU{UsedPct: cpu}, Memory: protocol.HostMemory{UsedPct: mem}, Errors: errs}
}

func TestHintsFollowKOfN(t *testing.T) {
	tests := []struct {
		name string
		cfg  HintConfig
		cpu  []float64
		want []string
	}{
		{"three of five above 85 raise, two clear", HintConfig{}, []float64{90, 50, 90, 50, 90, 50, 50, 90},
			[]string{"", "", "", "", "overloaded/cpu raised", "overloaded/cpu cleared", "", ""}},
		{"exactly the threshold is not above it", HintConfig{}, []float64{85, 85, 85}, []string{"", "", ""}},
		{"two of two with k 2 n 2", HintConfig{Hits: 2, Window: 2}, []float64{90, 90, 50}, []string{"", "overloaded/cpu raised", "overloaded/cpu cleared"}},
		{"an idle host is underloaded after three", HintConfig{}, []float64{10, 10, 10, 50, 50, 50}, []string{"", "", "underloaded/cpu raised", "", "", "underloaded/cpu cleared"}},
		{"a host's own threshold rules", HintConfig{Hosts: map[string]Thresholds{"h1": {CPUHighPct: 95}}}, []float64{90, 90, 90, 96, 96, 96}, []string{"", "", "", "", "", "overloaded/cpu raised"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var samples []protocol.HostUsage
			for i, v := range tt.cpu {
				samples = append(samples, usage(i, v, 50))
			}
			got := runSamples(tt.cfg, samples)
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("transitions:\ngot  %q\nwant %q", got, tt.want)
			}
		})
	}
}

// The memory and underload hints count their own windows k of n as the
// CPU overload does: a test of interleaved samples, so that counting only
// a run of consecutive ones, or the wrong window, changes the transitions.
func TestMemoryAndUnderloadFollowKOfN(t *testing.T) {
	tests := []struct {
		name     string
		cpu, mem []float64
		want     []string
	}{
		{"three of five memory samples above 90 raise, two clear", []float64{50, 50, 50, 50, 50, 50}, []float64{95, 40, 95, 40, 95, 40},
			[]string{"", "", "", "", "overloaded/memory raised", "overloaded/memory cleared"}},
		{"three of five cpu samples below 20 raise underloaded, two clear", []float64{10, 50, 10, 50, 10, 50}, []float64{40, 40, 40, 40, 40, 40},
			[]string{"", "", "", "", "underloaded/cpu raised", "underloaded/cpu cleared"}},
		{"a busy memory sample is not a busy cpu one", []float64{50, 50, 50}, []float64{95, 95, 95},
			[]string{"", "", "overloaded/memory raised"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var samples []protocol.HostUsage
			for i := range tt.cpu {
				samples = append(samples, usage(i, tt.cpu[i], tt.mem[i]))
			}
			got := runSamples(HintConfig{}, samples)
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("transitions:\ngot  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestSampleWithoutTheFigureIsNotCounted(t *testing.T) {
	got := runSamples(HintConfig{}, []protocol.HostUsage{
		usage(0, 90, 50), usage(1, 90, 50),
		usage(2, 0, 50, "cpu times: no total"), usage(3, 0, 50, "cpu times: no total"), usage(4, 0, 50, "cpu times: no total"),
		usage(5, 90, 0, "memory: ENOENT"),
	})
	want := []string{"", "", "", "", "", "overloaded/cpu raised"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("transitions:\ngot  %q\nwant %q", got, want)
	}
}

func TestARedeliveredSampleChangesNothing(t *testing.T) {
	c := &Collector{cfg: Config{}.withDefaults()}
	rec := &hostRecord{Host: "h1"}
	u := usage(1, 90, 50)
	if _, changed := c.applySample(rec, &u, guestSignals{}); !changed {
		t.Fatal("first sample: unchanged")
	}
	old := usage(0, 90, 50)
	for _, again := range []protocol.HostUsage{u, old} {
		if _, changed := c.applySample(rec, &again, guestSignals{}); changed {
			t.Errorf("sample of %v after one of %v: changed the record", again.TS, u.TS)
		}
	}
	if len(rec.CPU) != 1 || len(rec.Mem) != 1 {
		t.Errorf("samples in the windows: got cpu %d, mem %d, want 1 each", len(rec.CPU), len(rec.Mem))
	}
}

func TestHintConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     HintConfig
		wantErr string
	}{
		{"the defaults are valid", HintConfig{}.withDefaults(), ""},
		{"low at or above high is refused", HintConfig{Thresholds: Thresholds{CPUHighPct: 50, CPULowPct: 50}, Hits: 3, Window: 5}, "not below"},
		{"a host's low above the fleet's high is refused", HintConfig{Thresholds: Thresholds{CPUHighPct: 60, CPULowPct: 20}, Hits: 3, Window: 5, Hosts: map[string]Thresholds{"h1": {CPULowPct: 70}}}, `host "h1"`},
		{"a percent over 100 is refused", HintConfig{Thresholds: Thresholds{CPUHighPct: 120, CPULowPct: 20}, Hits: 3, Window: 5}, "120%"},
		{"more hits than samples is refused", HintConfig{Thresholds: Thresholds{CPUHighPct: 85, CPULowPct: 20}, Hits: 6, Window: 5}, "6 of 5"},
		{"a host name with a newline is refused", HintConfig{Thresholds: Thresholds{CPUHighPct: 85, CPULowPct: 20}, Hits: 3, Window: 5, Hosts: map[string]Thresholds{"h\n1": {}}}, "control"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("got %v, want an error mentioning %q", err, tt.wantErr)
			}
		})
	}
}
