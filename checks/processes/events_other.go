//go:build !linux

package processes

import (
	"context"
	"errors"
	"fmt"
)

// Watch has nothing to watch here: service exits and OOM kills are
// followed on Linux only, so the check is polled.
func (p *Processes) Watch(ctx context.Context, trigger func()) error {
	return fmt.Errorf("processes: no service or OOM events on this OS: %w", errors.ErrUnsupported)
}
