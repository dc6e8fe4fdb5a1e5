package winsvc

import (
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/mgr"
)

// Query returns the state, start type and recovery actions of the
// installed service name.
func Query(name string) (Status, error) {
	m, err := mgr.Connect()
	if err != nil {
		return Status{}, fmt.Errorf("connect to the service manager: %w", err)
	}
	defer m.Disconnect()
	sv, err := m.OpenService(name)
	if err != nil {
		return Status{}, fmt.Errorf("open service %s: %w", name, err)
	}
	defer sv.Close()
	st, err := sv.Query()
	if err != nil {
		return Status{}, fmt.Errorf("query service %s: %w", name, err)
	}
	start, err := startType(sv)
	if err != nil {
		return Status{}, fmt.Errorf("read config of service %s: %w", name, err)
	}
	out := Status{State: stateName(st.State), StartType: startName(start)}
	actions, err := sv.RecoveryActions()
	if err == nil {
		var reset uint32
		reset, err = sv.ResetPeriod()
		out.ResetPeriod = time.Duration(reset) * time.Second
	}
	if err != nil {
		out.RecoveryErr = err
		return out, nil
	}
	for _, a := range actions {
		if a.Type == mgr.ServiceRestart {
			out.Restarts = append(out.Restarts, a.Delay)
		}
	}
	return out, nil
}

func stateName(s svc.State) string {
	switch s {
	case svc.Stopped:
		return "stopped"
	case svc.StartPending:
		return "start_pending"
	case svc.StopPending:
		return "stop_pending"
	case svc.Running:
		return "running"
	}
	return fmt.Sprintf("state_%d", s)
}

// startType reads the start type alone with QueryServiceConfig:
// mgr.Service.Config also asks QueryServiceConfig2 for levels that Wine
// answers with ERROR_INVALID_LEVEL.
func startType(sv *mgr.Service) (uint32, error) {
	n := uint32(1024)
	for {
		buf := make([]byte, n)
		qsc := (*windows.QUERY_SERVICE_CONFIG)(unsafe.Pointer(&buf[0]))
		err := windows.QueryServiceConfig(sv.Handle, qsc, n, &n)
		if err == nil {
			return qsc.StartType, nil
		}
		if err != windows.ERROR_INSUFFICIENT_BUFFER {
			return 0, err
		}
	}
}

func startName(t uint32) string {
	switch t {
	case mgr.StartAutomatic:
		return "automatic"
	case mgr.StartManual:
		return "manual"
	case mgr.StartDisabled:
		return "disabled"
	}
	return fmt.Sprintf("start_%d", t)
}
