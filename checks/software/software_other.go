//go:build !linux && !windows

package software

import (
	"context"
	"errors"
	"fmt"
)

func (s *Software) gatherOS(context.Context) ([]database, error) {
	return nil, fmt.Errorf("software: %w on this OS", errors.ErrUnsupported)
}

// Watch is not supported on this OS.
func (s *Software) Watch(context.Context, func()) error {
	return fmt.Errorf("software: watch: %w on this OS", errors.ErrUnsupported)
}
