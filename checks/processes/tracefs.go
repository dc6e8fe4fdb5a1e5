package processes

import (
	"regexp"
	"strconv"
	"time"
)

// killSignals are the signals traced: those that end a process by
// default, or that a supervisor or the kernel sends to end one. SIGHUP is
// left out because daemons take it as "reload".
var killSignals = []int{2, 3, 4, 6, 7, 8, 9, 11, 15, 24, 25, 31}

// signalFilter is the tracepoint filter for killSignals.
func signalFilter() string {
	f := ""
	for i, s := range killSignals {
		if i > 0 {
			f += "||"
		}
		f += "sig==" + strconv.Itoa(s)
	}
	return f
}

// A trace_pipe line of the signal_generate event (include/trace/events/
// signal.h) with the default options: the sending task as comm-tid, the
// CPU, the irq/preempt flags (absent with the irq-info option off), the
// trace clock and the event:
//
//	kill-1240    [001] d..1.  3391.112233: signal_generate: sig=9 errno=0 code=0 comm=sleep pid=1234 grp=1 res=0
//
// Both comms may hold spaces and dashes, so the sender's is matched up to
// "-tid [cpu]" and the target's up to the fixed fields that end the line.
var signalLineRE = regexp.MustCompile(`^\s*(.*?)-(\d+)\s+(?:\(\s*[\d-]+\)\s+)?\[(\d+)\]\s+(?:\S{4,5}\s+)?\d+\.\d+: signal_generate: sig=(\d+) errno=(-?\d+) code=(-?\d+) comm=(.*) pid=(\d+) grp=(\d) res=(\d)\s*$`)

// parseSignalLine reads one trace_pipe line; other events and the
// "CPU:1 [LOST 12 EVENTS]" notes are not signals (false).
func parseSignalLine(line string, seen time.Time) (sigRecord, bool) {
	m := signalLineRE.FindStringSubmatch(line)
	if m == nil {
		return sigRecord{}, false
	}
	r := sigRecord{Seen: seen, From: m[1], To: m[7], Group: m[9] == "1"}
	r.FromPID, _ = strconv.Atoi(m[2])
	r.Sig, _ = strconv.Atoi(m[4])
	r.Errno, _ = strconv.Atoi(m[5])
	r.Code, _ = strconv.Atoi(m[6])
	r.ToPID, _ = strconv.Atoi(m[8])
	r.Res, _ = strconv.Atoi(m[10])
	return r, true
}
