package guestagent

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Low priority on Linux: nice 10, and I/O in the best-effort class at its
// lowest level (7). The idle I/O class is not used: under steady I/O load
// it can starve the spool's fsync without bound, and undelivered data
// would wait on it.
const (
	lowNice        = 10
	ioprioWhoProc  = 1 // IOPRIO_WHO_PROCESS
	ioprioClassBE  = 2 // IOPRIO_CLASS_BE
	ioprioClassSh  = 13
	lowIOPrioLevel = 7
)

// lowerPriority sets nice and I/O priority of every thread the process
// has. On Linux both are per thread and a new thread inherits them from
// the one that creates it, so once every existing thread is lowered the
// Go runtime's later threads are too.
func lowerPriority(logger *slog.Logger) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("list threads: %w", err)
	}
	var errs []error
	ioprio := uintptr(ioprioClassBE<<ioprioClassSh | lowIOPrioLevel)
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.Setpriority(unix.PRIO_PROCESS, tid, lowNice); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("setpriority thread %d: %w", tid, err))
		}
		if _, _, e := unix.Syscall(unix.SYS_IOPRIO_SET, ioprioWhoProc, uintptr(tid), ioprio); e != 0 && e != unix.ESRCH {
			errs = append(errs, fmt.Errorf("ioprio_set thread %d: %w", tid, e))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	logger.Info("priority_lowered", "nice", lowNice, "io_class", "best-effort", "io_level", lowIOPrioLevel, "threads", len(tasks))
	return nil
}
