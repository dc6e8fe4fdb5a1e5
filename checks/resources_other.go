//go:build !linux && !windows

package checks

import (
	"context"
	"errors"
)

func (s psutilSource) procs(context.Context) ([]resProc, error) {
	return nil, errors.ErrUnsupported
}

func (s psutilSource) procUser(context.Context, resProc) string { return "" }

func (s psutilSource) psi(context.Context) *ResourcesPSI { return nil }
