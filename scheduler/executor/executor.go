// Package executor carries out the scheduler's moves: live migrations of
// one VM from its host to another. The scheduler publishes each move's
// outcome; an executor only does the migration and says how it went.
package executor

import (
	"context"
	"time"
)

// Result is how a completed migration went, as the hypervisor measured it;
// a zero field was not reported.
type Result struct {
	Duration time.Duration
	Downtime time.Duration
}

// Executor migrates one VM live from host from to host to. It returns when
// the migration has completed or failed; a failed migration leaves the VM
// running where it was whenever the hypervisor allows. Migrate never
// retries: the scheduler decides what to do next.
type Executor interface {
	// Name is the executor's name in outcomes and logs: "qmp", "libvirt".
	Name() string
	Migrate(ctx context.Context, vm, from, to string) (Result, error)
}
