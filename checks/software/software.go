package software

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/guestdiag/guestdiag/checks"
	"github.com/guestdiag/guestdiag/protocol"
)

// Name is the registered name of the software check.
const Name = "software"

func init() {
	checks.Register(Name, true, 15*time.Minute, time.Minute, DefaultConfig,
		func(cfg Config, env checks.Env) (checks.Check, error) { return New(cfg, env) })
}

// Finding codes of the software check. All are info: a package change is
// news for the administrator, not a fault, so the status stays ok.
const (
	CodeSoftwareInstalled = "sw.installed"
	CodeSoftwareRemoved   = "sw.removed"
	// CodeSoftwareUpgraded covers downgrades as well; the message and the
	// change's kind in the data tell them apart.
	CodeSoftwareUpgraded = "sw.upgraded"
)

// Package sources: the package database a package was read from.
const (
	SourceDpkg    = "dpkg"
	SourceRPM     = "rpm"
	SourceAPK     = "apk"
	SourceWindows = "windows"
)

// The values of Config.RPM.
const (
	RPMAuto = "auto"
	RPMOn   = "on"
	RPMOff  = "off"
)

// findingsPerCode is how many changes of one kind get a finding of
// their own; the rest of that kind share one aggregated finding. Three
// codes at 15 plus one each keep a result under 50 findings.
const findingsPerCode = 15

// Config tunes the software check. Empty fields take the defaults
// of DefaultConfig.
type Config struct {
	// Root is prefixed to every database path (Linux), so that a test or a
	// rescue system can read another tree.
	Root string `json:"root"`
	// DpkgStatus is dpkg's status file.
	DpkgStatus string `json:"dpkg_status"`
	// APKInstalled is apk's database of installed packages.
	APKInstalled string `json:"apk_installed"`
	// RPM says whether to read the rpm database: auto reads it when one of
	// RPMDBPaths holds one, on requires it, off never reads it. It is read
	// with `rpm -qa`, which every RPM system has.
	RPM string `json:"rpm"`
	// RPMDBPaths are the directories searched, in order, for an rpm
	// database (rpmdb.sqlite, Packages.db or Packages).
	RPMDBPaths []string `json:"rpm_dbpaths"`
	// MaxListed caps the changes listed in a result's data; at most
	// 1000, which keeps the data near 150 KiB.
	MaxListed int `json:"max_listed"`
	// Settle is how long the package databases must stay unchanged after
	// a change before the check runs, so that one apt or dnf run, which
	// rewrites them many times, makes one result. SettleMax bounds that
	// wait while they keep changing.
	Settle    checks.Duration `json:"settle"`
	SettleMax checks.Duration `json:"settle_max"`
}

const maxListedLimit = 1000

// DefaultConfig returns the usual database locations.
func DefaultConfig() Config {
	return Config{
		Root:         "/",
		DpkgStatus:   "/var/lib/dpkg/status",
		APKInstalled: "/lib/apk/db/installed",
		RPM:          RPMAuto,
		RPMDBPaths:   []string{"/usr/lib/sysimage/rpm", "/var/lib/rpm"},
		MaxListed:    500,
		Settle:       checks.D(5 * time.Second),
		SettleMax:    checks.D(time.Minute),
	}
}

func (c Config) withDefaults() (Config, error) {
	d := DefaultConfig()
	if c.Root == "" {
		c.Root = d.Root
	}
	if c.DpkgStatus == "" {
		c.DpkgStatus = d.DpkgStatus
	}
	if c.APKInstalled == "" {
		c.APKInstalled = d.APKInstalled
	}
	switch c.RPM {
	case "":
		c.RPM = d.RPM
	case RPMAuto, RPMOn, RPMOff:
	default:
		return c, fmt.Errorf("software: rpm %q: want auto, on or off", c.RPM)
	}
	if len(c.RPMDBPaths) == 0 {
		c.RPMDBPaths = d.RPMDBPaths
	}
	if c.MaxListed <= 0 {
		c.MaxListed = d.MaxListed
	}
	c.MaxListed = min(c.MaxListed, maxListedLimit)
	if c.Settle.Duration <= 0 {
		c.Settle = d.Settle
	}
	if c.SettleMax.Duration <= 0 {
		c.SettleMax = d.SettleMax
	}
	return c, nil
}

// pkg is one installed package.
type pkg struct {
	Name, Version, Arch string
}

// database is what one package database holds.
type database struct {
	Source   string // SoftwareSource*
	Path     string // the file or directory read
	Packages []pkg
}

// errNoDatabase is returned by a gatherer that found no package
// database at all.
var errNoDatabase = errors.New("no package database found")

// snapshot is what the check remembers between runs: per source,
// the packages sorted by name, arch and version, each as [name, arch,
// version] to keep the state file small.
type snapshot struct {
	Sources map[string][][3]string `json:"sources"`
}

func snapshotOf(dbs []database) snapshot {
	s := snapshot{Sources: map[string][][3]string{}}
	for _, db := range dbs {
		rows := make([][3]string, 0, len(db.Packages))
		for _, p := range db.Packages {
			rows = append(rows, [3]string{p.Name, p.Arch, p.Version})
		}
		slices.SortFunc(rows, func(a, b [3]string) int {
			return cmp.Or(strings.Compare(a[0], b[0]), strings.Compare(a[1], b[1]), strings.Compare(a[2], b[2]))
		})
		s.Sources[db.Source] = slices.Compact(append(s.Sources[db.Source], rows...))
	}
	return s
}

// The kinds of Change.
const (
	installed  = "installed"
	removed    = "removed"
	upgraded   = "upgraded"
	downgraded = "downgraded"
)

// Change is one package that changed since the last snapshot.
type Change struct {
	Change     string `json:"change"` // installed, removed, upgraded or downgraded
	Source     string `json:"source"`
	Name       string `json:"name"`
	Arch       string `json:"arch,omitempty"`
	Version    string `json:"version,omitempty"` // the new version; the removed one for removed
	OldVersion string `json:"old_version,omitempty"`
}

// Data is the data of a software result.
type Data struct {
	// Baseline is true when this run recorded the first snapshot and so
	// reports no changes.
	Baseline bool `json:"baseline,omitempty"`
	// Packages counts the installed packages per source.
	Packages map[string]int `json:"packages"`
	Total    int            `json:"total"`
	// Databases are the files or directories read.
	Databases []string `json:"databases"`
	// NewSources were not in the last snapshot; they are recorded as a
	// baseline of their own instead of as thousands of installs.
	NewSources []string `json:"new_sources,omitempty"`
	// GoneSources were in the last snapshot but have no database now.
	GoneSources []string `json:"gone_sources,omitempty"`
	Installed   int      `json:"installed"`
	Removed     int      `json:"removed"`
	Upgraded    int      `json:"upgraded"` // downgrades included
	Changes     []Change `json:"changes,omitempty"`
	// ChangesOmitted counts the changes left out of Changes by max_listed.
	ChangesOmitted int `json:"changes_omitted,omitempty"`
}

// Software is the software check: installed packages and their changes
// since the last committed snapshot.
type Software struct {
	cfg    Config
	env    checks.Env
	logger *slog.Logger
	gather func(ctx context.Context) ([]database, error)

	mu      sync.Mutex
	loaded  bool
	base    *snapshot // the committed snapshot; nil before the first
	pending *snapshot // computed by Run, saved by Commit
}

// stateKey is the env.State key of the snapshot.
const stateKey = "snapshot"

// New returns the software check reading this system's package
// databases.
func New(cfg Config, env checks.Env) (*Software, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Software{cfg: cfg, env: env, logger: env.Log()}
	s.gather = s.gatherOS
	return s, nil
}

// Name returns "software".
func (s *Software) Name() string { return Name }

// Settle makes the Runner wait for the package databases to go quiet
// after a change (checks.Settler).
func (s *Software) Settle() (quiet, max time.Duration) {
	return s.cfg.Settle.Duration, s.cfg.SettleMax.Duration
}

// Run reads every package database and compares it with the last committed
// snapshot. The new snapshot stays pending until Commit.
func (s *Software) Run(ctx context.Context) checks.Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending = nil
	if !s.loaded {
		var snap snapshot
		ok, err := s.env.State.Load(stateKey, &snap)
		switch {
		case err != nil:
			s.logger.Warn("software_state_unreadable", "err", err)
		case ok && snap.Sources != nil:
			s.base = &snap
		}
		s.loaded = true
	}

	dbs, err := s.gather(ctx)
	if err != nil {
		return checks.Unknown("%v", err)
	}
	cur := snapshotOf(dbs)
	data := Data{Packages: map[string]int{}, Databases: []string{}}
	for _, db := range dbs {
		data.Databases = append(data.Databases, db.Path)
	}
	for src, rows := range cur.Sources {
		data.Packages[src] = len(rows)
		data.Total += len(rows)
	}
	s.pending = &cur

	if s.base == nil {
		data.Baseline = true
		return checks.Result{
			Status:  protocol.StatusOK,
			Summary: protocol.Clip(fmt.Sprintf("baseline recorded: %d packages (%s)", data.Total, counts(data.Packages)), protocol.MaxSummaryLen),
			Data:    data,
		}
	}

	var changes []Change
	for _, src := range slices.Sorted(maps.Keys(cur.Sources)) {
		old, ok := s.base.Sources[src]
		if !ok {
			data.NewSources = append(data.NewSources, src)
			continue
		}
		changes = append(changes, diff(src, old, cur.Sources[src])...)
	}
	for _, src := range slices.Sorted(maps.Keys(s.base.Sources)) {
		if _, ok := cur.Sources[src]; !ok {
			data.GoneSources = append(data.GoneSources, src)
		}
	}
	for _, c := range changes {
		switch c.Change {
		case installed:
			data.Installed++
		case removed:
			data.Removed++
		default:
			data.Upgraded++
		}
	}
	findings := findingsOf(changes)
	if len(changes) > s.cfg.MaxListed {
		data.ChangesOmitted = len(changes) - s.cfg.MaxListed
		changes = changes[:s.cfg.MaxListed]
	}
	data.Changes = changes

	summary := fmt.Sprintf("%d packages (%s)", data.Total, counts(data.Packages))
	if n := data.Installed + data.Removed + data.Upgraded; n > 0 {
		noun := "changes"
		if n == 1 {
			noun = "change"
		}
		summary = fmt.Sprintf("%d package %s since the last snapshot: %d installed, %d removed, %d upgraded; %s",
			n, noun, data.Installed, data.Removed, data.Upgraded, summary)
	} else {
		summary = "no package changes; " + summary
	}
	if len(data.NewSources) > 0 {
		summary += "; baseline recorded for " + strings.Join(data.NewSources, ", ")
	}
	if len(data.GoneSources) > 0 {
		summary += "; database gone: " + strings.Join(data.GoneSources, ", ")
	}
	return checks.Result{
		Status:   checks.StatusOf(findings),
		Summary:  protocol.Clip(summary, protocol.MaxSummaryLen),
		Findings: findings,
		Data:     data,
	}
}

// Commit makes the snapshot of the last run the baseline and saves it. The
// baseline moves on in memory even when saving fails, so that this agent
// does not report the same changes again; a restart would.
func (s *Software) Commit() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending == nil {
		return nil
	}
	s.base, s.pending = s.pending, nil
	if err := s.env.State.Save(stateKey, s.base); err != nil {
		return fmt.Errorf("software: save snapshot: %w", err)
	}
	return nil
}

func counts(n map[string]int) string {
	parts := make([]string, 0, len(n))
	for _, src := range slices.Sorted(maps.Keys(n)) {
		parts = append(parts, fmt.Sprintf("%s %d", src, n[src]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// diff compares two sorted snapshots of one source. A package is
// its name and architecture; when one version of it went and one came, it
// was upgraded (or downgraded). Packages that may be installed in several
// versions at once (rpm's kernel) show each version that came or went as
// installed or removed.
func diff(src string, old, cur [][3]string) []Change {
	type key struct{ name, arch string }
	versions := func(rows [][3]string) map[key][]string {
		m := map[key][]string{}
		for _, r := range rows {
			k := key{r[0], r[1]}
			m[k] = append(m[k], r[2])
		}
		return m
	}
	before, after := versions(old), versions(cur)
	keys := map[key]bool{}
	for k := range before {
		keys[k] = true
	}
	for k := range after {
		keys[k] = true
	}
	sorted := slices.SortedFunc(maps.Keys(keys), func(a, b key) int { return cmp.Or(strings.Compare(a.name, b.name), strings.Compare(a.arch, b.arch)) })

	var out []Change
	for _, k := range sorted {
		b, a := before[k], after[k]
		gone := slices.DeleteFunc(slices.Clone(b), func(v string) bool { return slices.Contains(a, v) })
		came := slices.DeleteFunc(slices.Clone(a), func(v string) bool { return slices.Contains(b, v) })
		if len(gone) == 1 && len(came) == 1 {
			kind := upgraded
			if compareVersions(src, came[0], gone[0]) < 0 {
				kind = downgraded
			}
			out = append(out, Change{Change: kind, Source: src, Name: k.name, Arch: k.arch, Version: came[0], OldVersion: gone[0]})
			continue
		}
		for _, v := range came {
			out = append(out, Change{Change: installed, Source: src, Name: k.name, Arch: k.arch, Version: v})
		}
		for _, v := range gone {
			out = append(out, Change{Change: removed, Source: src, Name: k.name, Arch: k.arch, Version: v})
		}
	}
	return out
}

// findingsOf makes one info finding per change, up to
// findingsPerCode per code, and one more per code for the rest.
func findingsOf(changes []Change) []protocol.Finding {
	var findings []protocol.Finding
	for _, code := range []string{CodeSoftwareInstalled, CodeSoftwareRemoved, CodeSoftwareUpgraded} {
		var listed, rest int
		for _, c := range changes {
			if codeOf(c.Change) != code {
				continue
			}
			if listed == findingsPerCode {
				rest++
				continue
			}
			listed++
			findings = append(findings, protocol.Finding{
				Code:     code,
				Severity: protocol.SeverityInfo,
				Message:  protocol.Clip(message(c), protocol.MaxMessageLen),
				Source:   protocol.Clip(c.Source+":"+c.Name, protocol.MaxSourceLen),
			})
		}
		if rest > 0 {
			verb := map[string]string{CodeSoftwareInstalled: "installed", CodeSoftwareRemoved: "removed", CodeSoftwareUpgraded: "upgraded or downgraded"}[code]
			findings = append(findings, protocol.Finding{
				Code:     code,
				Severity: protocol.SeverityInfo,
				Message:  fmt.Sprintf("%d more packages %s (listed in the data)", rest, verb),
				Count:    uint64(rest),
			})
		}
	}
	return findings
}

func codeOf(change string) string {
	switch change {
	case installed:
		return CodeSoftwareInstalled
	case removed:
		return CodeSoftwareRemoved
	}
	return CodeSoftwareUpgraded
}

func message(c Change) string {
	what := c.Name
	if c.Arch != "" {
		what += " (" + c.Arch + ")"
	}
	switch c.Change {
	case installed, removed:
		return fmt.Sprintf("%s %s %s [%s]", c.Change, what, c.Version, c.Source)
	}
	return fmt.Sprintf("%s %s from %s to %s [%s]", c.Change, what, c.OldVersion, c.Version, c.Source)
}
