package processes

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
)

// Finding codes raised from events rather than from a sample.
const (
	CodeProcessesServiceRestarted = "proc.service_restarted"
	CodeProcessesOOMKilled        = "proc.oom_killed"
)

// Bounds of the event log: events beyond maxEvents before a run takes them
// are counted, not kept; signals are kept for senderWindow so that the
// death a signal caused can find it.
const (
	maxEvents     = 64
	maxSignals    = 256
	senderWindow  = 30 * time.Second
	oomPairWindow = 5 * time.Second
)

// ServiceExit is a unit's main process ending badly: the unit failed, or
// systemd is restarting it (sub state auto-restart) after a result other
// than success. Code and Status are systemd's ExecMainCode and
// ExecMainStatus: "killed" or "dumped" with a signal number, "exited" with
// an exit status.
type ServiceExit struct {
	Unit     string     `json:"unit"`
	Watched  bool       `json:"watched"`
	Seen     time.Time  `json:"seen"`
	Exited   *time.Time `json:"exited,omitempty"`
	State    string     `json:"state"`
	SubState string     `json:"sub_state"`
	Result   string     `json:"result,omitempty"`
	MainPID  int        `json:"main_pid,omitempty"`
	Code     string     `json:"code,omitempty"`
	Status   int        `json:"status"`
	Signal   string     `json:"signal,omitempty"`
	Restarts uint32     `json:"restarts"`
	Sender   *Sender    `json:"sender,omitempty"`
}

// OOMKill is one process the kernel's OOM killer killed. Sizes are in
// KiB as the kernel prints them; the memory_* bytes are the cgroup's
// (cgroup v2) when the agent read them, just after the kill.
type OOMKill struct {
	Seen        time.Time  `json:"seen"`
	At          *time.Time `json:"at,omitempty"`
	PID         int        `json:"pid,omitempty"`
	Name        string     `json:"name,omitempty"`
	UID         int        `json:"uid"`
	TotalVMKB   uint64     `json:"total_vm_kb,omitempty"`
	AnonRSSKB   uint64     `json:"anon_rss_kb,omitempty"`
	FileRSSKB   uint64     `json:"file_rss_kb,omitempty"`
	ShmemRSSKB  uint64     `json:"shmem_rss_kb,omitempty"`
	OOMScoreAdj int        `json:"oom_score_adj"`
	Constraint  string     `json:"constraint,omitempty"`
	Cgroup      string     `json:"cgroup,omitempty"`
	LimitCgroup string     `json:"limit_cgroup,omitempty"`
	Unit        string     `json:"unit,omitempty"`
	MemCurrent  *uint64    `json:"memory_current_bytes,omitempty"`
	MemMax      *uint64    `json:"memory_max_bytes,omitempty"`
	MemPeak     *uint64    `json:"memory_peak_bytes,omitempty"`
	Kills       uint64     `json:"cgroup_oom_kills,omitempty"`
	Source      string     `json:"source"`
	Sender      *Sender    `json:"sender,omitempty"`
}

// Sender is the task that generated a signal, as the signal_generate
// tracepoint names it: PID is the sending thread's id, Code the siginfo
// code (0 kill(2), -6 tkill, 128 the kernel, above 0 a fault).
type Sender struct {
	Comm string `json:"comm"`
	PID  int    `json:"pid"`
	Code int    `json:"code"`
}

// sigRecord is one signal_generate event.
type sigRecord struct {
	Seen      time.Time
	Sig, Code int
	Errno     int
	From      string // comm of the sender
	FromPID   int
	To        string
	ToPID     int
	Group     bool
	Res       int // 0 delivered, 1 ignored, 2 already pending, ...
}

// events keeps what the watchers saw until a run that reported it is
// stored. take hands a run what there is and commit drops what that run
// took, so a result that was not stored reports the same events again.
type events struct {
	mu       sync.Mutex
	exits    []ServiceExit
	ooms     []OOMKill
	dropped  int
	signals  []sigRecord
	taken    [3]int // exits, ooms, dropped
	lastExit map[string]string
}

func (e *events) addExit(x ServiceExit) {
	e.mu.Lock()
	defer e.mu.Unlock()
	// systemd sends one change for the unit and one for the service; both
	// lead here with the same exit.
	id := x.State + x.SubState + strconv.Itoa(x.MainPID) + fmt.Sprint(x.Exited) + strconv.FormatUint(uint64(x.Restarts), 10)
	if e.lastExit == nil {
		e.lastExit = map[string]string{}
	}
	if e.lastExit[x.Unit] == id {
		return
	}
	e.lastExit[x.Unit] = id
	if len(e.exits)+len(e.ooms) >= maxEvents {
		e.dropped++
		return
	}
	e.exits = append(e.exits, x)
}

func (e *events) addOOM(o OOMKill) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.exits)+len(e.ooms) >= maxEvents {
		e.dropped++
		return
	}
	e.ooms = append(e.ooms, o)
}

func (e *events) addSignal(s sigRecord) {
	e.mu.Lock()
	defer e.mu.Unlock()
	cut := 0
	for cut < len(e.signals) && (s.Seen.Sub(e.signals[cut].Seen) > senderWindow || len(e.signals)-cut >= maxSignals) {
		cut++
	}
	e.signals = append(e.signals[cut:], s)
}

// take returns copies of the pending events, each with the sender of the
// signal that killed it when one was traced.
func (e *events) take() ([]ServiceExit, []OOMKill, int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	exits := append([]ServiceExit(nil), e.exits...)
	ooms := foldOOMs(e.ooms)
	for i := range exits {
		if x := &exits[i]; x.Sender == nil && (x.Code == "killed" || x.Code == "dumped") {
			x.Sender = e.sender(x.MainPID, x.Status, x.Seen)
		}
	}
	for i := range ooms {
		if o := &ooms[i]; o.Sender == nil {
			o.Sender = e.sender(o.PID, 9, o.Seen)
		}
	}
	e.taken = [3]int{len(e.exits), len(e.ooms), e.dropped}
	return exits, ooms, e.dropped
}

// foldOOMs drops a kill that memory.events counted when /dev/kmsg reported
// a kill in that cgroup (or below it) within oomPairWindow: the kernel
// counts before it logs, so both come for one kill, and the log names the
// victim.
func foldOOMs(ooms []OOMKill) []OOMKill {
	out := make([]OOMKill, 0, len(ooms))
	for _, o := range ooms {
		if o.Source != "memory.events" {
			out = append(out, o)
			continue
		}
		covered := false
		for i := range ooms {
			k := &ooms[i]
			if k.Source == "kmsg" && (k.Cgroup == o.Cgroup || strings.HasPrefix(k.Cgroup, o.Cgroup+"/")) &&
				k.Seen.Sub(o.Seen).Abs() < oomPairWindow {
				covered = true
			}
		}
		if !covered {
			out = append(out, o)
		}
	}
	return out
}

func (e *events) commit() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.exits = e.exits[e.taken[0]:]
	e.ooms = e.ooms[e.taken[1]:]
	e.dropped -= e.taken[2]
	e.taken = [3]int{}
}

// sender finds the latest signal sig delivered to pid before seen (with
// a second's slack for a reader that lagged behind).
func (e *events) sender(pid, sig int, seen time.Time) *Sender {
	if pid <= 0 {
		return nil
	}
	for i := len(e.signals) - 1; i >= 0; i-- {
		s := e.signals[i]
		if s.ToPID == pid && s.Sig == sig && s.Res == 0 && !s.Seen.After(seen.Add(time.Second)) {
			return &Sender{Comm: s.From, PID: s.FromPID, Code: s.Code}
		}
	}
	return nil
}

// eventFindings turns the events into findings. A failed unit that the
// sample already reports as proc.service_failed gets the cause added to
// that finding's message instead of a second finding.
func eventFindings(found []protocol.Finding, exits []ServiceExit, ooms []OOMKill, dropped int) []protocol.Finding {
	var restarted, failed, killed []protocol.Finding
	for _, x := range exits {
		cause := exitCause(x)
		if x.State == "failed" {
			if i := findingFor(found, CodeProcessesServiceFailed, x.Unit); i >= 0 {
				found[i].Message = protocol.Clip(found[i].Message+": "+cause, protocol.MaxMessageLen)
				continue
			}
		}
		at := x.Seen
		if x.Exited != nil {
			at = *x.Exited
		}
		f := protocol.Finding{Source: protocol.Clip(x.Unit, protocol.MaxSourceLen), Unit: protocol.Clip(x.Unit, protocol.MaxSourceLen), First: &at, Last: &at}
		if x.State == "failed" {
			f.Code, f.Severity = CodeProcessesServiceFailed, protocol.SeverityWarn
			if x.Watched {
				f.Severity = protocol.SeverityCrit
			}
			f.Message = protocol.Clip(fmt.Sprintf("unit %s failed: %s", x.Unit, cause), protocol.MaxMessageLen)
			failed = append(failed, f)
			continue
		}
		f.Code, f.Severity = CodeProcessesServiceRestarted, protocol.SeverityWarn
		f.Message = protocol.Clip(fmt.Sprintf("unit %s restarted (%d restarts): %s", x.Unit, x.Restarts, cause), protocol.MaxMessageLen)
		restarted = append(restarted, f)
	}
	for _, o := range ooms {
		at := o.Seen
		if o.At != nil {
			at = *o.At
		}
		f := protocol.Finding{Code: CodeProcessesOOMKilled, Severity: protocol.SeverityWarn, First: &at, Last: &at,
			Unit: protocol.Clip(o.Unit, protocol.MaxSourceLen), Message: protocol.Clip(oomMessage(o), protocol.MaxMessageLen)}
		if o.Constraint == "CONSTRAINT_NONE" {
			f.Severity = protocol.SeverityCrit // the whole guest ran out, not one cgroup
		}
		switch {
		case o.Unit != "":
			f.Source = o.Unit
		case o.Name != "":
			f.Source = fmt.Sprintf("%s[%d]", o.Name, o.PID)
		default:
			f.Source = o.Cgroup
		}
		f.Source = protocol.Clip(f.Source, protocol.MaxSourceLen)
		killed = append(killed, f)
	}
	out := append(found, each(failed, same, moreEvents(CodeProcessesServiceFailed, "units failed"))...)
	out = append(out, each(restarted, same, moreEvents(CodeProcessesServiceRestarted, "units restarted"))...)
	out = append(out, each(killed, same, moreEvents(CodeProcessesOOMKilled, "processes killed by the OOM killer"))...)
	if dropped > 0 {
		out = append(out, protocol.Finding{Code: CodeProcessesServiceRestarted, Severity: protocol.SeverityWarn, Count: uint64(dropped),
			Message: fmt.Sprintf("%d more unit exits or OOM kills came too fast to keep", dropped)})
	}
	return out
}

func same(f protocol.Finding) protocol.Finding { return f }

func moreEvents(code, what string) func(int) protocol.Finding {
	return func(n int) protocol.Finding {
		return protocol.Finding{Code: code, Severity: protocol.SeverityWarn, Count: uint64(n), Message: fmt.Sprintf("%d more %s", n, what)}
	}
}

func findingFor(fs []protocol.Finding, code, source string) int {
	for i, f := range fs {
		if f.Code == code && f.Source == source {
			return i
		}
	}
	return -1
}

// exitCause says how a main process ended, and who sent the signal.
func exitCause(x ServiceExit) string {
	var b strings.Builder
	switch x.Code {
	case "killed", "dumped":
		fmt.Fprintf(&b, "main process %d killed by signal %d (%s)", x.MainPID, x.Status, x.Signal)
		if x.Code == "dumped" {
			b.WriteString(", core dumped")
		}
	case "exited":
		fmt.Fprintf(&b, "main process %d exited with status %d", x.MainPID, x.Status)
	default:
		b.WriteString("main process ended")
	}
	if x.Result != "" {
		fmt.Fprintf(&b, ", result %s", x.Result)
	}
	if s := x.Sender; s != nil {
		fmt.Fprintf(&b, ", sent by %s", senderText(*s))
	}
	return b.String()
}

func senderText(s Sender) string {
	switch {
	case s.Code == 128:
		return fmt.Sprintf("the kernel (in %s[%d])", s.Comm, s.PID)
	case s.Code > 0:
		return fmt.Sprintf("a fault in %s[%d] (si_code %d)", s.Comm, s.PID, s.Code)
	}
	return fmt.Sprintf("%s[%d]", s.Comm, s.PID)
}

func oomMessage(o OOMKill) string {
	var b strings.Builder
	b.WriteString("OOM killer killed ")
	if o.Name != "" {
		fmt.Fprintf(&b, "%s (pid %d)", o.Name, o.PID)
	} else {
		fmt.Fprintf(&b, "%d process(es)", max(o.Kills, 1))
	}
	if o.Cgroup != "" {
		fmt.Fprintf(&b, " in %s", o.Cgroup)
	}
	if o.AnonRSSKB > 0 || o.TotalVMKB > 0 {
		fmt.Fprintf(&b, ": anon-rss %s, total-vm %s", kib(o.AnonRSSKB), kib(o.TotalVMKB))
	}
	if o.MemMax != nil {
		fmt.Fprintf(&b, "; cgroup memory.max %s", kib(*o.MemMax/1024))
	}
	if o.MemPeak != nil {
		fmt.Fprintf(&b, ", peak %s", kib(*o.MemPeak/1024))
	}
	switch o.Constraint {
	case "CONSTRAINT_NONE":
		b.WriteString(" (the whole system was out of memory)")
	case "CONSTRAINT_MEMCG":
		b.WriteString(" (its cgroup's memory limit)")
	case "":
	default:
		fmt.Fprintf(&b, " (%s)", o.Constraint)
	}
	if s := o.Sender; s != nil {
		fmt.Fprintf(&b, ", while %s[%d] allocated", s.Comm, s.PID)
	}
	return b.String()
}

func kib(k uint64) string {
	if k >= 10*1024 {
		return fmt.Sprintf("%.0f MiB", float64(k)/1024)
	}
	return fmt.Sprintf("%d KiB", k)
}

// signalName names a Linux signal number (the same on amd64 and arm64).
func signalName(n int) string {
	names := [...]string{1: "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE",
		"SIGKILL", "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT", "SIGCHLD",
		"SIGCONT", "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU", "SIGXFSZ", "SIGVTALRM",
		"SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR", "SIGSYS"}
	if n > 0 && n < len(names) {
		return names[n]
	}
	if n >= 34 && n <= 64 {
		return "SIGRTMIN+" + strconv.Itoa(n-34)
	}
	return "signal " + strconv.Itoa(n)
}

// Commit forgets the events the last run reported, once its result is
// stored.
func (p *Processes) Commit() error {
	p.ev.commit()
	return nil
}
