//go:build windows

package processes

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc/mgr"
)

// scm asks the service control manager about the watched
// services. Windows has no D, T or Z process states, so processes are not
// sampled.
type scm struct{}

func newSource(Config) source { return scm{} }

func (scm) processes(context.Context) ([]proc, error) {
	return nil, fmt.Errorf("windows has no D, T or Z process states: %w", errors.ErrUnsupported)
}

func (scm) cmdline(int) (string, error) { return "", errors.ErrUnsupported }

func (scm) bootID() string { return "" }

// units queries every watched service with the least access that reads its
// status and configuration, so that the agent need not be an
// administrator. A service that does not exist is a unit in state
// not_found; one that cannot be queried is an error.
func (scm) units(ctx context.Context, cfg Config) ([]Unit, error) {
	if len(cfg.Services) == 0 {
		return nil, nil
	}
	h, err := windows.OpenSCManager(nil, nil, windows.SC_MANAGER_CONNECT)
	if err != nil {
		return nil, fmt.Errorf("open service control manager: %w", err)
	}
	defer windows.CloseServiceHandle(h)

	var (
		out  []Unit
		errs []error
	)
	for _, name := range cfg.Services {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		u, err := queryService(h, name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, u)
	}
	return out, errors.Join(errs...)
}

func queryService(scm windows.Handle, name string) (Unit, error) {
	p, err := windows.UTF16PtrFromString(name)
	if err != nil {
		return Unit{}, fmt.Errorf("service %q: %w", name, err)
	}
	sh, err := windows.OpenService(scm, p, windows.SERVICE_QUERY_STATUS|windows.SERVICE_QUERY_CONFIG)
	if errors.Is(err, windows.ERROR_SERVICE_DOES_NOT_EXIST) {
		return Unit{Name: name, Manager: "scm", State: "not_found", Watched: true}, nil
	}
	if err != nil {
		return Unit{}, fmt.Errorf("open service %s: %w", name, err)
	}
	s := &mgr.Service{Name: name, Handle: sh}
	defer s.Close()
	st, err := s.Query()
	if err != nil {
		return Unit{}, fmt.Errorf("query service %s: %w", name, err)
	}
	c, err := s.Config()
	if err != nil {
		return Unit{}, fmt.Errorf("query config of service %s: %w", name, err)
	}
	return windowsUnit(name, uint32(st.State), c.StartType, c.DelayedAutoStart, st.Win32ExitCode, st.ServiceSpecificExitCode), nil
}
