package processes

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
)

// watched is the watch list that applies on this OS.
func watched(cfg Config) []string {
	if runtime.GOOS == "windows" {
		return cfg.Services
	}
	return cfg.Units
}

// trackUnits fills in Since where the service manager did not say
// when a unit entered its state, with the first sample that saw it there,
// and returns what to remember for the next sample.
func trackUnits(prev map[string]unitSeen, units []Unit, now time.Time) map[string]unitSeen {
	next := make(map[string]unitSeen, len(units))
	for i := range units {
		u := &units[i]
		s, ok := prev[u.Name]
		if !ok || s.State != u.State {
			s = unitSeen{State: u.State, Since: now}
		}
		next[u.Name] = s
		if u.Since == nil {
			since := s.Since
			u.Since = &since
		}
	}
	return next
}

// unitFindings judges units and services. Linux: a failed unit is
// crit when watched and warn otherwise; a watched unit activating,
// deactivating or reloading for stuckAfter is stuck. Windows: a watched
// service set to start automatically that is stopped is crit (a delayed
// automatic one only once stopped for stuckAfter, since it starts a while
// after boot); one in a *_pending state for stuckAfter is stuck. A watched
// name that does not exist is info.
func unitFindings(units []Unit, now time.Time, stuckAfter time.Duration) []protocol.Finding {
	var failed, stuck, missing []protocol.Finding
	for _, u := range units {
		var age time.Duration
		if u.Since != nil {
			age = now.Sub(*u.Since)
		}
		f := protocol.Finding{Code: CodeProcessesServiceFailed, Source: protocol.Clip(u.Name, protocol.MaxSourceLen)}
		if u.Since != nil {
			first, last := *u.Since, now
			f.First, f.Last = &first, &last
		}
		kind := "unit"
		if u.Manager == "scm" {
			kind = "service"
		}
		switch {
		case u.LoadState == "not-found" || u.State == "not_found":
			if !u.Watched {
				continue
			}
			f.Severity = protocol.SeverityInfo
			f.Message = fmt.Sprintf("watched %s %s does not exist", kind, u.Name)
			f.First, f.Last = nil, nil
			missing = append(missing, f)
		case u.Manager == "systemd" && u.State == "failed":
			f.Severity = protocol.SeverityWarn
			if u.Watched {
				f.Severity = protocol.SeverityCrit
			}
			f.Message = fmt.Sprintf("unit %s failed (%s)", u.Name, u.SubState)
			if u.Since != nil {
				f.Message += fmt.Sprintf(" %s ago", ageSince(now, *u.Since))
			}
			failed = append(failed, f)
		case u.Manager == "systemd" && u.Watched && (u.State == "activating" || u.State == "deactivating" || u.State == "reloading") && u.Since != nil && age >= stuckAfter:
			f.Severity = protocol.SeverityWarn
			f.Message = fmt.Sprintf("unit %s stuck %s (%s) for %s", u.Name, u.State, u.SubState, ageSince(now, *u.Since))
			stuck = append(stuck, f)
		case u.Manager == "scm" && u.Watched && u.State == "stopped" &&
			(u.StartType == "auto" || u.StartType == "auto_delayed" && u.Since != nil && age >= stuckAfter):
			f.Severity = protocol.SeverityCrit
			f.Message = fmt.Sprintf("service %s is set to start automatically but is stopped", u.Name)
			if u.ExitCode != 0 {
				f.Message += fmt.Sprintf(", exit code %d", u.ExitCode)
			}
			failed = append(failed, f)
		case u.Manager == "scm" && u.Watched && strings.HasSuffix(u.State, "_pending") && u.Since != nil && age >= stuckAfter:
			f.Severity = protocol.SeverityWarn
			f.Message = fmt.Sprintf("service %s stuck in %s for %s", u.Name, strings.ToUpper(u.State), ageSince(now, *u.Since))
			stuck = append(stuck, f)
		}
	}
	all := append(append(failed, stuck...), missing...)
	return each(all, func(f protocol.Finding) protocol.Finding { return f }, func(n int) protocol.Finding {
		return protocol.Finding{Code: CodeProcessesServiceFailed, Severity: protocol.SeverityWarn, Count: uint64(n),
			Message: fmt.Sprintf("%d more units or services failed, stuck or missing", n)}
	})
}

// windowsUnit maps a Windows service's status and configuration,
// as QueryServiceStatusEx and QueryServiceConfig give them, to a unit. The
// numbers are those of winsvc.h.
func windowsUnit(name string, state, startType uint32, delayed bool, exitCode, serviceExitCode uint32) Unit {
	states := map[uint32]string{
		1: "stopped", 2: "start_pending", 3: "stop_pending", 4: "running",
		5: "continue_pending", 6: "pause_pending", 7: "paused",
	}
	starts := map[uint32]string{0: "boot", 1: "system", 2: "auto", 3: "manual", 4: "disabled"}
	u := Unit{Name: name, Manager: "scm", State: states[state], StartType: starts[startType], Watched: true}
	if u.State == "" {
		u.State = "state_" + strconv.FormatUint(uint64(state), 10)
	}
	if u.StartType == "" {
		u.StartType = "start_" + strconv.FormatUint(uint64(startType), 10)
	}
	if u.StartType == "auto" && delayed {
		u.StartType = "auto_delayed"
	}
	u.ExitCode = exitCode
	if exitCode == 1066 { // ERROR_SERVICE_SPECIFIC_ERROR: the service's own code says more
		u.ExitCode = serviceExitCode
	}
	return u
}

// systemdUnitName completes a unit name the way systemctl does: a
// name without a type suffix is a service.
func systemdUnitName(name string) string {
	for _, t := range []string{".service", ".socket", ".target", ".device", ".mount", ".automount", ".swap", ".path", ".timer", ".slice", ".scope"} {
		if strings.HasSuffix(name, t) {
			return name
		}
	}
	return name + ".service"
}

// systemdSinceProperty names the unit property (a timestamp in µs
// since the epoch) that says when a unit entered state.
func systemdSinceProperty(state string) string {
	switch state {
	case "activating":
		return "InactiveExitTimestamp"
	case "deactivating":
		return "ActiveExitTimestamp"
	case "failed", "inactive":
		return "InactiveEnterTimestamp"
	case "reloading", "active":
		return "StateChangeTimestamp"
	}
	return ""
}
