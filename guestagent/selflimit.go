package guestagent

import (
	"log/slog"
	"os"
	"runtime/debug"
)

// ApplySelfLimits sets the Go runtime's soft memory limit, unless the
// GOMEMLIMIT environment variable has set one, and lowers the process's
// CPU and I/O priority when cfg asks for low priority. Neither failure
// stops the agent: it is logged.
func ApplySelfLimits(cfg Config, logger *slog.Logger) {
	if v := os.Getenv("GOMEMLIMIT"); v != "" {
		logger.Info("memory_limit_from_env", "GOMEMLIMIT", v)
	} else {
		debug.SetMemoryLimit(cfg.MemoryLimit)
		logger.Info("memory_limit_set", "bytes", cfg.MemoryLimit)
	}
	if cfg.Priority == PriorityLow {
		if err := lowerPriority(logger); err != nil {
			logger.Warn("priority_not_lowered", "err", err)
		}
	}
}
