//go:build !linux && !windows

package checks

import (
	"context"
	"errors"
	"fmt"
)

// processesNone keeps the package building where the check has no
// gatherer; only the probes work there.
type processesNone struct{}

func newProcessesSource(ProcessesConfig) processesSource { return processesNone{} }

func (processesNone) processes(context.Context) ([]processesProc, error) {
	return nil, fmt.Errorf("process states are not sampled on this OS: %w", errors.ErrUnsupported)
}

func (processesNone) cmdline(int) (string, error) { return "", errors.ErrUnsupported }

func (processesNone) units(context.Context, ProcessesConfig) ([]ProcessesUnit, error) {
	return nil, fmt.Errorf("no service manager support on this OS: %w", errProcessesNoManager)
}
