package checks

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
)

// Check is one diagnostic. Run never returns without a usable Result: when
// it cannot gather what it needs, the Result has status unknown and says why
// in its summary. A Check keeps state between runs (previous samples,
// streaks, snapshots), so one Check must not be run concurrently with
// itself; Runner makes sure of that.
type Check interface {
	Name() string
	Run(ctx context.Context) Result
}

// Watcher is implemented by checks that can learn of a change as it happens
// (a netlink message, an inotify event, a new log entry). Watch runs for the
// life of the agent and calls trigger whenever the check should run now
// rather than at its next interval. It returns nil when ctx ends, or an
// error when it cannot watch on this system; the check is then only polled.
// trigger never blocks.
type Watcher interface {
	Watch(ctx context.Context, trigger func()) error
}

// Committer is implemented by checks that keep a position between runs: a
// log cursor, a file offset, the last snapshot of a ruleset or of the
// installed packages. Run computes the new position but keeps it pending;
// Commit makes it the baseline and saves it in the state directory. The
// agent calls Commit only once the result that reported the change is
// stored in its spool, so a crash in between reports the change again
// instead of losing it.
type Committer interface {
	Commit() error
}

// Result is what one run of a check found. Data is check specific and is
// marshalled to JSON with snake_case field names.
type Result struct {
	Status   protocol.Status    `json:"status"`
	Summary  string             `json:"summary"`
	Findings []protocol.Finding `json:"findings,omitempty"`
	Data     any                `json:"data,omitempty"`
}

// StatusOf derives a status from findings: crit if any finding is crit, warn
// if any is warn, ok otherwise. Info findings do not raise the status.
func StatusOf(findings []protocol.Finding) protocol.Status {
	status := protocol.StatusOK
	for _, f := range findings {
		switch f.Severity {
		case protocol.SeverityCrit:
			return protocol.StatusCrit
		case protocol.SeverityWarn:
			status = protocol.StatusWarn
		}
	}
	return status
}

// Unknown is the result of a run that could not gather its data.
func Unknown(format string, args ...any) Result {
	return Result{Status: protocol.StatusUnknown, Summary: protocol.Clip(sprintf(format, args...), protocol.MaxSummaryLen)}
}

// Env is what the agent gives every check it builds.
type Env struct {
	Logger *slog.Logger
	// State keeps snapshots, cursors and offsets across restarts. It may be
	// nil (guestdiag-agent check without --state-dir): the check then starts
	// from nothing each time it is built.
	State *State
}

// Log returns Logger, or a logger that discards when Logger is nil.
func (e Env) Log() *slog.Logger {
	if e.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return e.Logger
}

// Registration describes a check to the agent. Checks register themselves
// from an init function with Register.
type Registration struct {
	Name string
	// Default says whether the check runs unless configured otherwise.
	Default bool
	// Interval is the default time between runs.
	Interval time.Duration
	// Timeout is the default time limit of one run.
	Timeout time.Duration
	// NewConfig returns a pointer to a fresh config holding the check's
	// defaults; the agent decodes its config file's settings for the check
	// into it before calling New.
	NewConfig func() any
	// New builds the check from a config returned by NewConfig.
	New func(cfg any, env Env) (Check, error)
}

var (
	registryMu sync.Mutex
	registry   = map[string]Registration{}
)

// Register adds a check whose config type is C. defaults returns C's default
// values; build makes the check from them.
func Register[C any](name string, on bool, interval, timeout time.Duration, defaults func() C, build func(C, Env) (Check, error)) {
	r := Registration{
		Name:     name,
		Default:  on,
		Interval: interval,
		Timeout:  timeout,
		NewConfig: func() any {
			c := defaults()
			return &c
		},
		New: func(cfg any, env Env) (Check, error) {
			if cfg == nil {
				return build(defaults(), env)
			}
			return build(*cfg.(*C), env)
		},
	}
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[r.Name]; dup {
		panic("checks: " + r.Name + " registered twice")
	}
	registry[r.Name] = r
}

// All returns every registered check, sorted by name.
func All() []Registration {
	registryMu.Lock()
	defer registryMu.Unlock()
	out := make([]Registration, 0, len(registry))
	for _, r := range registry {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Registration) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Lookup returns the registration of the named check.
func Lookup(name string) (Registration, bool) {
	registryMu.Lock()
	defer registryMu.Unlock()
	r, ok := registry[name]
	return r, ok
}
