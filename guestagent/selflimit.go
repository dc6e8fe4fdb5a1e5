package guestagent

import (
	"log/slog"
	"os"
	"runtime/debug"
)

// gcPercent is the agent's GOGC. Its live heap is under 1 MB when idle,
// and at Go's default of 100 the heap still grows to the 4 MB floor
// before each collection; 25 puts that floor at 1 MB, about 1 MB less
// resident, for a few more sub-millisecond collections a minute.
const gcPercent = 25

// ApplySelfLimits sets the Go runtime's soft memory limit, unless the
// GOMEMLIMIT environment variable has set one, and its GC percent,
// unless GOGC has; and it lowers the process's
// CPU and I/O priority when cfg asks for low priority. Neither failure
// stops the agent: it is logged.
func ApplySelfLimits(cfg Config, logger *slog.Logger) {
	if v := os.Getenv("GOMEMLIMIT"); v != "" {
		logger.Info("memory_limit_from_env", "GOMEMLIMIT", v)
	} else {
		debug.SetMemoryLimit(cfg.MemoryLimit)
		logger.Info("memory_limit_set", "bytes", cfg.MemoryLimit)
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if cfg.Priority == PriorityLow {
		if err := lowerPriority(logger); err != nil {
			logger.Warn("priority_not_lowered", "err", err)
		}
	}
}
