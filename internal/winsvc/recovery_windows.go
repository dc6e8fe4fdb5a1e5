package winsvc

import (
	"fmt"
	"log/slog"
	"slices"

	"golang.org/x/sys/windows/svc/mgr"
)

// restartActions are the recovery actions of Restarts.
func restartActions() []mgr.RecoveryAction {
	actions := make([]mgr.RecoveryAction, 0, len(Restarts))
	for _, d := range Restarts {
		actions = append(actions, mgr.RecoveryAction{Type: mgr.ServiceRestart, Delay: d})
	}
	return actions
}

// hasRestarts says whether the service's recovery actions are those of
// Restarts with ResetPeriod.
func hasRestarts(sv *mgr.Service) (bool, error) {
	actions, err := sv.RecoveryActions()
	if err != nil {
		return false, err
	}
	reset, err := sv.ResetPeriod()
	if err != nil {
		return false, err
	}
	return slices.Equal(actions, restartActions()) && reset == uint32(ResetPeriod.Seconds()), nil
}

// ensureRecovery gives the running service name the recovery actions of
// Restarts when it lacks them: an MSI cannot set them (wixl has no
// ServiceConfigFailureActions), so a service the MSI installed gets them at
// its first start. Actions an administrator set differently are kept when
// they can be read; when they cannot (Wine answers ERROR_INVALID_LEVEL),
// ours are set, since an unreadable set may as well be none. It returns
// what it did, for the event log, or "" when nothing was needed. Nothing
// here stops the service: a failure is logged as a warning.
func ensureRecovery(name string, logger *slog.Logger) string {
	done, err := setRecovery(name)
	if err != nil {
		logger.Warn("recovery_actions_not_set", "service", name, "err", err)
		return ""
	}
	if done != "" {
		logger.Info("recovery_actions_set", "service", name, "why", done)
		return fmt.Sprintf("service %s recovery actions set: restart after %v, reset after %v (%s)", name, Restarts, ResetPeriod, done)
	}
	return ""
}

// setRecovery sets the recovery actions if needed and says why it did.
func setRecovery(name string) (string, error) {
	m, err := mgr.Connect()
	if err != nil {
		return "", fmt.Errorf("connect to the service manager: %w", err)
	}
	defer m.Disconnect()
	sv, err := m.OpenService(name)
	if err != nil {
		return "", fmt.Errorf("open service %s: %w", name, err)
	}
	defer sv.Close()
	why := "there were none"
	ok, err := hasRestarts(sv)
	switch {
	case err != nil:
		why = "they could not be read: " + err.Error()
	case ok:
		return "", nil
	default:
		if actions, _ := sv.RecoveryActions(); len(actions) > 0 {
			return "", nil
		}
	}
	if err := sv.SetRecoveryActions(restartActions(), uint32(ResetPeriod.Seconds())); err != nil {
		return "", fmt.Errorf("set recovery actions of %s: %w", name, err)
	}
	return why, nil
}
