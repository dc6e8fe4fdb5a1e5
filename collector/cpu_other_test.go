//go:build !linux

package collector_test

import "time"

// selfCPU and processCPU are measured on Linux only; zero leaves the
// per-CPU metrics out.
func selfCPU() time.Duration { return 0 }

func processCPU(int) time.Duration { return 0 }
