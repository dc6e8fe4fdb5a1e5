package checks

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf16"

	"github.com/guestdiag/guestdiag/protocol"
)

// SoftwareName is the registered name of the software check.
const SoftwareName = "software"

func init() {
	register(SoftwareName, true, 15*time.Minute, time.Minute, DefaultSoftwareConfig,
		func(cfg SoftwareConfig, env Env) (Check, error) { return NewSoftware(cfg, env) })
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
	SoftwareSourceDpkg    = "dpkg"
	SoftwareSourceRPM     = "rpm"
	SoftwareSourceAPK     = "apk"
	SoftwareSourceWindows = "windows"
)

// The values of SoftwareConfig.RPM.
const (
	SoftwareRPMAuto = "auto"
	SoftwareRPMOn   = "on"
	SoftwareRPMOff  = "off"
)

// softwareFindingsPerCode is how many changes of one kind get a finding of
// their own; the rest of that kind share one aggregated finding. Three
// codes at 15 plus one each keep a result under 50 findings.
const softwareFindingsPerCode = 15

// SoftwareConfig tunes the software check. Empty fields take the defaults
// of DefaultSoftwareConfig.
type SoftwareConfig struct {
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
}

const softwareMaxListedLimit = 1000

// DefaultSoftwareConfig returns the usual database locations.
func DefaultSoftwareConfig() SoftwareConfig {
	return SoftwareConfig{
		Root:         "/",
		DpkgStatus:   "/var/lib/dpkg/status",
		APKInstalled: "/lib/apk/db/installed",
		RPM:          SoftwareRPMAuto,
		RPMDBPaths:   []string{"/usr/lib/sysimage/rpm", "/var/lib/rpm"},
		MaxListed:    500,
	}
}

func (c SoftwareConfig) withDefaults() (SoftwareConfig, error) {
	d := DefaultSoftwareConfig()
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
	case SoftwareRPMAuto, SoftwareRPMOn, SoftwareRPMOff:
	default:
		return c, fmt.Errorf("software: rpm %q: want auto, on or off", c.RPM)
	}
	if len(c.RPMDBPaths) == 0 {
		c.RPMDBPaths = d.RPMDBPaths
	}
	if c.MaxListed <= 0 {
		c.MaxListed = d.MaxListed
	}
	c.MaxListed = min(c.MaxListed, softwareMaxListedLimit)
	return c, nil
}

// softwarePackage is one installed package.
type softwarePackage struct {
	Name, Version, Arch string
}

// softwareDB is what one package database holds.
type softwareDB struct {
	Source   string // SoftwareSource*
	Path     string // the file or directory read
	Packages []softwarePackage
}

// softwareErrNoDatabase is returned by a gatherer that found no package
// database at all.
var softwareErrNoDatabase = errors.New("no package database found")

// softwareSnapshot is what the check remembers between runs: per source,
// the packages sorted by name, arch and version, each as [name, arch,
// version] to keep the state file small.
type softwareSnapshot struct {
	Sources map[string][][3]string `json:"sources"`
}

func softwareSnapshotOf(dbs []softwareDB) softwareSnapshot {
	s := softwareSnapshot{Sources: map[string][][3]string{}}
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

// The kinds of SoftwareChange.
const (
	softwareInstalled  = "installed"
	softwareRemoved    = "removed"
	softwareUpgraded   = "upgraded"
	softwareDowngraded = "downgraded"
)

// SoftwareChange is one package that changed since the last snapshot.
type SoftwareChange struct {
	Change     string `json:"change"` // installed, removed, upgraded or downgraded
	Source     string `json:"source"`
	Name       string `json:"name"`
	Arch       string `json:"arch,omitempty"`
	Version    string `json:"version,omitempty"` // the new version; the removed one for removed
	OldVersion string `json:"old_version,omitempty"`
}

// SoftwareData is the data of a software result.
type SoftwareData struct {
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
	GoneSources []string         `json:"gone_sources,omitempty"`
	Installed   int              `json:"installed"`
	Removed     int              `json:"removed"`
	Upgraded    int              `json:"upgraded"` // downgrades included
	Changes     []SoftwareChange `json:"changes,omitempty"`
	// ChangesOmitted counts the changes left out of Changes by max_listed.
	ChangesOmitted int `json:"changes_omitted,omitempty"`
}

// Software is the software check: installed packages and their changes
// since the last committed snapshot.
type Software struct {
	cfg    SoftwareConfig
	env    Env
	logger *slog.Logger
	gather func(ctx context.Context) ([]softwareDB, error)
	// watching, when set, is called once Watch is ready to see changes;
	// tests wait for it instead of sleeping.
	watching func()

	mu      sync.Mutex
	loaded  bool
	base    *softwareSnapshot // the committed snapshot; nil before the first
	pending *softwareSnapshot // computed by Run, saved by Commit
}

// softwareStateKey is the env.State key of the snapshot.
const softwareStateKey = "snapshot"

// NewSoftware returns the software check reading this system's package
// databases.
func NewSoftware(cfg SoftwareConfig, env Env) (*Software, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Software{cfg: cfg, env: env, logger: env.logger()}
	s.gather = s.gatherOS
	return s, nil
}

// Name returns "software".
func (s *Software) Name() string { return SoftwareName }

// Run reads every package database and compares it with the last committed
// snapshot. The new snapshot stays pending until Commit.
func (s *Software) Run(ctx context.Context) Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending = nil
	if !s.loaded {
		var snap softwareSnapshot
		ok, err := s.env.State.Load(softwareStateKey, &snap)
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
		return Unknown("%v", err)
	}
	cur := softwareSnapshotOf(dbs)
	data := SoftwareData{Packages: map[string]int{}, Databases: []string{}}
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
		return Result{
			Status:  protocol.StatusOK,
			Summary: protocol.Clip(fmt.Sprintf("baseline recorded: %d packages (%s)", data.Total, softwareCounts(data.Packages)), protocol.MaxSummaryLen),
			Data:    data,
		}
	}

	var changes []SoftwareChange
	for _, src := range slices.Sorted(maps.Keys(cur.Sources)) {
		old, ok := s.base.Sources[src]
		if !ok {
			data.NewSources = append(data.NewSources, src)
			continue
		}
		changes = append(changes, softwareDiff(src, old, cur.Sources[src])...)
	}
	for _, src := range slices.Sorted(maps.Keys(s.base.Sources)) {
		if _, ok := cur.Sources[src]; !ok {
			data.GoneSources = append(data.GoneSources, src)
		}
	}
	for _, c := range changes {
		switch c.Change {
		case softwareInstalled:
			data.Installed++
		case softwareRemoved:
			data.Removed++
		default:
			data.Upgraded++
		}
	}
	findings := softwareFindings(changes)
	if len(changes) > s.cfg.MaxListed {
		data.ChangesOmitted = len(changes) - s.cfg.MaxListed
		changes = changes[:s.cfg.MaxListed]
	}
	data.Changes = changes

	summary := fmt.Sprintf("%d packages (%s)", data.Total, softwareCounts(data.Packages))
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
	return Result{
		Status:   StatusOf(findings),
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
	if err := s.env.State.Save(softwareStateKey, s.base); err != nil {
		return fmt.Errorf("software: save snapshot: %w", err)
	}
	return nil
}

func softwareCounts(n map[string]int) string {
	parts := make([]string, 0, len(n))
	for _, src := range slices.Sorted(maps.Keys(n)) {
		parts = append(parts, fmt.Sprintf("%s %d", src, n[src]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// softwareDiff compares two sorted snapshots of one source. A package is
// its name and architecture; when one version of it went and one came, it
// was upgraded (or downgraded). Packages that may be installed in several
// versions at once (rpm's kernel) show each version that came or went as
// installed or removed.
func softwareDiff(src string, old, cur [][3]string) []SoftwareChange {
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

	var out []SoftwareChange
	for _, k := range sorted {
		b, a := before[k], after[k]
		gone := slices.DeleteFunc(slices.Clone(b), func(v string) bool { return slices.Contains(a, v) })
		came := slices.DeleteFunc(slices.Clone(a), func(v string) bool { return slices.Contains(b, v) })
		if len(gone) == 1 && len(came) == 1 {
			kind := softwareUpgraded
			if softwareCompareVersions(src, came[0], gone[0]) < 0 {
				kind = softwareDowngraded
			}
			out = append(out, SoftwareChange{Change: kind, Source: src, Name: k.name, Arch: k.arch, Version: came[0], OldVersion: gone[0]})
			continue
		}
		for _, v := range came {
			out = append(out, SoftwareChange{Change: softwareInstalled, Source: src, Name: k.name, Arch: k.arch, Version: v})
		}
		for _, v := range gone {
			out = append(out, SoftwareChange{Change: softwareRemoved, Source: src, Name: k.name, Arch: k.arch, Version: v})
		}
	}
	return out
}

// softwareFindings makes one info finding per change, up to
// softwareFindingsPerCode per code, and one more per code for the rest.
func softwareFindings(changes []SoftwareChange) []protocol.Finding {
	var findings []protocol.Finding
	for _, code := range []string{CodeSoftwareInstalled, CodeSoftwareRemoved, CodeSoftwareUpgraded} {
		var listed, rest int
		for _, c := range changes {
			if softwareCode(c.Change) != code {
				continue
			}
			if listed == softwareFindingsPerCode {
				rest++
				continue
			}
			listed++
			findings = append(findings, protocol.Finding{
				Code:     code,
				Severity: protocol.SeverityInfo,
				Message:  protocol.Clip(softwareMessage(c), protocol.MaxMessageLen),
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

func softwareCode(change string) string {
	switch change {
	case softwareInstalled:
		return CodeSoftwareInstalled
	case softwareRemoved:
		return CodeSoftwareRemoved
	}
	return CodeSoftwareUpgraded
}

func softwareMessage(c SoftwareChange) string {
	what := c.Name
	if c.Arch != "" {
		what += " (" + c.Arch + ")"
	}
	switch c.Change {
	case softwareInstalled, softwareRemoved:
		return fmt.Sprintf("%s %s %s [%s]", c.Change, what, c.Version, c.Source)
	}
	return fmt.Sprintf("%s %s from %s to %s [%s]", c.Change, what, c.OldVersion, c.Version, c.Source)
}

// softwareParseError locates a fault in a database file.
type softwareParseError struct {
	Line int
	Msg  string
}

func (e *softwareParseError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// softwareLines calls fn with each line of b and its number, without the
// line ending.
func softwareLines(b []byte, fn func(n int, line []byte) error) error {
	n := 0
	for len(b) > 0 {
		n++
		line, rest, _ := bytes.Cut(b, []byte("\n"))
		b = rest
		if err := fn(n, bytes.TrimSuffix(line, []byte("\r"))); err != nil {
			return err
		}
	}
	return nil
}

// parseSoftwareDpkgStatus reads dpkg's status file. A package counts as
// installed unless its state (the third word of Status) is not-installed
// or config-files. Held packages ("hold ok installed") and ones selected
// for removal but still there count. So do the states a package passes
// through while dpkg works (half-installed, unpacked, half-configured,
// triggers-awaited, triggers-pending): a run in the middle of an apt
// transaction would otherwise see them vanish and come back.
func parseSoftwareDpkgStatus(b []byte) ([]softwarePackage, error) {
	var (
		out   []softwarePackage
		cur   softwarePackage
		state string
		start int // line of the current paragraph's first field; 0 between paragraphs
	)
	flush := func() error {
		if start == 0 {
			return nil
		}
		if cur.Name == "" {
			return &softwareParseError{start, "paragraph without a Package field"}
		}
		if words := strings.Fields(state); len(words) == 3 && words[2] != "not-installed" && words[2] != "config-files" {
			out = append(out, cur)
		}
		cur, state, start = softwarePackage{}, "", 0
		return nil
	}
	err := softwareLines(b, func(n int, line []byte) error {
		if len(bytes.TrimSpace(line)) == 0 {
			return flush()
		}
		if line[0] == ' ' || line[0] == '\t' {
			if start == 0 {
				return &softwareParseError{n, "continuation line outside a paragraph"}
			}
			return nil // only multi-line fields such as Description continue
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || len(name) == 0 {
			return &softwareParseError{n, fmt.Sprintf("want Field: value, got %q", protocol.Clip(string(line), 80))}
		}
		if start == 0 {
			start = n
		}
		v := string(bytes.TrimSpace(value))
		switch string(name) {
		case "Package":
			cur.Name = v
		case "Version":
			cur.Version = v
		case "Architecture":
			cur.Arch = v
		case "Status":
			state = v
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	return out, err
}

// parseSoftwareAPKInstalled reads apk's installed database: one paragraph
// per package of "X:value" lines, P the name, V the version, A the arch.
func parseSoftwareAPKInstalled(b []byte) ([]softwarePackage, error) {
	var (
		out   []softwarePackage
		cur   softwarePackage
		start int
	)
	flush := func() error {
		if start == 0 {
			return nil
		}
		if cur.Name == "" || cur.Version == "" {
			return &softwareParseError{start, "package without P: or V:"}
		}
		out = append(out, cur)
		cur, start = softwarePackage{}, 0
		return nil
	}
	err := softwareLines(b, func(n int, line []byte) error {
		if len(line) == 0 {
			return flush()
		}
		if len(line) < 2 || line[1] != ':' {
			return &softwareParseError{n, fmt.Sprintf("want X:value, got %q", protocol.Clip(string(line), 80))}
		}
		if start == 0 {
			start = n
		}
		switch line[0] {
		case 'P':
			cur.Name = string(line[2:])
		case 'V':
			cur.Version = string(line[2:])
		case 'A':
			cur.Arch = string(line[2:])
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	return out, err
}

// softwareRPMQueryFormat makes `rpm -qa` print name, [epoch:]version-release
// and arch separated by tabs, one package a line.
const softwareRPMQueryFormat = `%{NAME}\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\t%{ARCH}\n`

// parseSoftwareRPMQuery reads the output of rpm -qa with
// softwareRPMQueryFormat. Packages without an arch (gpg-pubkey) print
// "(none)", which becomes empty.
func parseSoftwareRPMQuery(b []byte) ([]softwarePackage, error) {
	var out []softwarePackage
	err := softwareLines(b, func(n int, line []byte) error {
		if len(line) == 0 {
			return nil
		}
		f := strings.Split(string(line), "\t")
		if len(f) != 3 || f[0] == "" || f[1] == "" {
			return &softwareParseError{n, fmt.Sprintf("want name<TAB>version<TAB>arch, got %q", protocol.Clip(string(line), 80))}
		}
		arch := f[2]
		if arch == "(none)" {
			arch = ""
		}
		out = append(out, softwarePackage{Name: f[0], Version: f[1], Arch: arch})
		return nil
	})
	return out, err
}

// softwareRegEntry is one subkey of an Uninstall key with its values by
// lower-cased name; DWORDs and QWORDs are in decimal.
type softwareRegEntry struct {
	Key    string
	Values map[string]string
}

// softwareUninstallPackages picks the programs an administrator installed
// from the subkeys of one Uninstall key, the way Programs and Features
// does: it skips entries without DisplayName, system components and
// updates that name a parent.
func softwareUninstallPackages(entries []softwareRegEntry, arch string) []softwarePackage {
	var out []softwarePackage
	for _, e := range entries {
		name := strings.TrimSpace(e.Values["displayname"])
		if name == "" || e.Values["systemcomponent"] == "1" || e.Values["parentkeyname"] != "" {
			continue
		}
		// Registry text is free-form; keep one entry's share of a result small.
		out = append(out, softwarePackage{Name: protocol.Clip(name, 256), Version: protocol.Clip(strings.TrimSpace(e.Values["displayversion"]), 128), Arch: arch})
	}
	return out
}

// softwareUninstallKey is the path of the Uninstall key below HKLM; the
// 32-bit view of it is below WOW6432Node.
const softwareUninstallKey = `SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall`

// parseSoftwareRegExport reads a `reg export` of an Uninstall key (UTF-16LE
// with a byte order mark, as reg writes it, or UTF-8) and returns the
// subkeys of each view found in it by arch: x86 for keys below
// WOW6432Node, x64 otherwise.
func parseSoftwareRegExport(b []byte) (map[string][]softwareRegEntry, error) {
	text, err := softwareDecodeRegFile(b)
	if err != nil {
		return nil, err
	}
	type view struct {
		entries []softwareRegEntry
		index   map[string]int
	}
	views := map[string]*view{}
	var cur *softwareRegEntry
	var pending string // a hex value continued with a trailing backslash
	pendingLine := 0
	err = softwareLines([]byte(text), func(n int, line []byte) error {
		l := string(line)
		if pending != "" {
			pending += strings.TrimSpace(l)
			if strings.HasSuffix(pending, `\`) {
				pending = strings.TrimSuffix(pending, `\`)
				return nil
			}
			l, pending = pending, ""
			n = pendingLine
		}
		switch {
		case strings.TrimSpace(l) == "", strings.HasPrefix(l, ";"), n == 1 && (strings.HasPrefix(l, "Windows Registry Editor") || l == "REGEDIT4"):
			return nil
		case strings.HasPrefix(l, "["):
			path := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(l), "["), "]")
			cur = nil
			parent, sub, ok := softwareCutLast(path, `\`)
			if !ok || !strings.HasSuffix(strings.ToLower(parent), strings.ToLower(`\Uninstall`)) {
				return nil // the Uninstall key itself, or something deeper
			}
			arch := "x64"
			if strings.Contains(strings.ToLower(parent), `\wow6432node\`) {
				arch = "x86"
			}
			v := views[arch]
			if v == nil {
				v = &view{index: map[string]int{}}
				views[arch] = v
			}
			i, ok := v.index[sub]
			if !ok {
				i = len(v.entries)
				v.index[sub] = i
				v.entries = append(v.entries, softwareRegEntry{Key: sub, Values: map[string]string{}})
			}
			cur = &v.entries[i]
			return nil
		}
		if strings.HasSuffix(l, `\`) {
			pending, pendingLine = strings.TrimSuffix(strings.TrimSpace(l), `\`), n
			return nil
		}
		name, value, err := softwareRegValue(l)
		if err != nil {
			return &softwareParseError{n, err.Error()}
		}
		if cur != nil {
			cur.Values[strings.ToLower(name)] = value
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := map[string][]softwareRegEntry{}
	for arch, v := range views {
		out[arch] = v.entries
	}
	return out, nil
}

func softwareCutLast(s, sep string) (before, after string, found bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

// softwareDecodeRegFile returns the text of a .reg file: UTF-16LE after a
// byte order mark, else UTF-8 (with or without one).
func softwareDecodeRegFile(b []byte) (string, error) {
	if len(b) >= 2 && b[0] == 0xFF && b[1] == 0xFE {
		b = b[2:]
		if len(b)%2 != 0 {
			return "", errors.New("utf-16 registry export with an odd number of bytes")
		}
		u := make([]uint16, len(b)/2)
		for i := range u {
			u[i] = uint16(b[2*i]) | uint16(b[2*i+1])<<8
		}
		return string(utf16.Decode(u)), nil
	}
	return string(bytes.TrimPrefix(b, []byte("\xEF\xBB\xBF"))), nil
}

// softwareRegValue reads one `"name"=value` line of a .reg file, with
// continuation lines already joined. Strings and DWORDs become text;
// hex(2) (REG_EXPAND_SZ) is decoded; hex(b) (QWORD) becomes decimal; other
// binary types are kept as their hex text.
func softwareRegValue(l string) (name, value string, err error) {
	rest := l
	if strings.HasPrefix(rest, "@=") {
		name, rest = "", rest[1:]
	} else {
		if !strings.HasPrefix(rest, `"`) {
			return "", "", fmt.Errorf("want \"name\"=value, got %q", protocol.Clip(l, 80))
		}
		name, rest, err = softwareRegString(rest)
		if err != nil {
			return "", "", err
		}
	}
	if !strings.HasPrefix(rest, "=") {
		return "", "", fmt.Errorf("value %q: missing =", name)
	}
	rest = rest[1:]
	switch {
	case strings.HasPrefix(rest, `"`):
		value, tail, err := softwareRegString(rest)
		if err != nil || strings.TrimSpace(tail) != "" {
			return "", "", fmt.Errorf("value %q: bad string", name)
		}
		return name, value, nil
	case strings.HasPrefix(rest, "dword:"):
		v, err := strconv.ParseUint(strings.TrimSpace(rest[len("dword:"):]), 16, 32)
		if err != nil {
			return "", "", fmt.Errorf("value %q: %w", name, err)
		}
		return name, strconv.FormatUint(v, 10), nil
	case strings.HasPrefix(rest, "hex"):
		typ, hex, ok := strings.Cut(rest, ":")
		if !ok {
			return "", "", fmt.Errorf("value %q: missing : after hex", name)
		}
		raw, err := softwareRegHex(hex)
		if err != nil {
			return "", "", fmt.Errorf("value %q: %w", name, err)
		}
		switch typ {
		case "hex(2)", "hex(1)": // REG_EXPAND_SZ, REG_SZ written as hex
			u := make([]uint16, 0, len(raw)/2)
			for i := 0; i+1 < len(raw); i += 2 {
				u = append(u, uint16(raw[i])|uint16(raw[i+1])<<8)
			}
			s := string(utf16.Decode(u))
			s, _, _ = strings.Cut(s, "\x00")
			return name, s, nil
		case "hex(b)": // REG_QWORD, little-endian
			if len(raw) != 8 {
				return "", "", fmt.Errorf("value %q: qword of %d bytes", name, len(raw))
			}
			var v uint64
			for i := 7; i >= 0; i-- {
				v = v<<8 | uint64(raw[i])
			}
			return name, strconv.FormatUint(v, 10), nil
		}
		return name, hex, nil
	}
	return "", "", fmt.Errorf("value %q: unknown type in %q", name, protocol.Clip(rest, 40))
}

// softwareRegString reads a quoted .reg string, in which \\ and \" are the
// only escapes, and returns it with what follows the closing quote.
func softwareRegString(s string) (string, string, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			if i+1 >= len(s) {
				return "", "", errors.New("string ends in a backslash")
			}
			i++
			b.WriteByte(s[i])
		case '"':
			return b.String(), s[i+1:], nil
		default:
			b.WriteByte(c)
		}
	}
	return "", "", errors.New("unterminated string")
}

func softwareRegHex(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var out []byte
	for _, h := range strings.Split(s, ",") {
		v, err := strconv.ParseUint(strings.TrimSpace(h), 16, 8)
		if err != nil {
			return nil, fmt.Errorf("bad hex byte %q", h)
		}
		out = append(out, byte(v))
	}
	return out, nil
}

// softwareCompareVersions orders two versions of one package the way its
// package manager does: dpkg's rules for dpkg, rpmvercmp for rpm, and
// rpmvercmp as a fair approximation for apk and Windows, whose versions
// are dotted numbers with the odd letter suffix.
func softwareCompareVersions(src, a, b string) int {
	if src == SoftwareSourceDpkg {
		return softwareCompareDeb(a, b)
	}
	ea, va := softwareSplitEpoch(a)
	eb, vb := softwareSplitEpoch(b)
	if c := cmp.Compare(ea, eb); c != 0 {
		return c
	}
	if src != SoftwareSourceRPM {
		return softwareRPMVerCmp(va, vb)
	}
	verA, relA, _ := softwareCutLast(va, "-")
	verB, relB, _ := softwareCutLast(vb, "-")
	return cmp.Or(softwareRPMVerCmp(verA, verB), softwareRPMVerCmp(relA, relB))
}

// softwareSplitEpoch splits "epoch:rest"; no epoch is 0.
func softwareSplitEpoch(v string) (int, string) {
	e, rest, ok := strings.Cut(v, ":")
	if !ok {
		return 0, v
	}
	n, err := strconv.Atoi(e)
	if err != nil {
		return 0, v
	}
	return n, rest
}

// softwareCompareDeb compares Debian versions [epoch:]upstream[-revision].
func softwareCompareDeb(a, b string) int {
	ea, va := softwareSplitEpoch(a)
	eb, vb := softwareSplitEpoch(b)
	if c := cmp.Compare(ea, eb); c != 0 {
		return c
	}
	ua, ra, _ := softwareCutLast(va, "-")
	ub, rb, _ := softwareCutLast(vb, "-")
	return cmp.Or(softwareDebVerRevCmp(ua, ub), softwareDebVerRevCmp(ra, rb))
}

// softwareDebOrder ranks one character of a non-digit run: ~ sorts before
// everything, even the end of the string; letters before other symbols.
func softwareDebOrder(s string, i int) int {
	if i >= len(s) {
		return 0
	}
	c := s[i]
	switch {
	case c >= '0' && c <= '9':
		return 0
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		return int(c)
	case c == '~':
		return -1
	}
	return int(c) + 256
}

func softwareDebVerRevCmp(a, b string) int {
	isDigit := func(s string, i int) bool { return i < len(s) && s[i] >= '0' && s[i] <= '9' }
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		for (i < len(a) && !isDigit(a, i)) || (j < len(b) && !isDigit(b, j)) {
			if c := cmp.Compare(softwareDebOrder(a, i), softwareDebOrder(b, j)); c != 0 {
				return c
			}
			i, j = i+1, j+1
		}
		for i < len(a) && a[i] == '0' {
			i++
		}
		for j < len(b) && b[j] == '0' {
			j++
		}
		diff := 0
		for isDigit(a, i) && isDigit(b, j) {
			if diff == 0 {
				diff = cmp.Compare(a[i], b[j])
			}
			i, j = i+1, j+1
		}
		if isDigit(a, i) {
			return 1
		}
		if isDigit(b, j) {
			return -1
		}
		if diff != 0 {
			return diff
		}
	}
	return 0
}

// softwareRPMVerCmp compares two version (or release) strings as rpm does:
// alternating runs of digits and letters, separators ignored, digits newer
// than letters, ~ older than anything and ^ newer than the end.
func softwareRPMVerCmp(a, b string) int {
	if a == b {
		return 0
	}
	isAlnum := func(c byte) bool {
		return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
	}
	isDigit := func(c byte) bool { return c >= '0' && c <= '9' }
	for len(a) > 0 || len(b) > 0 {
		for len(a) > 0 && !isAlnum(a[0]) && a[0] != '~' && a[0] != '^' {
			a = a[1:]
		}
		for len(b) > 0 && !isAlnum(b[0]) && b[0] != '~' && b[0] != '^' {
			b = b[1:]
		}
		switch {
		case strings.HasPrefix(a, "~") || strings.HasPrefix(b, "~"):
			if !strings.HasPrefix(a, "~") {
				return 1
			}
			if !strings.HasPrefix(b, "~") {
				return -1
			}
			a, b = a[1:], b[1:]
			continue
		case strings.HasPrefix(a, "^") || strings.HasPrefix(b, "^"):
			if len(a) == 0 {
				return -1
			}
			if len(b) == 0 {
				return 1
			}
			if !strings.HasPrefix(a, "^") {
				return 1
			}
			if !strings.HasPrefix(b, "^") {
				return -1
			}
			a, b = a[1:], b[1:]
			continue
		}
		if len(a) == 0 || len(b) == 0 {
			break
		}
		run := func(s string, digits bool) (string, string) {
			i := 0
			for i < len(s) && isAlnum(s[i]) && isDigit(s[i]) == digits {
				i++
			}
			return s[:i], s[i:]
		}
		digits := isDigit(a[0])
		var sa, sb string
		sa, a = run(a, digits)
		sb, b = run(b, digits)
		if sb == "" {
			if digits {
				return 1
			}
			return -1
		}
		if digits {
			sa, sb = strings.TrimLeft(sa, "0"), strings.TrimLeft(sb, "0")
			if c := cmp.Compare(len(sa), len(sb)); c != 0 {
				return c
			}
		}
		if c := strings.Compare(sa, sb); c != 0 {
			return c
		}
	}
	switch {
	case len(a) == 0 && len(b) == 0:
		return 0
	case len(a) == 0:
		return -1
	}
	return 1
}
