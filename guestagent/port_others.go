//go:build !linux && !windows

package guestagent

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
)

func newPortTransport(Config, *slog.Logger) (Transport, error) {
	return nil, fmt.Errorf("virtio-serial on %s not implemented yet: %w", runtime.GOOS, errors.ErrUnsupported)
}
