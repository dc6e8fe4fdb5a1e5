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
// streaks), so one Check must not be run concurrently with itself.
type Check interface {
	Name() string
	Run(ctx context.Context) Result
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

// Registration describes a check to the agent.
type Registration struct {
	Name string
	// Default says whether the check runs unless configured otherwise.
	Default bool
	// Interval is the default time between runs.
	Interval time.Duration
	// New builds a fresh instance with default settings.
	New func(logger *slog.Logger) Check
}

var (
	registryMu sync.Mutex
	registry   = map[string]Registration{}
)

// register is called from the init function of each check's file.
func register(r Registration) {
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
