//go:build windows

package checks

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc/mgr"
)

// processesSCM asks the service control manager about the watched
// services. Windows has no D, T or Z process states, so processes are not
// sampled.
type processesSCM struct{}

func newProcessesSource(ProcessesConfig) processesSource { return processesSCM{} }

func (processesSCM) processes(context.Context) ([]processesProc, error) {
	return nil, fmt.Errorf("windows has no D, T or Z process states: %w", errors.ErrUnsupported)
}

func (processesSCM) cmdline(int) (string, error) { return "", errors.ErrUnsupported }

// units queries every watched service with the least access that reads its
// status and configuration, so that the agent need not be an
// administrator. A service that does not exist is a unit in state
// not_found; one that cannot be queried is an error.
func (processesSCM) units(ctx context.Context, cfg ProcessesConfig) ([]ProcessesUnit, error) {
	if len(cfg.Services) == 0 {
		return nil, nil
	}
	h, err := windows.OpenSCManager(nil, nil, windows.SC_MANAGER_CONNECT)
	if err != nil {
		return nil, fmt.Errorf("open service control manager: %w", err)
	}
	defer windows.CloseServiceHandle(h)

	var (
		out  []ProcessesUnit
		errs []error
	)
	for _, name := range cfg.Services {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		u, err := processesQueryService(h, name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, u)
	}
	return out, errors.Join(errs...)
}

func processesQueryService(scm windows.Handle, name string) (ProcessesUnit, error) {
	p, err := windows.UTF16PtrFromString(name)
	if err != nil {
		return ProcessesUnit{}, fmt.Errorf("service %q: %w", name, err)
	}
	sh, err := windows.OpenService(scm, p, windows.SERVICE_QUERY_STATUS|windows.SERVICE_QUERY_CONFIG)
	if errors.Is(err, windows.ERROR_SERVICE_DOES_NOT_EXIST) {
		return ProcessesUnit{Name: name, Manager: "scm", State: "not_found", Watched: true}, nil
	}
	if err != nil {
		return ProcessesUnit{}, fmt.Errorf("open service %s: %w", name, err)
	}
	s := &mgr.Service{Name: name, Handle: sh}
	defer s.Close()
	st, err := s.Query()
	if err != nil {
		return ProcessesUnit{}, fmt.Errorf("query service %s: %w", name, err)
	}
	c, err := s.Config()
	if err != nil {
		return ProcessesUnit{}, fmt.Errorf("query config of service %s: %w", name, err)
	}
	return processesWindowsUnit(name, uint32(st.State), c.StartType, c.DelayedAutoStart, st.Win32ExitCode, st.ServiceSpecificExitCode), nil
}
