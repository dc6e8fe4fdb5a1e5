//go:build !linux && !windows

package checks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
)

type fwOther struct{}

func fwNewSource(*slog.Logger) fwSource { return fwOther{} }

func (fwOther) gather(context.Context) (fwGathered, error) {
	return fwGathered{}, fmt.Errorf("firewall on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

func (fwOther) watch(context.Context, func()) error {
	return fmt.Errorf("firewall on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}
