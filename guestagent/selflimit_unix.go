//go:build unix

package guestagent

import (
	"time"

	"golang.org/x/sys/unix"
)

// processCPU returns the user and system CPU time of this process and of
// its children that have been waited for (a finished rpm -qa counts; a
// journalctl still running does not).
func processCPU() time.Duration {
	var total time.Duration
	for _, who := range []int{unix.RUSAGE_SELF, unix.RUSAGE_CHILDREN} {
		var ru unix.Rusage
		if unix.Getrusage(who, &ru) == nil {
			total += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	return total
}
