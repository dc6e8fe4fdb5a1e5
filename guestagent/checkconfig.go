package guestagent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/guestdiag/guestdiag/checks"
)

// CheckSettings are an administrator's settings for one check, from the
// "checks" object of the agent's config file. Zero fields keep the check's
// defaults.
type CheckSettings struct {
	// Enabled turns the check on or off; absent keeps its default.
	Enabled  *bool           `json:"enabled,omitempty"`
	Interval checks.Duration `json:"interval,omitzero"`
	Timeout  checks.Duration `json:"timeout,omitzero"`
	// Config is decoded into the check's own config, over its defaults.
	Config json.RawMessage `json:"config,omitempty"`
}

// FileConfig is the agent's config file (by default
// /etc/guestdiag/agent.json, or %ProgramData%\guestdiag\agent.json).
type FileConfig struct {
	Checks map[string]CheckSettings `json:"checks"`
}

// LoadConfigFile reads and checks a config file. Unknown keys, unknown
// checks and settings a check does not accept are errors that name the
// file and the check, so a typo is never silently ignored.
func LoadConfigFile(path string) (FileConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return FileConfig{}, err
	}
	var fc FileConfig
	if err := decodeStrict(b, &fc); err != nil {
		return FileConfig{}, fmt.Errorf("%s: %w", path, err)
	}
	for name, s := range fc.Checks {
		if _, err := checkConfig(name, s); err != nil {
			return FileConfig{}, fmt.Errorf("%s: %w", path, err)
		}
	}
	return fc, nil
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
	run := checks.Runner{Check: c, Interval: r.Interval, Timeout: r.Timeout, Logger: env.Logger}
	if s.Interval.Duration > 0 {
		run.Interval = s.Interval.Duration
	}
	if s.Timeout.Duration > 0 {
		run.Timeout = s.Timeout.Duration
	}
	return run, nil
}
