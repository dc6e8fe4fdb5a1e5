//go:build !linux && !windows

package firewall

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
)

type noSource struct{}

func newSource(*slog.Logger) source { return noSource{} }

func (noSource) gather(context.Context) (gathered, error) {
	return gathered{}, fmt.Errorf("firewall on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

func (noSource) watch(context.Context, func()) error {
	return fmt.Errorf("firewall on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}
