package processes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/guestdiag/guestdiag/checks"
	"github.com/guestdiag/guestdiag/protocol"
)

// Name is the registered name of the processes check.
const Name = "processes"

func init() {
	checks.Register(Name, true, 15*time.Second, 12*time.Second, DefaultConfig,
		func(cfg Config, env checks.Env) (checks.Check, error) { return New(cfg, env) })
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
// the data stop at maxListed entries.
const (
	maxPerCode = 10
	maxListed  = 50
	maxProbes  = 32
	cmdlineLen = 256
)

// Config tunes the processes check. Zero durations and counts take
// the defaults of DefaultConfig.
type Config struct {
	// HungAfter is how long a process may stay in D (uninterruptible sleep)
	// without running before proc.hung; the kernel's hung-task detector
	// uses 120 s as well.
	HungAfter checks.Duration `json:"hung_after"`
	// StoppedAfter is how long a process may stay stopped (T, or t under a
	// debugger) before proc.stopped.
	StoppedAfter checks.Duration `json:"stopped_after"`
	// ZombieAge is how long a zombie may wait for its parent to reap it
	// before proc.zombies.
	ZombieAge checks.Duration `json:"zombie_age"`
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
	ActivatingAfter checks.Duration `json:"activating_after"`
	// Services are Windows services to watch, by service (not display)
	// name.
	Services []string `json:"services"`
	// Probes are liveness probes of applications.
	Probes []Probe `json:"probes"`
	// Events runs the check at once when a unit's main process dies or the
	// OOM killer kills (Linux): systemd's D-Bus signals, /dev/kmsg and
	// cgroup v2 memory.events under CgroupRoot.
	Events     bool   `json:"events"`
	KmsgPath   string `json:"kmsg"`
	CgroupRoot string `json:"cgroup_root"`
	// TraceSignals names the sender of the signal that killed a unit's
	// process, from the signal_generate tracepoint in a tracefs instance of
	// the agent's own under Tracefs (Linux). Off by default because it
	// changes the kernel's tracing state while the agent runs.
	TraceSignals bool   `json:"trace_signals"`
	Tracefs      string `json:"tracefs"`
}

// Probe is one liveness probe: a TCP connect to TCP, or an HTTP
// GET of HTTP (plain http only; no TLS) that must answer 2xx or 3xx.
type Probe struct {
	Name    string          `json:"name"`
	TCP     string          `json:"tcp,omitempty"`
	HTTP    string          `json:"http,omitempty"`
	Timeout checks.Duration `json:"timeout,omitempty"` // default 5s
}

// DefaultConfig returns the default thresholds and watch lists.
func DefaultConfig() Config {
	return Config{
		HungAfter:       checks.D(120 * time.Second),
		StoppedAfter:    checks.D(60 * time.Second),
		ZombieAge:       checks.D(300 * time.Second),
		ZombieCount:     50,
		ProcRoot:        "/proc",
		Units:           []string{},
		FailedUnits:     true,
		ActivatingAfter: checks.D(5 * time.Minute),
		// Services whose absence breaks logging, name resolution, addresses,
		// time, file sharing, remote management or WMI. Only those set to
		// start automatically are expected to run.
		Services:   []string{"EventLog", "RpcSs", "Dhcp", "Dnscache", "LanmanServer", "LanmanWorkstation", "W32Time", "WinRM", "Winmgmt", "Schedule"},
		Probes:     []Probe{},
		Events:     true,
		KmsgPath:   "/dev/kmsg",
		CgroupRoot: "/sys/fs/cgroup",
		Tracefs:    "/sys/kernel/tracing",
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	for _, p := range []struct{ v, def *checks.Duration }{
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
	for _, p := range []struct{ v, def *string }{
		{&c.ProcRoot, &d.ProcRoot}, {&c.KmsgPath, &d.KmsgPath}, {&c.CgroupRoot, &d.CgroupRoot}, {&c.Tracefs, &d.Tracefs},
	} {
		if *p.v == "" {
			*p.v = *p.def
		}
	}
	for i := range c.Probes {
		if c.Probes[i].Timeout.Duration <= 0 {
			c.Probes[i].Timeout = checks.D(5 * time.Second)
		}
	}
	return c
}

func (c Config) validate() error {
	if len(c.Probes) > maxProbes {
		return fmt.Errorf("processes: %d probes, limit %d", len(c.Probes), maxProbes)
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
		} else if _, _, err := parseHTTPTarget(p.HTTP); err != nil {
			return fmt.Errorf("processes: probe %q: %w", p.Name, err)
		}
	}
	return nil
}

// Data is the data of a processes result.
type Data struct {
	// Total is how many processes the sample read; States counts them by
	// the state letter of /proc/<pid>/stat. Both are absent on Windows.
	Total  int            `json:"total,omitempty"`
	States map[string]int `json:"states,omitempty"`
	// Processes are the processes now in D, T, t or Z, oldest first.
	Processes []Proc `json:"processes"`
	// LeftOut counts those beyond the list's limit.
	LeftOut int `json:"processes_left_out,omitempty"`
	// ProcessStates says why process states were not sampled (Windows).
	ProcessStates string `json:"process_states,omitempty"`
	// Units are the watched units or services and every failed unit.
	Units        []Unit        `json:"units"`
	UnitsLeftOut int           `json:"units_left_out,omitempty"`
	UnitsSkipped string        `json:"units_skipped,omitempty"`
	Probes       []ProbeResult `json:"probes"`
	// ServiceExits and OOMKills are the events seen since the last stored
	// result.
	ServiceExits []ServiceExit `json:"service_exits,omitempty"`
	OOMKills     []OOMKill     `json:"oom_kills,omitempty"`
	Errors       []string      `json:"errors,omitempty"`
}

// Proc is one process in a state worth watching. Since is the
// first sample that saw it in this state (for D: without running since), so
// the real time is up to one interval longer.
type Proc struct {
	PID          int       `json:"pid"`
	PPID         int       `json:"ppid"`
	Name         string    `json:"name"`
	Cmdline      string    `json:"cmdline,omitempty"`
	State        string    `json:"state"`
	Since        time.Time `json:"since"`
	ForSec       float64   `json:"for_s"`
	Wchan        string    `json:"wchan,omitempty"`
	KernelThread bool      `json:"kernel_thread,omitempty"`
	// TID and Thread name a worker thread of process PID (Name) that is in
	// State while its main thread is not; both are empty for the process
	// itself.
	TID    int    `json:"tid,omitempty"`
	Thread string `json:"thread,omitempty"`
}

// Unit is a systemd unit (Manager "systemd") or a Windows service
// (Manager "scm"). State is systemd's ActiveState, or the service state in
// lower case (stopped, start_pending, running, ...). Since is when the unit
// entered State as systemd reports it, or else the first sample that saw it
// in State.
type Unit struct {
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

// ProbeResult is the outcome of one liveness probe.
type ProbeResult struct {
	Name       string  `json:"name"`
	Target     string  `json:"target"`
	Alive      bool    `json:"alive"`
	HTTPStatus int     `json:"http_status,omitempty"`
	LatencyMS  float64 `json:"latency_ms"`
	Error      string  `json:"error,omitempty"`
}

// proc is one process, or one worker thread of a process, as a sample saw
// it. Wchan is read for D, T and Z, Switches only for D.
type proc struct {
	PID, PPID int
	Start     uint64 // clock ticks after boot: with PID (TID), names one task
	Name      string // comm of the process
	State     string // the letter of /proc/<pid>/stat
	Kernel    bool
	Wchan     string
	Switches  uint64 // voluntary plus involuntary context switches
	// TID and Thread are set for a worker thread: its id and its comm.
	// Start is then the thread's start time.
	TID    int
	Thread string
}

// key names what the check follows: a process by its pid, a worker thread
// by its tid (tids and pids share one number space), with the start time
// so that a reused number starts afresh.
func (pr proc) key() key {
	if pr.TID != 0 {
		return key{pr.TID, pr.Start}
	}
	return key{pr.PID, pr.Start}
}

type key struct {
	PID   int
	Start uint64
}

// seenState is what the check remembers of a process in D, T or Z.
type seenState struct {
	PID         int  // of the process, also when the key is a thread's
	Class       byte // 'D', 'T' or 'Z'
	Since       time.Time
	Switches    uint64
	Cmdline     string
	CmdlineRead bool
}

// errNoManager says that no service manager runs (no systemd), so
// there are no units to look at.
var errNoManager = errors.New("no service manager")

// source gathers for the check. cmdline may block (reading it
// takes the target's memory map lock, which a hung process may hold); the
// caller bounds it.
type source interface {
	processes(ctx context.Context) ([]proc, error)
	cmdline(pid int) (string, error)
	units(ctx context.Context, cfg Config) ([]Unit, error)
	// bootID names this boot of the system, "" where nothing does.
	bootID() string
}

// Processes is the processes check: hung, stopped and zombie processes,
// failed or stuck services, and application liveness probes.
type Processes struct {
	cfg    Config
	src    source
	logger *slog.Logger
	dial   func(ctx context.Context, network, addr string) (net.Conn, error)

	mu        sync.Mutex // serialises Run
	seen      map[key]seenState
	state     *checks.State // keeps seen across restarts; nil keeps nothing
	bootID    string
	saved     []byte // seen as last saved
	unitsSeen map[string]unitSeen

	busyMu sync.Mutex
	busy   map[key]bool // command lines being read, maybe stuck

	ev events
}

type unitSeen struct {
	State string
	Since time.Time
}

// New returns the processes check reading this system. It follows on from
// the processes that env.State says an earlier agent was following.
func New(cfg Config, env checks.Env) (*Processes, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	p := newCheck(cfg, newSource(cfg), env.Log())
	p.restore(env.State)
	return p, nil
}

func newCheck(cfg Config, src source, logger *slog.Logger) *Processes {
	var d net.Dialer
	return &Processes{
		cfg:       cfg.withDefaults(),
		src:       src,
		logger:    logger,
		dial:      d.DialContext,
		seen:      map[key]seenState{},
		unitsSeen: map[string]unitSeen{},
		busy:      map[key]bool{},
	}
}

// Name returns "processes".
func (p *Processes) Name() string { return Name }

// Run samples the processes, the units or services and the probes. It is
// unknown when the process table cannot be read, or when units were asked
// for and the service manager cannot be asked; findings from the parts that
// worked are still reported.
func (p *Processes) Run(ctx context.Context) checks.Result {
	p.mu.Lock()
	defer p.mu.Unlock()

	probes := make(chan []ProbeResult, 1)
	go func() { probes <- p.runProbes(ctx) }()

	var (
		data     = Data{Processes: []Proc{}, Units: []Unit{}}
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
		p.seen = track(p.seen, procs, now)
		p.readCmdlines(ctx)
		p.save()
		fs, listed, left := findingsOf(p.cfg, procs, p.seen, now)
		findings = append(findings, fs...)
		data.Processes, data.LeftOut = listed, left
		data.Total = len(procs)
		data.States = map[string]int{}
		for _, pr := range procs {
			data.States[pr.State]++
		}
	}

	units, err := p.src.units(ctx, p.cfg)
	switch {
	case errors.Is(err, errNoManager) && len(watched(p.cfg)) == 0:
		data.UnitsSkipped = err.Error()
	case err != nil:
		unknown = append(unknown, "units: "+err.Error())
	}
	p.unitsSeen = trackUnits(p.unitsSeen, units, now)
	findings = append(findings, unitFindings(units, now, p.cfg.ActivatingAfter.Duration)...)
	if len(units) > maxListed {
		data.UnitsLeftOut = len(units) - maxListed
		units = units[:maxListed]
	}
	data.Units = append(data.Units, units...)

	exits, ooms, dropped := p.ev.take()
	findings = eventFindings(findings, exits, ooms, dropped)
	data.ServiceExits, data.OOMKills = exits, ooms

	data.Probes = <-probes
	findings = append(findings, probeFindings(data.Probes)...)

	res := checks.Result{Status: checks.StatusOf(findings), Findings: findings, Data: data}
	switch {
	case len(unknown) > 0:
		data.Errors = unknown
		res.Data = data
		res.Status = protocol.StatusUnknown
		res.Summary = "could not gather " + strings.Join(unknown, "; ")
		if len(findings) > 0 {
			res.Summary += "; " + checks.JoinMessages(findings)
		}
	case len(findings) > 0:
		res.Summary = checks.JoinMessages(findings)
	default:
		res.Summary = okSummary(data)
	}
	res.Summary = protocol.Clip(res.Summary, protocol.MaxSummaryLen)
	return res
}

func okSummary(d Data) string {
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
