//go:build !windows

package winsvc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"
)

var errUnsupported = fmt.Errorf("windows services on %s: %w", runtime.GOOS, errors.ErrUnsupported)

// IsService reports whether the process was started by the Windows
// service manager; never, here.
func IsService() bool { return false }

// Run is Windows only.
func Run(string, *slog.Logger, func(context.Context, *slog.Logger) error) error {
	return errUnsupported
}

// Install is Windows only.
func Install(Service, *slog.Logger) error { return errUnsupported }

// Uninstall is Windows only.
func Uninstall(string, time.Duration) error { return errUnsupported }

// Query is Windows only.
func Query(string) (Status, error) { return Status{}, errUnsupported }
