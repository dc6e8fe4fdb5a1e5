//go:build !linux

package kb

import "time"

// cpuTime is not measured off Linux; figures fall back to wall time.
var start = time.Now()

func cpuTime() time.Duration { return time.Since(start) }
