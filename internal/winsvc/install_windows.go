package winsvc

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/eventlog"
	"golang.org/x/sys/windows/svc/mgr"
)

// ErrExists means a service of that name is already installed.
var ErrExists = errors.New("service already installed")

// Install creates the service, started automatically at boot, with the
// recovery actions of Restarts, and registers the event log source of the
// same name. A step that fails is reported with what was done before it
// left in place, so the error says what to clean up. Making the recovery
// actions cover failures the service reports itself, not only crashes, is
// logged as a warning when it fails (Wine answers ERROR_INVALID_LEVEL): the
// restarts still apply to a crash.
func Install(s Service, logger *slog.Logger) error {
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("connect to the service manager: %w", err)
	}
	defer m.Disconnect()
	if old, err := m.OpenService(s.Name); err == nil {
		old.Close()
		return fmt.Errorf("%s: %w", s.Name, ErrExists)
	}
	sv, err := m.CreateService(s.Name, s.Exe, mgr.Config{
		DisplayName:  s.DisplayName,
		Description:  s.Description,
		StartType:    mgr.StartAutomatic,
		ErrorControl: mgr.ErrorNormal,
	}, s.Args...)
	if err != nil {
		return fmt.Errorf("create service %s: %w", s.Name, err)
	}
	defer sv.Close()
	if err := sv.SetRecoveryActions(restartActions(), uint32(ResetPeriod.Seconds())); err != nil {
		return fmt.Errorf("service %s created, but setting its recovery actions failed: %w", s.Name, err)
	}
	if err := sv.SetRecoveryActionsOnNonCrashFailures(true); err != nil {
		logger.Warn("recovery_on_reported_failures_not_set", "service", s.Name, "err", err)
	}
	err = eventlog.InstallAsEventCreate(s.Name, eventlog.Error|eventlog.Warning|eventlog.Info)
	// A source left by an earlier install is the one wanted.
	if err != nil && !isExistsErr(err) {
		return fmt.Errorf("service %s created, but registering its event log source failed: %w", s.Name, err)
	}
	return nil
}

// isExistsErr matches eventlog.Install's error for a source that is
// registered already, which wraps no error value to test with errors.Is.
func isExistsErr(err error) bool {
	return strings.HasSuffix(err.Error(), "registry key already exists")
}

// Uninstall stops the service if it runs, waiting up to timeout, deletes it
// and removes its event log source.
func Uninstall(name string, timeout time.Duration) error {
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("connect to the service manager: %w", err)
	}
	defer m.Disconnect()
	sv, err := m.OpenService(name)
	if err != nil {
		return fmt.Errorf("open service %s: %w", name, err)
	}
	defer sv.Close()
	if err := stop(sv, timeout); err != nil {
		return fmt.Errorf("stop service %s: %w", name, err)
	}
	if err := sv.Delete(); err != nil {
		return fmt.Errorf("delete service %s: %w", name, err)
	}
	if err := eventlog.Remove(name); err != nil && !errors.Is(err, windows.ERROR_FILE_NOT_FOUND) {
		return fmt.Errorf("service %s deleted, but removing its event log source failed: %w", name, err)
	}
	return nil
}

// stop asks a running service to stop and polls until it has.
func stop(sv *mgr.Service, timeout time.Duration) error {
	st, err := sv.Query()
	if err != nil {
		return err
	}
	if st.State == svc.Stopped {
		return nil
	}
	if _, err := sv.Control(svc.Stop); err != nil && !errors.Is(err, windows.ERROR_SERVICE_NOT_ACTIVE) {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		st, err := sv.Query()
		if err != nil {
			return err
		}
		if st.State == svc.Stopped {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still in state %d after %v", st.State, timeout)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
