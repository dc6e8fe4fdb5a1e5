package processes

import (
	"strings"
	"time"
)

// unitObjectPrefix is where systemd puts its units on the bus, each named
// by its escaped unit name.
const unitObjectPrefix = "/org/freedesktop/systemd1/unit/"

// unitOfPath unescapes a unit's object path the way systemd escapes it:
// every byte but letters and digits (and not a leading digit) as _xx.
func unitOfPath(path string) (string, bool) {
	label, ok := strings.CutPrefix(path, unitObjectPrefix)
	if !ok || label == "" || strings.Contains(label, "/") {
		return "", false
	}
	var b strings.Builder
	for i := 0; i < len(label); i++ {
		if label[i] == '_' && i+2 < len(label) && isHexDigit(label[i+1]) && isHexDigit(label[i+2]) {
			b.WriteByte(hexValue(label[i+1])<<4 | hexValue(label[i+2]))
			i += 2
			continue
		}
		b.WriteByte(label[i])
	}
	return b.String(), true
}

func isHexDigit(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func hexValue(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// serviceExit reads what systemd says of a service whose main process
// ended: its unit properties (ActiveState, SubState) and service
// properties (Result, ExecMainCode, ExecMainStatus, ExecMainPID,
// ExecMainExitTimestamp, NRestarts). A restart after success is no
// event (false).
func serviceExit(unit string, watched bool, unitProps, svc map[string]any, seen time.Time) (ServiceExit, bool) {
	x := ServiceExit{Unit: unit, Watched: watched, Seen: seen}
	x.State, _ = unitProps["ActiveState"].(string)
	x.SubState, _ = unitProps["SubState"].(string)
	x.Result, _ = svc["Result"].(string)
	if x.State != "failed" && (x.SubState != "auto-restart" || x.Result == "success" || x.Result == "") {
		return x, false
	}
	status, _ := svc["ExecMainStatus"].(int32)
	x.Status = int(status)
	code, _ := svc["ExecMainCode"].(int32)
	switch code { // the CLD_* codes of waitid(2)
	case 1:
		x.Code = "exited"
	case 2:
		x.Code, x.Signal = "killed", signalName(x.Status)
	case 3:
		x.Code, x.Signal = "dumped", signalName(x.Status)
	}
	if pid, ok := svc["ExecMainPID"].(uint32); ok {
		x.MainPID = int(pid)
	}
	if us, ok := svc["ExecMainExitTimestamp"].(uint64); ok && us > 0 {
		t := time.UnixMicro(int64(us))
		x.Exited = &t
	}
	x.Restarts, _ = svc["NRestarts"].(uint32)
	return x, true
}
