package guestagent

import (
	"runtime/debug"
	"testing"
)

func TestApplySelfLimitsSetsTheMemoryLimitUnlessGOMEMLIMITIsSet(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	cfg := Config{MemoryLimit: 20 << 20, Priority: PriorityNormal}

	t.Setenv("GOMEMLIMIT", "")
	ApplySelfLimits(cfg, discardLogger())
	if got := debug.SetMemoryLimit(-1); got != 20<<20 {
		t.Errorf("memory limit %d, want the configured 20 MiB", got)
	}

	debug.SetMemoryLimit(before)
	t.Setenv("GOMEMLIMIT", "64MiB")
	ApplySelfLimits(cfg, discardLogger())
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Errorf("memory limit %d with GOMEMLIMIT set, want it left at %d", got, before)
	}
}
