// Package pause waits for a duration or a cancelled context, whichever comes
// first: the one sleep every retry and backoff loop in guestdiag uses, so
// none of them outlives its context.
package pause

import (
	"context"
	"time"
)

// For waits d and returns nil, or returns ctx's error as soon as ctx ends.
func For(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
