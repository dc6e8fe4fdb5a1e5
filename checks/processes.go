package checks

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
)

// ProcessesName is the registered name of the processes check.
const ProcessesName = "processes"

func init() {
	register(ProcessesName, true, 15*time.Second, 12*time.Second, DefaultProcessesConfig,
		func(cfg ProcessesConfig, env Env) (Check, error) { return NewProcesses(cfg, env.logger()) })
}

// Finding codes of the processes check.
const (
	CodeProcessesHung           = "proc.hung"
	CodeProcessesStopped        = "proc.stopped"
	CodeProcessesZombies        = "proc.zombies"
	CodeProcessesServiceFailed  = "proc.service_failed"
	CodeProcessesAppNotResponds = "proc.app_not_responding"
)

// Bounds that keep one result small: per code, this many findings name one
// process, unit or probe each, and one more counts the rest; the lists in
// the data stop at processesMaxListed entries.
const (
	processesMaxPerCode = 10
	processesMaxListed  = 50
	processesMaxProbes  = 32
	processesCmdlineLen = 256
)

// ProcessesConfig tunes the processes check. Zero durations and counts take
// the defaults of DefaultProcessesConfig.
type ProcessesConfig struct {
	// HungAfter is how long a process may stay in D (uninterruptible sleep)
	// without running before proc.hung; the kernel's hung-task detector
	// uses 120 s as well.
	HungAfter Duration `json:"hung_after"`
	// StoppedAfter is how long a process may stay stopped (T, or t under a
	// debugger) before proc.stopped.
	StoppedAfter Duration `json:"stopped_after"`
	// ZombieAge is how long a zombie may wait for its parent to reap it
	// before proc.zombies.
	ZombieAge Duration `json:"zombie_age"`
	// ZombieCount is how many zombies at once, of any age, make
	// proc.zombies.
	ZombieCount int `json:"zombie_count"`
	// ProcRoot is where procfs is mounted (Linux).
	ProcRoot string `json:"proc_root"`
	// Units are systemd units to watch (Linux); a name without a suffix
	// means a .service.
	Units []string `json:"units"`
	// FailedUnits reports every unit in the failed state, as
	// systemctl --failed lists them (Linux).
	FailedUnits bool `json:"failed_units"`
	// ActivatingAfter is how long a watched unit may stay activating or
	// deactivating (Linux), or a watched service in a *_PENDING state
	// (Windows), before it is reported as stuck.
	ActivatingAfter Duration `json:"activating_after"`
	// Services are Windows services to watch, by service (not display)
	// name.
	Services []string `json:"services"`
	// Probes are liveness probes of applications.
	Probes []ProcessesProbe `json:"probes"`
}

// ProcessesProbe is one liveness probe: a TCP connect to TCP, or an HTTP
// GET of HTTP (plain http only; no TLS) that must answer 2xx or 3xx.
type ProcessesProbe struct {
	Name    string   `json:"name"`
	TCP     string   `json:"tcp,omitempty"`
	HTTP    string   `json:"http,omitempty"`
	Timeout Duration `json:"timeout,omitempty"` // default 5s
}

// DefaultProcessesConfig returns the default thresholds and watch lists.
func DefaultProcessesConfig() ProcessesConfig {
	return ProcessesConfig{
		HungAfter:       D(120 * time.Second),
		StoppedAfter:    D(60 * time.Second),
		ZombieAge:       D(300 * time.Second),
		ZombieCount:     50,
		ProcRoot:        "/proc",
		Units:           []string{},
		FailedUnits:     true,
		ActivatingAfter: D(5 * time.Minute),
		// Services whose absence breaks logging, name resolution, addresses,
		// time, file sharing, remote management or WMI. Only those set to
		// start automatically are expected to run.
		Services: []string{"EventLog", "RpcSs", "Dhcp", "Dnscache", "LanmanServer", "LanmanWorkstation", "W32Time", "WinRM", "Winmgmt", "Schedule"},
		Probes:   []ProcessesProbe{},
	}
}

func (c ProcessesConfig) withDefaults() ProcessesConfig {
	d := DefaultProcessesConfig()
	for _, p := range []struct{ v, def *Duration }{
		{&c.HungAfter, &d.HungAfter}, {&c.StoppedAfter, &d.StoppedAfter},
		{&c.ZombieAge, &d.ZombieAge}, {&c.ActivatingAfter, &d.ActivatingAfter},
	} {
		if p.v.Duration <= 0 {
			*p.v = *p.def
		}
	}
	if c.ZombieCount <= 0 {
		c.ZombieCount = d.ZombieCount
	}
	if c.ProcRoot == "" {
		c.ProcRoot = d.ProcRoot
	}
	for i := range c.Probes {
		if c.Probes[i].Timeout.Duration <= 0 {
			c.Probes[i].Timeout = D(5 * time.Second)
		}
	}
	return c
}

func (c ProcessesConfig) validate() error {
	if len(c.Probes) > processesMaxProbes {
		return fmt.Errorf("processes: %d probes, limit %d", len(c.Probes), processesMaxProbes)
	}
	names := map[string]bool{}
	for i, p := range c.Probes {
		if p.Name == "" {
			return fmt.Errorf("processes: probe %d has no name", i)
		}
		if names[p.Name] {
			return fmt.Errorf("processes: probe %q named twice", p.Name)
		}
		names[p.Name] = true
		if (p.TCP == "") == (p.HTTP == "") {
			return fmt.Errorf("processes: probe %q needs exactly one of tcp and http", p.Name)
		}
		if p.TCP != "" {
			if _, _, err := net.SplitHostPort(p.TCP); err != nil {
				return fmt.Errorf("processes: probe %q: tcp %q: %w", p.Name, p.TCP, err)
			}
		} else if _, _, err := processesParseHTTPTarget(p.HTTP); err != nil {
			return fmt.Errorf("processes: probe %q: %w", p.Name, err)
		}
	}
	return nil
}

// ProcessesData is the data of a processes result.
type ProcessesData struct {
	// Total is how many processes the sample read; States counts them by
	// the state letter of /proc/<pid>/stat. Both are absent on Windows.
	Total  int            `json:"total,omitempty"`
	States map[string]int `json:"states,omitempty"`
	// Processes are the processes now in D, T, t or Z, oldest first.
	Processes []ProcessesProc `json:"processes"`
	// ProcessesLeftOut counts those beyond the list's limit.
	ProcessesLeftOut int `json:"processes_left_out,omitempty"`
	// ProcessStates says why process states were not sampled (Windows).
	ProcessStates string `json:"process_states,omitempty"`
	// Units are the watched units or services and every failed unit.
	Units        []ProcessesUnit        `json:"units"`
	UnitsLeftOut int                    `json:"units_left_out,omitempty"`
	UnitsSkipped string                 `json:"units_skipped,omitempty"`
	Probes       []ProcessesProbeResult `json:"probes"`
	Errors       []string               `json:"errors,omitempty"`
}

// ProcessesProc is one process in a state worth watching. Since is the
// first sample that saw it in this state (for D: without running since), so
// the real time is up to one interval longer.
type ProcessesProc struct {
	PID          int       `json:"pid"`
	PPID         int       `json:"ppid"`
	Name         string    `json:"name"`
	Cmdline      string    `json:"cmdline,omitempty"`
	State        string    `json:"state"`
	Since        time.Time `json:"since"`
	ForSec       float64   `json:"for_s"`
	Wchan        string    `json:"wchan,omitempty"`
	KernelThread bool      `json:"kernel_thread,omitempty"`
}

// ProcessesUnit is a systemd unit (Manager "systemd") or a Windows service
// (Manager "scm"). State is systemd's ActiveState, or the service state in
// lower case (stopped, start_pending, running, ...). Since is when the unit
// entered State as systemd reports it, or else the first sample that saw it
// in State.
type ProcessesUnit struct {
	Name      string     `json:"name"`
	Manager   string     `json:"manager"`
	LoadState string     `json:"load_state,omitempty"`
	State     string     `json:"state"`
	SubState  string     `json:"sub_state,omitempty"`
	StartType string     `json:"start_type,omitempty"`
	ExitCode  uint32     `json:"exit_code,omitempty"`
	Since     *time.Time `json:"since,omitempty"`
	Watched   bool       `json:"watched"`
}

// ProcessesProbeResult is the outcome of one liveness probe.
type ProcessesProbeResult struct {
	Name       string  `json:"name"`
	Target     string  `json:"target"`
	Alive      bool    `json:"alive"`
	HTTPStatus int     `json:"http_status,omitempty"`
	LatencyMS  float64 `json:"latency_ms"`
	Error      string  `json:"error,omitempty"`
}

// processesProc is one process as a sample saw it. Wchan is read for D, T
// and Z, Switches only for D.
type processesProc struct {
	PID, PPID int
	Start     uint64 // clock ticks after boot: with PID, names one process
	Name      string // comm
	State     string // the letter of /proc/<pid>/stat
	Kernel    bool
	Wchan     string
	Switches  uint64 // voluntary plus involuntary context switches
}

type processesKey struct {
	PID   int
	Start uint64
}

// processesSeen is what the check remembers of a process in D, T or Z.
type processesSeen struct {
	Class       byte // 'D', 'T' or 'Z'
	Since       time.Time
	Switches    uint64
	Cmdline     string
	CmdlineRead bool
}

// errProcessesNoManager says that no service manager runs (no systemd), so
// there are no units to look at.
var errProcessesNoManager = errors.New("no service manager")

// processesSource gathers for the check. cmdline may block (reading it
// takes the target's memory map lock, which a hung process may hold); the
// caller bounds it.
type processesSource interface {
	processes(ctx context.Context) ([]processesProc, error)
	cmdline(pid int) (string, error)
	units(ctx context.Context, cfg ProcessesConfig) ([]ProcessesUnit, error)
}

// Processes is the processes check: hung, stopped and zombie processes,
// failed or stuck services, and application liveness probes.
type Processes struct {
	cfg    ProcessesConfig
	src    processesSource
	logger *slog.Logger
	dial   func(ctx context.Context, network, addr string) (net.Conn, error)

	mu        sync.Mutex // serialises Run
	seen      map[processesKey]processesSeen
	unitsSeen map[string]processesUnitSeen

	busyMu sync.Mutex
	busy   map[processesKey]bool // command lines being read, maybe stuck
}

type processesUnitSeen struct {
	State string
	Since time.Time
}

// NewProcesses returns the processes check reading this system.
func NewProcesses(cfg ProcessesConfig, logger *slog.Logger) (*Processes, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return newProcesses(cfg, newProcessesSource(cfg), logger), nil
}

func newProcesses(cfg ProcessesConfig, src processesSource, logger *slog.Logger) *Processes {
	var d net.Dialer
	return &Processes{
		cfg:       cfg.withDefaults(),
		src:       src,
		logger:    logger,
		dial:      d.DialContext,
		seen:      map[processesKey]processesSeen{},
		unitsSeen: map[string]processesUnitSeen{},
		busy:      map[processesKey]bool{},
	}
}

// Name returns "processes".
func (p *Processes) Name() string { return ProcessesName }

// Run samples the processes, the units or services and the probes. It is
// unknown when the process table cannot be read, or when units were asked
// for and the service manager cannot be asked; findings from the parts that
// worked are still reported.
func (p *Processes) Run(ctx context.Context) Result {
	p.mu.Lock()
	defer p.mu.Unlock()

	probes := make(chan []ProcessesProbeResult, 1)
	go func() { probes <- p.runProbes(ctx) }()

	var (
		data     = ProcessesData{Processes: []ProcessesProc{}, Units: []ProcessesUnit{}}
		findings []protocol.Finding
		unknown  []string
	)

	procs, err := p.src.processes(ctx)
	now := time.Now()
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		data.ProcessStates = err.Error()
	case err != nil:
		unknown = append(unknown, "processes: "+err.Error())
	default:
		p.seen = processesTrack(p.seen, procs, now)
		p.readCmdlines(ctx)
		fs, listed, left := processesFindings(p.cfg, procs, p.seen, now)
		findings = append(findings, fs...)
		data.Processes, data.ProcessesLeftOut = listed, left
		data.Total = len(procs)
		data.States = map[string]int{}
		for _, pr := range procs {
			data.States[pr.State]++
		}
	}

	units, err := p.src.units(ctx, p.cfg)
	switch {
	case errors.Is(err, errProcessesNoManager) && len(processesWatched(p.cfg)) == 0:
		data.UnitsSkipped = err.Error()
	case err != nil:
		unknown = append(unknown, "units: "+err.Error())
	}
	p.unitsSeen = processesTrackUnits(p.unitsSeen, units, now)
	findings = append(findings, processesUnitFindings(units, now, p.cfg.ActivatingAfter.Duration)...)
	if len(units) > processesMaxListed {
		data.UnitsLeftOut = len(units) - processesMaxListed
		units = units[:processesMaxListed]
	}
	data.Units = append(data.Units, units...)

	data.Probes = <-probes
	findings = append(findings, processesProbeFindings(data.Probes)...)

	res := Result{Status: StatusOf(findings), Findings: findings, Data: data}
	switch {
	case len(unknown) > 0:
		data.Errors = unknown
		res.Data = data
		res.Status = protocol.StatusUnknown
		res.Summary = "could not gather " + strings.Join(unknown, "; ")
		if len(findings) > 0 {
			res.Summary += "; " + joinMessages(findings)
		}
	case len(findings) > 0:
		res.Summary = joinMessages(findings)
	default:
		res.Summary = processesOKSummary(data)
	}
	res.Summary = protocol.Clip(res.Summary, protocol.MaxSummaryLen)
	return res
}

// processesClass groups the states the check follows: D is uninterruptible
// sleep, T stopped by a signal and t by a tracer, Z a zombie.
func processesClass(state string) byte {
	switch state {
	case "D":
		return 'D'
	case "T", "t":
		return 'T'
	case "Z":
		return 'Z'
	}
	return 0
}

// processesTrack returns what to remember after a sample taken at now:
// every process in D, T or Z, since when it has been so. A process keeps
// its Since while every sample sees it in the same class and, in D, with
// the same count of context switches: like the kernel's hung-task detector,
// a task that ran in between is not hung, however often it is caught in D.
// Processes are keyed by PID and start time, so a reused PID starts afresh.
func processesTrack(prev map[processesKey]processesSeen, procs []processesProc, now time.Time) map[processesKey]processesSeen {
	next := make(map[processesKey]processesSeen, len(prev))
	for _, pr := range procs {
		c := processesClass(pr.State)
		if c == 0 {
			continue
		}
		k := processesKey{pr.PID, pr.Start}
		s, ok := prev[k]
		if !ok || s.Class != c || (c == 'D' && s.Switches != pr.Switches) {
			s.Class, s.Since, s.Switches = c, now, pr.Switches
		}
		next[k] = s
	}
	return next
}

// readCmdlines reads the command line of every followed process that has
// none yet. A read that does not answer within a second is abandoned, and
// that process is not asked again until the read returns.
func (p *Processes) readCmdlines(ctx context.Context) {
	type answer struct {
		k   processesKey
		cmd string
		err error
	}
	var want []processesKey
	for k, s := range p.seen {
		if !s.CmdlineRead && s.Class != 'Z' && len(want) < processesMaxListed {
			want = append(want, k)
		}
	}
	answers := make(chan answer, len(want))
	n := 0
	for _, k := range want {
		if !p.startRead(k) {
			continue
		}
		n++
		go func() {
			cmd, err := p.src.cmdline(k.PID)
			p.endRead(k)
			answers <- answer{k, cmd, err}
		}()
	}
	t := time.NewTimer(time.Second)
	defer t.Stop()
	for ; n > 0; n-- {
		select {
		case a := <-answers:
			s, ok := p.seen[a.k]
			if !ok {
				continue
			}
			s.CmdlineRead = true
			if a.err == nil {
				s.Cmdline = protocol.Clip(a.cmd, processesCmdlineLen)
			}
			p.seen[a.k] = s
		case <-t.C:
			p.logger.Warn("cmdline_read_abandoned", "pending", n)
			return
		case <-ctx.Done():
			return
		}
	}
}

func (p *Processes) startRead(k processesKey) bool {
	p.busyMu.Lock()
	defer p.busyMu.Unlock()
	if p.busy[k] {
		return false
	}
	p.busy[k] = true
	return true
}

func (p *Processes) endRead(k processesKey) {
	p.busyMu.Lock()
	defer p.busyMu.Unlock()
	delete(p.busy, k)
}

// processesFindings judges one sample against the thresholds. It returns
// the findings, the followed processes for the data (oldest first, at most
// processesMaxListed) and how many were left out of that list.
func processesFindings(cfg ProcessesConfig, procs []processesProc, seen map[processesKey]processesSeen, now time.Time) ([]protocol.Finding, []ProcessesProc, int) {
	byPID := make(map[int]processesProc, len(procs))
	var followed []ProcessesProc
	for _, pr := range procs {
		byPID[pr.PID] = pr
		s, ok := seen[processesKey{pr.PID, pr.Start}]
		if !ok {
			continue
		}
		followed = append(followed, ProcessesProc{
			PID: pr.PID, PPID: pr.PPID, Name: processesDisplayName(pr), Cmdline: s.Cmdline,
			State: pr.State, Since: s.Since, ForSec: round1(now.Sub(s.Since).Seconds()),
			Wchan: pr.Wchan, KernelThread: pr.Kernel,
		})
	}
	slices.SortFunc(followed, func(a, b ProcessesProc) int {
		if c := a.Since.Compare(b.Since); c != 0 {
			return c
		}
		return a.PID - b.PID
	})

	var hung, stopped, zombies []ProcessesProc
	zombieCount := 0
	for _, f := range followed {
		age := now.Sub(f.Since)
		switch processesClass(f.State) {
		case 'D':
			if age >= cfg.HungAfter.Duration {
				hung = append(hung, f)
			}
		case 'T':
			if age >= cfg.StoppedAfter.Duration {
				stopped = append(stopped, f)
			}
		case 'Z':
			zombieCount++
			if age >= cfg.ZombieAge.Duration {
				zombies = append(zombies, f)
			}
		}
	}

	var out []protocol.Finding
	out = append(out, processesEach(hung, func(f ProcessesProc) protocol.Finding {
		what := "pid"
		if f.KernelThread {
			what = "kernel thread"
		}
		msg := fmt.Sprintf("%s %d %s in uninterruptible sleep (D) without running for %s", what, f.PID, f.Name, processesAge(now, f.Since))
		if f.Wchan != "" {
			msg += ", waiting in " + f.Wchan
		}
		return processesProcFinding(CodeProcessesHung, protocol.SeverityCrit, msg, f, now)
	}, func(n int) protocol.Finding {
		return protocol.Finding{Code: CodeProcessesHung, Severity: protocol.SeverityCrit, Count: uint64(n),
			Message: fmt.Sprintf("%d more processes in D state for over %s", n, cfg.HungAfter)}
	})...)
	out = append(out, processesEach(stopped, func(f ProcessesProc) protocol.Finding {
		by := "by a signal"
		if f.State == "t" {
			by = "by a debugger or tracer"
		}
		msg := fmt.Sprintf("pid %d %s stopped (%s) %s for %s", f.PID, f.Name, f.State, by, processesAge(now, f.Since))
		return processesProcFinding(CodeProcessesStopped, protocol.SeverityWarn, msg, f, now)
	}, func(n int) protocol.Finding {
		return protocol.Finding{Code: CodeProcessesStopped, Severity: protocol.SeverityWarn, Count: uint64(n),
			Message: fmt.Sprintf("%d more processes stopped for over %s", n, cfg.StoppedAfter)}
	})...)
	out = append(out, processesZombieFindings(cfg, zombies, zombieCount, byPID, now)...)
	listed, left := processesCap(followed)
	return out, listed, left
}

func processesCap(l []ProcessesProc) ([]ProcessesProc, int) {
	if l == nil {
		return []ProcessesProc{}, 0
	}
	if len(l) > processesMaxListed {
		return l[:processesMaxListed], len(l) - processesMaxListed
	}
	return l, 0
}

// processesZombieFindings reports zombies by parent, since the parent is
// what fails to reap them, and the total when it is over ZombieCount.
func processesZombieFindings(cfg ProcessesConfig, aged []ProcessesProc, total int, byPID map[int]processesProc, now time.Time) []protocol.Finding {
	type parent struct {
		pid    int
		oldest ProcessesProc
		n      int
	}
	var parents []*parent
	idx := map[int]*parent{}
	for _, z := range aged { // oldest first, so a parent's first zombie is its oldest
		pa, ok := idx[z.PPID]
		if !ok {
			pa = &parent{pid: z.PPID, oldest: z}
			idx[z.PPID] = pa
			parents = append(parents, pa)
		}
		pa.n++
	}
	var out []protocol.Finding
	for i, pa := range parents {
		if i == processesMaxPerCode {
			rest := 0
			for _, q := range parents[i:] {
				rest += q.n
			}
			out = append(out, protocol.Finding{Code: CodeProcessesZombies, Severity: protocol.SeverityWarn, Count: uint64(rest),
				Message: fmt.Sprintf("%d more zombies of %d more parents unreaped for over %s", rest, len(parents)-i, cfg.ZombieAge)})
			break
		}
		pname := "?"
		if pp, ok := byPID[pa.pid]; ok {
			pname = processesDisplayName(pp)
		}
		first := pa.oldest.Since
		last := now
		out = append(out, protocol.Finding{
			Code:     CodeProcessesZombies,
			Severity: protocol.SeverityWarn,
			Message: fmt.Sprintf("parent pid %d %s has not reaped %d zombie children for over %s (oldest pid %d %s, %s)",
				pa.pid, pname, pa.n, cfg.ZombieAge, pa.oldest.PID, pa.oldest.Name, processesAge(now, first)),
			Source: protocol.Clip(fmt.Sprintf("%s[%d]", pname, pa.pid), protocol.MaxSourceLen),
			Count:  uint64(pa.n),
			First:  &first,
			Last:   &last,
		})
	}
	if total > cfg.ZombieCount {
		out = append(out, protocol.Finding{Code: CodeProcessesZombies, Severity: protocol.SeverityWarn, Count: uint64(total),
			Message: fmt.Sprintf("%d zombie processes, more than %d", total, cfg.ZombieCount)})
	}
	return out
}

// processesEach makes one finding per entry up to processesMaxPerCode and
// one that counts the rest.
func processesEach[T any](l []T, one func(T) protocol.Finding, rest func(int) protocol.Finding) []protocol.Finding {
	var out []protocol.Finding
	for i, v := range l {
		if i == processesMaxPerCode {
			return append(out, rest(len(l)-i))
		}
		out = append(out, one(v))
	}
	return out
}

func processesProcFinding(code string, sev protocol.Severity, msg string, f ProcessesProc, now time.Time) protocol.Finding {
	first, last := f.Since, now
	if f.Cmdline != "" {
		msg += ": " + f.Cmdline
	}
	return protocol.Finding{
		Code:     code,
		Severity: sev,
		Message:  protocol.Clip(msg, protocol.MaxMessageLen),
		Source:   protocol.Clip(fmt.Sprintf("%s[%d]", strings.Trim(f.Name, "[]"), f.PID), protocol.MaxSourceLen),
		First:    &first,
		Last:     &last,
	}
}

// processesDisplayName is comm, in brackets for a kernel thread as ps
// shows them.
func processesDisplayName(pr processesProc) string {
	if pr.Kernel {
		return "[" + pr.Name + "]"
	}
	return pr.Name
}

func processesAge(now, since time.Time) string {
	return now.Sub(since).Round(time.Second).String()
}

// processesWatched is the watch list that applies on this OS.
func processesWatched(cfg ProcessesConfig) []string {
	if runtime.GOOS == "windows" {
		return cfg.Services
	}
	return cfg.Units
}

// processesTrackUnits fills in Since where the service manager did not say
// when a unit entered its state, with the first sample that saw it there,
// and returns what to remember for the next sample.
func processesTrackUnits(prev map[string]processesUnitSeen, units []ProcessesUnit, now time.Time) map[string]processesUnitSeen {
	next := make(map[string]processesUnitSeen, len(units))
	for i := range units {
		u := &units[i]
		s, ok := prev[u.Name]
		if !ok || s.State != u.State {
			s = processesUnitSeen{State: u.State, Since: now}
		}
		next[u.Name] = s
		if u.Since == nil {
			since := s.Since
			u.Since = &since
		}
	}
	return next
}

// processesUnitFindings judges units and services. Linux: a failed unit is
// crit when watched and warn otherwise; a watched unit activating,
// deactivating or reloading for stuckAfter is stuck. Windows: a watched
// service set to start automatically that is stopped is crit (a delayed
// automatic one only once stopped for stuckAfter, since it starts a while
// after boot); one in a *_pending state for stuckAfter is stuck. A watched
// name that does not exist is info.
func processesUnitFindings(units []ProcessesUnit, now time.Time, stuckAfter time.Duration) []protocol.Finding {
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
				f.Message += fmt.Sprintf(" %s ago", processesAge(now, *u.Since))
			}
			failed = append(failed, f)
		case u.Manager == "systemd" && u.Watched && (u.State == "activating" || u.State == "deactivating" || u.State == "reloading") && u.Since != nil && age >= stuckAfter:
			f.Severity = protocol.SeverityWarn
			f.Message = fmt.Sprintf("unit %s stuck %s (%s) for %s", u.Name, u.State, u.SubState, processesAge(now, *u.Since))
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
			f.Message = fmt.Sprintf("service %s stuck in %s for %s", u.Name, strings.ToUpper(u.State), processesAge(now, *u.Since))
			stuck = append(stuck, f)
		}
	}
	all := append(append(failed, stuck...), missing...)
	return processesEach(all, func(f protocol.Finding) protocol.Finding { return f }, func(n int) protocol.Finding {
		return protocol.Finding{Code: CodeProcessesServiceFailed, Severity: protocol.SeverityWarn, Count: uint64(n),
			Message: fmt.Sprintf("%d more units or services failed, stuck or missing", n)}
	})
}

// processesWindowsUnit maps a Windows service's status and configuration,
// as QueryServiceStatusEx and QueryServiceConfig give them, to a unit. The
// numbers are those of winsvc.h.
func processesWindowsUnit(name string, state, startType uint32, delayed bool, exitCode, serviceExitCode uint32) ProcessesUnit {
	states := map[uint32]string{
		1: "stopped", 2: "start_pending", 3: "stop_pending", 4: "running",
		5: "continue_pending", 6: "pause_pending", 7: "paused",
	}
	starts := map[uint32]string{0: "boot", 1: "system", 2: "auto", 3: "manual", 4: "disabled"}
	u := ProcessesUnit{Name: name, Manager: "scm", State: states[state], StartType: starts[startType], Watched: true}
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

// processesSystemdUnitName completes a unit name the way systemctl does: a
// name without a type suffix is a service.
func processesSystemdUnitName(name string) string {
	for _, t := range []string{".service", ".socket", ".target", ".device", ".mount", ".automount", ".swap", ".path", ".timer", ".slice", ".scope"} {
		if strings.HasSuffix(name, t) {
			return name
		}
	}
	return name + ".service"
}

// processesSystemdSinceProperty names the unit property (a timestamp in µs
// since the epoch) that says when a unit entered state.
func processesSystemdSinceProperty(state string) string {
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

func (p *Processes) runProbes(ctx context.Context) []ProcessesProbeResult {
	out := make([]ProcessesProbeResult, len(p.cfg.Probes))
	var wg sync.WaitGroup
	for i, pr := range p.cfg.Probes {
		wg.Go(func() { out[i] = p.probe(ctx, pr) })
	}
	wg.Wait()
	return out
}

// probe connects to the probe's target, and for HTTP sends a GET and reads
// the status line, all within the probe's timeout.
func (p *Processes) probe(ctx context.Context, pr ProcessesProbe) ProcessesProbeResult {
	res := ProcessesProbeResult{Name: pr.Name, Target: pr.TCP}
	addr, reqPath := pr.TCP, ""
	if pr.HTTP != "" {
		res.Target = pr.HTTP
		var err error
		if addr, reqPath, err = processesParseHTTPTarget(pr.HTTP); err != nil {
			res.Error = err.Error()
			return res
		}
	}
	ctx, cancel := context.WithTimeout(ctx, pr.Timeout.Duration)
	defer cancel()
	start := time.Now()
	err := func() error {
		conn, err := p.dial(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		defer conn.Close()
		if pr.HTTP == "" {
			return nil
		}
		if d, ok := ctx.Deadline(); ok {
			conn.SetDeadline(d)
		}
		stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
		defer stop()
		host := addr
		if u, err := url.Parse(pr.HTTP); err == nil {
			host = u.Host
		}
		if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: guestdiag-agent\r\nConnection: close\r\n\r\n", reqPath, host); err != nil {
			return err
		}
		line, err := bufio.NewReaderSize(conn, 512).ReadSlice('\n')
		if err != nil {
			return fmt.Errorf("read status line: %w", err)
		}
		code, err := processesParseStatusLine(line)
		res.HTTPStatus = code
		if err != nil {
			return err
		}
		if code < 200 || code > 399 {
			return fmt.Errorf("http status %d", code)
		}
		return nil
	}()
	res.LatencyMS = round1(float64(time.Since(start).Microseconds()) / 1000)
	if err != nil {
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
			err = fmt.Errorf("no answer within %s: %w", pr.Timeout, err)
		}
		res.Error = protocol.Clip(err.Error(), 512)
		return res
	}
	res.Alive = true
	return res
}

// processesParseHTTPTarget returns the host:port to dial and the request
// target of a plain http URL.
func processesParseHTTPTarget(raw string) (addr, reqPath string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", fmt.Errorf("http %q: %w", raw, err)
	}
	if u.Scheme != "http" {
		return "", "", fmt.Errorf("http %q: only http:// is supported (no TLS)", raw)
	}
	if u.Hostname() == "" {
		return "", "", fmt.Errorf("http %q: no host", raw)
	}
	port := u.Port()
	if port == "" {
		port = "80"
	}
	return net.JoinHostPort(u.Hostname(), port), u.RequestURI(), nil
}

// processesParseStatusLine reads the code of an HTTP/1.x status line such
// as "HTTP/1.1 200 OK\r\n".
func processesParseStatusLine(line []byte) (int, error) {
	s := strings.TrimRight(string(line), "\r\n")
	proto, rest, _ := strings.Cut(s, " ")
	if !strings.HasPrefix(proto, "HTTP/1.") {
		return 0, fmt.Errorf("not an http status line: %q", protocol.Clip(s, 64))
	}
	codeText, _, _ := strings.Cut(rest, " ")
	code, err := strconv.Atoi(codeText)
	if err != nil || len(codeText) != 3 {
		return 0, fmt.Errorf("bad http status code in %q", protocol.Clip(s, 64))
	}
	return code, nil
}

func processesProbeFindings(results []ProcessesProbeResult) []protocol.Finding {
	var dead []ProcessesProbeResult
	for _, r := range results {
		if !r.Alive {
			dead = append(dead, r)
		}
	}
	return processesEach(dead, func(r ProcessesProbeResult) protocol.Finding {
		return protocol.Finding{
			Code:     CodeProcessesAppNotResponds,
			Severity: protocol.SeverityWarn,
			Message:  protocol.Clip(fmt.Sprintf("probe %s (%s) not responding: %s", r.Name, r.Target, r.Error), protocol.MaxMessageLen),
			Source:   protocol.Clip(r.Name, protocol.MaxSourceLen),
		}
	}, func(n int) protocol.Finding {
		return protocol.Finding{Code: CodeProcessesAppNotResponds, Severity: protocol.SeverityWarn, Count: uint64(n),
			Message: fmt.Sprintf("%d more probes not responding", n)}
	})
}

func processesOKSummary(d ProcessesData) string {
	var parts []string
	if d.ProcessStates == "" {
		parts = append(parts, fmt.Sprintf("%d processes, none hung, stopped or zombie too long (now %d in D, %d stopped, %d zombies)",
			d.Total, d.States["D"], d.States["T"]+d.States["t"], d.States["Z"]))
	}
	switch {
	case d.UnitsSkipped != "":
		parts = append(parts, "units not checked: "+d.UnitsSkipped)
	default:
		parts = append(parts, fmt.Sprintf("%d units or services looked at, none failed or stuck", len(d.Units)+d.UnitsLeftOut))
	}
	if len(d.Probes) > 0 {
		parts = append(parts, fmt.Sprintf("%d probes alive", len(d.Probes)))
	}
	return strings.Join(parts, "; ")
}
