//go:build !linux && !windows

package guestagent

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
)

func lowerPriority(*slog.Logger) error {
	return fmt.Errorf("lowering priority on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}
