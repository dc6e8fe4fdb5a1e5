package guestagent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/guestdiag/guestdiag/checks"
)

// CheckSettings are an administrator's settings for one check, from the
// "checks" mapping of the agent's config file. Zero fields keep the check's
// defaults.
type CheckSettings struct {
	// Enabled turns the check on or off; absent keeps its default.
	Enabled  *bool           `json:"enabled,omitempty"`
	Interval checks.Duration `json:"interval,omitzero"`
	Timeout  checks.Duration `json:"timeout,omitzero"`
	// CPUBudget is the CPU time one run may use before the run's result
	// carries an agent.budget_exceeded finding.
	CPUBudget checks.Duration `json:"cpu_budget,omitzero"`
	// Config is decoded into the check's own config, over its defaults.
	Config json.RawMessage `json:"config,omitempty"`
}

func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return fmt.Errorf("byte %d: %w", se.Offset, err)
		}
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the top-level object")
	}
	return nil
}

// checkConfig returns the named check's config: its defaults with s.Config
// decoded over them.
func checkConfig(name string, s CheckSettings) (any, error) {
	r, ok := checks.Lookup(name)
	if !ok {
		return nil, fmt.Errorf("unknown check %q", name)
	}
	cfg := r.NewConfig()
	if len(s.Config) > 0 {
		if err := decodeStrict(s.Config, cfg); err != nil {
			return nil, fmt.Errorf("checks.%s.config: %w", name, err)
		}
	}
	return cfg, nil
}

// selectChecks builds the checks that are on: those on by default unless
// turned off, and those turned on.
func selectChecks(cfg Config, logger *slog.Logger) ([]checks.Runner, error) {
	for name := range cfg.Checks {
		if _, ok := checks.Lookup(name); !ok {
			return nil, fmt.Errorf("unknown check %q", name)
		}
	}
	var out []checks.Runner
	for _, r := range checks.All() {
		s := cfg.Checks[r.Name]
		if s.Enabled == nil && !r.Default || s.Enabled != nil && !*s.Enabled {
			continue
		}
		run, err := BuildCheck(r.Name, s, cfg.StateDir, logger)
		if err != nil {
			return nil, err
		}
		run.Grace = cfg.CheckGrace
		out = append(out, run)
	}
	return out, nil
}

// BuildCheck makes the named check with settings s, keeping its state under
// stateDir (nothing is kept when stateDir is empty), and returns a Runner
// for it without Report.
func BuildCheck(name string, s CheckSettings, stateDir string, logger *slog.Logger) (checks.Runner, error) {
	r, ok := checks.Lookup(name)
	if !ok {
		return checks.Runner{}, fmt.Errorf("unknown check %q", name)
	}
	ccfg, err := checkConfig(name, s)
	if err != nil {
		return checks.Runner{}, err
	}
	env := checks.Env{Logger: logger.With("check", name)}
	if stateDir != "" {
		env.State = checks.NewState(filepath.Join(stateDir, "checks"), name)
	}
	c, err := r.New(ccfg, env)
	if err != nil {
		return checks.Runner{}, fmt.Errorf("check %s: %w", name, err)
	}
	eff := resolveCheck(r, s)
	return checks.Runner{
		Check: c, Interval: eff.interval, Timeout: eff.timeout, Logger: env.Logger,
		CPUBudget: eff.cpuBudget, CPUTime: processCPU,
	}, nil
}

// DefaultCPUBudget is the CPU time one run of a check may use unless its
// settings say otherwise. A cycle of all six checks takes about 20 ms
// (docs/benchmarks.md), so this leaves wide room.
const DefaultCPUBudget = time.Second

type effective struct {
	enabled                      bool
	interval, timeout, cpuBudget time.Duration
}

// resolveCheck applies s over the registration's defaults.
func resolveCheck(r checks.Registration, s CheckSettings) effective {
	e := effective{enabled: r.Default, interval: r.Interval, timeout: r.Timeout, cpuBudget: DefaultCPUBudget}
	if s.Enabled != nil {
		e.enabled = *s.Enabled
	}
	if s.Interval.Duration > 0 {
		e.interval = s.Interval.Duration
	}
	if s.Timeout.Duration > 0 {
		e.timeout = s.Timeout.Duration
	}
	if s.CPUBudget.Duration > 0 {
		e.cpuBudget = s.CPUBudget.Duration
	}
	return e
}

// ParseSize reads "1048576", "512KiB", "16MiB", "1GiB"; K, M and G alone
// are taken as binary units too.
func ParseSize(v string) (int64, error) {
	num := strings.TrimSpace(v)
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q: want a positive number of bytes, optionally with KiB, MiB or GiB", v)
	}
	return n * mult, nil
}

var sizeUnits = []struct {
	suffix string
	mult   int64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}}

// FormatSize writes n with the largest binary unit that divides it.
func FormatSize(n int64) string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.mult && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}
