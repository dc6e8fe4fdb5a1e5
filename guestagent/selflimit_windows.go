package guestagent

import (
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sys/windows"
)

// processCPU returns the user and kernel CPU time of this process.
func processCPU() time.Duration {
	var creation, exit, kernel, user windows.Filetime
	if windows.GetProcessTimes(windows.CurrentProcess(), &creation, &exit, &kernel, &user) != nil {
		return 0
	}
	// FILETIME counts 100 ns units.
	ticks := func(f windows.Filetime) int64 { return int64(f.HighDateTime)<<32 | int64(f.LowDateTime) }
	return time.Duration((ticks(kernel) + ticks(user)) * 100)
}

// lowerPriority puts the process in the below-normal priority class, which
// lowers its threads' CPU priority; Windows has no I/O class to set
// without also lowering memory priority (background mode).
func lowerPriority(logger *slog.Logger) error {
	if err := windows.SetPriorityClass(windows.CurrentProcess(), windows.BELOW_NORMAL_PRIORITY_CLASS); err != nil {
		return fmt.Errorf("SetPriorityClass: %w", err)
	}
	logger.Info("priority_lowered", "class", "below_normal")
	return nil
}
