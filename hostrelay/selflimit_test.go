package hostrelay

import (
	"io"
	"log/slog"
	"math"
	"runtime/debug"
	"testing"
)

func TestApplyMemoryLimitHonoursGOMEMLIMITUnlessTheFlagIsGiven(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(math.MaxInt64))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tests := []struct {
		name  string
		env   string
		limit int64
		want  int64
	}{
		{"the default applies when GOMEMLIMIT is unset", "", 0, DefaultMemoryLimit},
		{"GOMEMLIMIT wins over the default", "200MiB", 0, math.MaxInt64},
		{"a given limit wins over GOMEMLIMIT", "200MiB", 64 << 20, 64 << 20},
		{"a negative limit leaves the runtime alone", "", -1, math.MaxInt64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("GOMEMLIMIT", tt.env)
			debug.SetMemoryLimit(math.MaxInt64)
			ApplyMemoryLimit(Config{MemoryLimit: tt.limit}, log)
			if got := debug.SetMemoryLimit(-1); got != tt.want {
				t.Errorf("memory limit = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestMemoryLimitFlagReadsSizes(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"94371840", 94371840, true},
		{"90MiB", 90 << 20, true},
		{"1GiB", 1 << 30, true},
		{"0", -1, true},
		{"-1", 0, false},
		{"lots", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var got int64
			err := MemoryLimitFlag(&got).Set(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("Set(%q) error = %v, want ok %v", tt.in, err, tt.ok)
			}
			if tt.ok && got != tt.want {
				t.Errorf("Set(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}
