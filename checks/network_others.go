//go:build !linux && !windows

package checks

import (
	"context"
	"errors"
	"fmt"
	"runtime"
)

// networkNone is the gatherer of OSes the agent does not support: every
// run is unknown.
type networkNone struct{}

func newNetworkGatherer() networkGatherer { return networkNone{} }

func (networkNone) defaultRoutes(context.Context) ([]networkRoute, error) {
	return nil, fmt.Errorf("routing table on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

func (networkNone) link(context.Context, string) (networkLink, error) {
	return networkLink{}, fmt.Errorf("interfaces on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

func networkICMPHint() string { return "" }

func networkWatch(context.Context, func()) error {
	return fmt.Errorf("route and link events on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}
