package winsvc

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/eventlog"
)

// stopWait is the wait hint reported while stopping: the agent closes its
// port and spool within a few seconds.
const stopWait = 20 * time.Second

// IsService reports whether the service manager started this process. An
// error in finding out counts as no: the process then runs in the
// foreground, where it can say why.
//
// svc.IsWindowsService also wants the parent in session 0, which Wine's
// services.exe is not; a parent that is services.exe is enough here, since
// services.exe starts nothing but services.
func IsService() bool {
	if ok, err := svc.IsWindowsService(); err == nil && ok {
		return true
	}
	return parentIsServices()
}

func parentIsServices() bool {
	var pbi windows.PROCESS_BASIC_INFORMATION
	if err := windows.NtQueryInformationProcess(windows.CurrentProcess(), windows.ProcessBasicInformation,
		unsafe.Pointer(&pbi), uint32(unsafe.Sizeof(pbi)), nil); err != nil {
		return false
	}
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, uint32(pbi.InheritedFromUniqueProcessId))
	if err != nil {
		return false
	}
	defer windows.CloseHandle(h)
	buf := make([]uint16, windows.MAX_LONG_PATH)
	n := uint32(len(buf))
	if err := windows.QueryFullProcessImageName(h, 0, &buf[0], &n); err != nil {
		return false
	}
	name := windows.UTF16ToString(buf[:n])
	if i := strings.LastIndexAny(name, `\/`); i >= 0 {
		name = name[i+1:]
	}
	return strings.EqualFold(name, "services.exe")
}

// Run runs run as the service name until the service manager asks it to
// stop or the system shuts down, then cancels its context and waits for
// it. The logger passed to run also copies warnings and errors to the
// event log under the source name (when Install registered it). Run
// returns run's error; a run that fails makes the service stop with an
// error, which the recovery actions answer with a restart. Before serving,
// Run gives the service the recovery actions of Restarts if it has none
// (as after an MSI install), warning when it cannot.
func Run(name string, logger *slog.Logger, run func(ctx context.Context, logger *slog.Logger) error) error {
	el, err := eventlog.Open(name)
	if err != nil {
		logger.Warn("event_log_unavailable", "source", name, "err", err)
		el = nil
	} else {
		defer el.Close()
		logger = slog.New(slog.NewMultiHandler(logger.Handler(), newEventHandler(el, slog.LevelWarn)))
	}
	recovery := ensureRecovery(name, logger)
	h := &handler{name: name, el: el, logger: logger, run: run}
	if recovery != "" {
		h.event(eventRecoverySet, "info", recovery)
	}
	if err := svc.Run(name, h); err != nil {
		return fmt.Errorf("run service %s: %w", name, err)
	}
	return h.err
}

type handler struct {
	name   string
	el     *eventlog.Log
	logger *slog.Logger
	run    func(ctx context.Context, logger *slog.Logger) error
	err    error
}

// Execute is called by svc.Run on the service's own goroutine.
func (h *handler) Execute(_ []string, r <-chan svc.ChangeRequest, changes chan<- svc.Status) (bool, uint32) {
	const accepts = svc.AcceptStop | svc.AcceptShutdown
	changes <- svc.Status{State: svc.StartPending, WaitHint: uint32((10 * time.Second).Milliseconds())}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.run(ctx, h.logger) }()

	running := svc.Status{State: svc.Running, Accepts: accepts}
	changes <- running
	h.event(eventStarted, "info", "service "+h.name+" running")
	h.logger.Info("service_running", "service", h.name)
	for {
		select {
		case err := <-done:
			// The agent ended without being asked to: report a failure,
			// so that the recovery actions restart it.
			h.err = err
			if err == nil {
				err = fmt.Errorf("agent ended by itself")
			}
			// Straight to the event log: through h.logger it would be
			// written there twice.
			h.event(eventFailed, "error", "service "+h.name+" failed: "+err.Error())
			return true, 1
		case c := <-r:
			switch c.Cmd {
			case svc.Interrogate:
				changes <- c.CurrentStatus
			case svc.Stop, svc.Shutdown:
				changes <- svc.Status{State: svc.StopPending, WaitHint: uint32(stopWait.Milliseconds())}
				h.logger.Info("service_stopping", "service", h.name, "cmd", cmdName(c.Cmd))
				cancel()
				h.err = <-done
				if h.err != nil {
					h.event(eventFailed, "error", "service "+h.name+" stopped with an error: "+h.err.Error())
					return true, 1
				}
				h.event(eventStopped, "info", "service "+h.name+" stopped")
				return false, 0
			default:
				h.logger.Warn("service_request_ignored", "service", h.name, "cmd", uint32(c.Cmd))
			}
		}
	}
}

func (h *handler) event(id uint32, kind, msg string) {
	if h.el == nil {
		return
	}
	var err error
	switch kind {
	case "error":
		err = h.el.Error(id, msg)
	default:
		err = h.el.Info(id, msg)
	}
	if err != nil {
		h.logger.Debug("event_log_write_failed", "err", err)
	}
}

func cmdName(c svc.Cmd) string {
	if c == svc.Shutdown {
		return "shutdown"
	}
	return "stop"
}
