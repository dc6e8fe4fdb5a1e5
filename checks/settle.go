package checks

import (
	"context"
	"time"
)

// Settler is implemented by checks whose changes come in long bursts, such
// as a package manager rewriting its database many times in one upgrade.
// A trigger then waits until no trigger has come for quiet, but no longer
// than max after the first, so that one burst makes one run and a system
// that never goes quiet still gets one. The Runner's own short settle and
// minimum gap apply after it.
type Settler interface {
	Settle() (quiet, max time.Duration)
}

// waitQuiet waits as s asks after a trigger. It returns false when ctx
// ends first.
func waitQuiet(ctx context.Context, s Settler, triggered <-chan struct{}) bool {
	quiet, limit := s.Settle()
	if quiet <= 0 {
		return true
	}
	deadline := time.Now().Add(max(limit, quiet))
	t := time.NewTimer(quiet)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case <-triggered:
			t.Reset(min(quiet, time.Until(deadline)))
		}
	}
}
