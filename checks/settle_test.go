package checks

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// settlingCheck is a watchedCheck that asks the Runner to wait for quiet.
type settlingCheck struct {
	watchedCheck
	quiet, max time.Duration
}

func (c *settlingCheck) Settle() (time.Duration, time.Duration) { return c.quiet, c.max }

func TestRunnerWaitsForASettlerToGoQuiet(t *testing.T) {
	tests := []struct {
		name string
		// triggers come every gap for burst, then stop
		gap, burst time.Duration
		// the triggered run starts this long after the first trigger
		want time.Duration
	}{
		{"a burst over 3 s with gaps under the quiet time makes one run once quiet", 300 * time.Millisecond, 3 * time.Second, 3*time.Second + 5*time.Second},
		{"triggers that never stop run by the maximum wait", time.Second, time.Hour, 30 * time.Second},
		{"one trigger runs after the quiet time", time.Second, 0, 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := &settlingCheck{watchedCheck: watchedCheck{trigger: make(chan func(), 1)}, quiet: 5 * time.Second, max: 30 * time.Second}
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				go Runner{Check: c, Interval: time.Hour, Timeout: time.Second, Report: func(Result) bool { return true }}.Run(ctx)
				trigger := <-c.trigger
				synctest.Wait()

				start := time.Now()
				done := make(chan struct{})
				defer func() { cancel(); <-done }()
				go func() {
					defer close(done)
					for end := start.Add(tt.burst); ; {
						trigger()
						if !time.Now().Before(end) {
							return
						}
						select {
						case <-ctx.Done():
							return
						case <-time.After(tt.gap):
						}
					}
				}()
				time.Sleep(tt.want - time.Millisecond)
				synctest.Wait()
				if runs, _ := c.counts(); runs != 1 {
					t.Fatalf("%d runs just before %v, want only the first", runs, tt.want)
				}
				time.Sleep(time.Second)
				synctest.Wait()
				runs, _ := c.counts()
				if runs != 2 {
					t.Fatalf("%d runs at %v, want 2", runs, tt.want+time.Second)
				}
				// The Runner's own 150 ms settle follows the quiet time.
				if got := c.runs[1].Sub(start); got < tt.want || got > tt.want+200*time.Millisecond {
					t.Errorf("triggered run began %v after the first trigger, want %v plus the runner's settle", got, tt.want)
				}
			})
		})
	}
}
