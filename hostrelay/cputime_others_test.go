//go:build !unix

package hostrelay

import "time"

func processCPU() (time.Duration, bool) { return 0, false }
