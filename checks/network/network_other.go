//go:build !linux && !windows

package network

import (
	"context"
	"errors"
	"fmt"
	"runtime"
)

// none is the gatherer of OSes the agent does not support: every
// run is unknown.
type none struct{}

func newGatherer() gatherer { return none{} }

func (none) defaultRoutes(context.Context) ([]defaultRoute, error) {
	return nil, fmt.Errorf("routing table on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

func (none) link(context.Context, string) (ifaceLink, error) {
	return ifaceLink{}, fmt.Errorf("interfaces on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

func icmpHint() string { return "" }

func watch(context.Context, func()) error {
	return fmt.Errorf("route and link events on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}
