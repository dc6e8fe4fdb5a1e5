//go:build !linux && !windows

package processes

import (
	"context"
	"errors"
	"fmt"
)

// none keeps the package building where the check has no
// gatherer; only the probes work there.
type none struct{}

func newSource(Config) source { return none{} }

func (none) processes(context.Context) ([]proc, error) {
	return nil, fmt.Errorf("process states are not sampled on this OS: %w", errors.ErrUnsupported)
}

func (none) cmdline(int) (string, error) { return "", errors.ErrUnsupported }

func (none) bootID() string { return "" }

func (none) units(context.Context, Config) ([]Unit, error) {
	return nil, fmt.Errorf("no service manager support on this OS: %w", errNoManager)
}
