//go:build !linux && !windows

package resources

import (
	"context"
	"errors"
)

func (s psutilSource) procs(context.Context) ([]proc, error) {
	return nil, errors.ErrUnsupported
}

func (s psutilSource) procUser(context.Context, proc) string { return "" }

func (s psutilSource) psi(context.Context) *PSI { return nil }
