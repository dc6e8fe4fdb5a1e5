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

func TestApplySelfLimitsLowersGOGCUnlessItIsSet(t *testing.T) {
	before := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(before) })
	cfg := Config{MemoryLimit: 20 << 20, Priority: PriorityNormal}
	limit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(limit) })

	t.Setenv("GOGC", "")
	ApplySelfLimits(cfg, discardLogger())
	if got := debug.SetGCPercent(100); got != gcPercent {
		t.Errorf("GC percent %d, want the agent's %d", got, gcPercent)
	}

	t.Setenv("GOGC", "100")
	ApplySelfLimits(cfg, discardLogger())
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GC percent %d with GOGC=100 set, want it left at 100", got)
	}
}
