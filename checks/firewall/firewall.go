package firewall

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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

// Name is the registered name of the firewall check.
const Name = "firewall"

func init() {
	checks.Register(Name, true, 5*time.Minute, 30*time.Second, DefaultConfig,
		func(cfg Config, env checks.Env) (checks.Check, error) { return New(cfg, env), nil })
}

// Finding codes of the firewall check.
const (
	CodeFirewallDisabled = "fw.disabled"
	CodeFirewallChanged  = "fw.changed"
)

// Config tunes the firewall check.
type Config struct {
	// RequireEnabled says that the firewall must always be on: a firewall
	// that is off is reported as fw.disabled with DisabledSeverity. When
	// false, fw.disabled is still reported, as info, so that the state is
	// visible without raising the status.
	RequireEnabled bool `json:"require_enabled"`
	// DisabledSeverity is "crit" or "warn".
	DisabledSeverity string `json:"disabled_severity"`
	// IgnoreTables are left out of the decision and the fingerprint. An
	// entry matches a table by its full name ("inet filter", "legacy ip
	// nat") or by its last word ("filter", "libvirt_network").
	IgnoreTables []string `json:"ignore_tables"`
	// MaxListedRules caps the added and the removed rules listed in the
	// result's data; the counts are always complete.
	MaxListedRules int `json:"max_listed_rules"`
}

// DefaultConfig returns the defaults: the firewall must be on, and
// a firewall that is off is critical.
func DefaultConfig() Config {
	return Config{RequireEnabled: true, DisabledSeverity: "crit", MaxListedRules: 100}
}

func (c Config) withDefaults() Config {
	if c.DisabledSeverity != string(protocol.SeverityWarn) {
		c.DisabledSeverity = string(protocol.SeverityCrit)
	}
	if c.MaxListedRules <= 0 {
		c.MaxListedRules = DefaultConfig().MaxListedRules
	}
	return c
}

// maxChangedTables bounds the fw.changed findings of one result; the
// tables beyond it are summed up in one more finding.
const maxChangedTables = 20

// Data is the data of a firewall result.
type Data struct {
	Enabled bool `json:"enabled"`
	// Reasons says what made the firewall count as on, or why it is off.
	Reasons []string `json:"reasons"`
	// Sources are what was read: nftables, iptables-legacy,
	// ip6tables-legacy, registry.
	Sources []string `json:"sources"`
	// Firewalld and UFW are absent when not installed.
	Firewalld string    `json:"firewalld,omitempty"`
	UFW       string    `json:"ufw,omitempty"`
	Profiles  []Profile `json:"profiles,omitempty"`
	Tables    []Table   `json:"tables"`
	Ignored   []string  `json:"ignored_tables,omitempty"`
	// Fingerprint is the sha256 of the canonical ruleset text; Baseline is
	// the fingerprint it was compared with, absent on the first run.
	Fingerprint string `json:"fingerprint"`
	Baseline    string `json:"baseline_fingerprint,omitempty"`
	// Added and Removed list canonical rule lines ("<table> <chain>:
	// <rule>") up to max_listed_rules each; the counts are complete.
	Added        []string `json:"added,omitempty"`
	AddedCount   int      `json:"added_count,omitempty"`
	Removed      []string `json:"removed,omitempty"`
	RemovedCount int      `json:"removed_count,omitempty"`
	// Errors lists sources that could not be read although the result
	// could still be decided; change tracking is skipped for that run.
	Errors []string `json:"errors,omitempty"`
}

// Table summarises one table of the ruleset.
type Table struct {
	Name   string `json:"name"`
	Chains int    `json:"chains"`
	Rules  int    `json:"rules"`
}

// Profile is the effective state of one Windows firewall profile.
type Profile struct {
	Name    string `json:"name"`
	Enabled bool   `json:"enabled"`
	// Inbound is the default inbound action: "block" or "allow".
	Inbound string `json:"default_inbound"`
	// Policy is true when Group Policy set any of the two.
	Policy bool `json:"group_policy"`
}

// chain is one chain of a ruleset in canonical form. Table names carry
// the family ("inet filter") and, outside nftables, the backend ("legacy ip
// filter", "windows local").
type chain struct {
	Table  string
	Family string // ip, ip6, inet, arp, bridge, netdev; empty on Windows
	Name   string
	Hook   string // "input" for a base chain on the input hook
	Policy string // "accept", "drop" or empty for non-base chains
	// Header describes the chain itself (type, hook, priority, policy).
	Header string
	Rules  []string
	// FinalDrop is true when the last rule drops or rejects whatever
	// reaches it.
	FinalDrop bool
}

// gathered is what one gathering found.
type gathered struct {
	chains    []chain
	sources   []string
	firewalld string // "running", "not running", or empty when not installed
	ufw       string // "active", "inactive", "enabled but its chains are missing", or empty
	profiles  []Profile
	// errs are sources that failed while others answered.
	errs []string
}

// source gathers the ruleset and watches it on one OS.
type source interface {
	gather(ctx context.Context) (gathered, error)
	watch(ctx context.Context, trigger func()) error
}

// snapshot is the canonical ruleset: per table, its lines in order,
// each "<table> <chain>: <text>".
type snapshot struct {
	Fingerprint string              `json:"fingerprint"`
	Tables      map[string][]string `json:"tables"`
}

// Firewall is the firewall check: is a firewall on, and did its ruleset
// change since the last committed snapshot.
type Firewall struct {
	cfg    Config
	src    source
	state  *checks.State
	logger *slog.Logger

	mu       sync.Mutex
	loaded   bool
	baseline *snapshot
	pending  *snapshot
}

// New returns the firewall check for this OS.
func New(cfg Config, env checks.Env) *Firewall {
	return newCheck(cfg, newSource(env.Log()), env)
}

func newCheck(cfg Config, src source, env checks.Env) *Firewall {
	return &Firewall{cfg: cfg.withDefaults(), src: src, state: env.State, logger: env.Log()}
}

// Name returns "firewall".
func (f *Firewall) Name() string { return Name }

// Watch triggers a run on every change of the ruleset (an nftables netlink
// event, a registry change notification).
func (f *Firewall) Watch(ctx context.Context, trigger func()) error {
	return f.src.watch(ctx, trigger)
}

const stateKey = "snapshot"

// Run gathers the ruleset, decides whether the firewall is on and compares
// the ruleset with the committed baseline.
func (f *Firewall) Run(ctx context.Context) checks.Result {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pending = nil

	g, err := f.src.gather(ctx)
	if err != nil {
		return checks.Unknown("could not read the firewall: %v", err)
	}
	chains, ignored := filterTables(g.chains, f.cfg.IgnoreTables)
	enabled, reasons := decide(chains, g)
	snap := snapshotOf(chains)

	data := Data{
		Enabled:     enabled,
		Reasons:     reasons,
		Sources:     g.sources,
		Firewalld:   g.firewalld,
		UFW:         g.ufw,
		Profiles:    g.profiles,
		Tables:      tables(chains),
		Ignored:     ignored,
		Fingerprint: snap.Fingerprint,
		Errors:      g.errs,
	}
	if !enabled && len(g.errs) > 0 {
		// What could not be read may be what protects the guest.
		return checks.Result{
			Status:  protocol.StatusUnknown,
			Summary: protocol.Clip("no firewall found in what could be read, and could not read "+strings.Join(g.errs, "; "), protocol.MaxSummaryLen),
			Data:    data,
		}
	}

	var findings []protocol.Finding
	if !enabled {
		findings = append(findings, protocol.Finding{
			Code:     CodeFirewallDisabled,
			Severity: f.disabledSeverity(),
			Message:  protocol.Clip("firewall is off: "+strings.Join(reasons, "; "), protocol.MaxMessageLen),
		})
	}

	f.loadBaseline()
	// A partial gathering is not a ruleset to compare or to keep.
	if len(g.errs) == 0 {
		if f.baseline != nil && f.baseline.Fingerprint != snap.Fingerprint {
			data.Baseline = f.baseline.Fingerprint
			d := diff(*f.baseline, snap)
			findings = append(findings, d.findings()...)
			data.AddedCount, data.RemovedCount = len(d.added), len(d.removed)
			data.Added = capLines(d.added, f.cfg.MaxListedRules)
			data.Removed = capLines(d.removed, f.cfg.MaxListedRules)
		} else if f.baseline != nil {
			data.Baseline = f.baseline.Fingerprint
		}
		if f.baseline == nil || f.baseline.Fingerprint != snap.Fingerprint {
			f.pending = &snap
		}
	}

	res := checks.Result{Status: checks.StatusOf(findings), Findings: findings, Data: data}
	if len(findings) > 0 {
		res.Summary = checks.JoinMessages(findings)
	} else {
		res.Summary = "firewall is on: " + strings.Join(reasons, "; ")
	}
	res.Summary = protocol.Clip(res.Summary, protocol.MaxSummaryLen)
	return res
}

func (f *Firewall) disabledSeverity() protocol.Severity {
	if !f.cfg.RequireEnabled {
		return protocol.SeverityInfo
	}
	return protocol.Severity(f.cfg.DisabledSeverity)
}

// loadBaseline reads the committed snapshot once. A damaged state file
// starts afresh: the next commit replaces it.
func (f *Firewall) loadBaseline() {
	if f.loaded {
		return
	}
	f.loaded = true
	var s snapshot
	ok, err := f.state.Load(stateKey, &s)
	if err != nil {
		f.logger.Warn("firewall_state_unreadable", "err", err)
		return
	}
	if ok && s.Fingerprint != "" {
		f.baseline = &s
	}
}

// Commit makes the ruleset of the last run the baseline.
func (f *Firewall) Commit() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pending == nil {
		return nil
	}
	if err := f.state.Save(stateKey, f.pending); err != nil {
		return fmt.Errorf("firewall baseline: %w", err)
	}
	f.baseline, f.pending = f.pending, nil
	return nil
}

// filterTables leaves out the chains of ignored tables and returns the
// names of the tables it left out.
func filterTables(chains []chain, ignore []string) ([]chain, []string) {
	if len(ignore) == 0 {
		return chains, nil
	}
	var kept []chain
	var ignored []string
	for _, c := range chains {
		last := c.Table[strings.LastIndexByte(c.Table, ' ')+1:]
		if slices.Contains(ignore, c.Table) || slices.Contains(ignore, last) {
			if !slices.Contains(ignored, c.Table) {
				ignored = append(ignored, c.Table)
			}
			continue
		}
		kept = append(kept, c)
	}
	slices.Sort(ignored)
	return kept, ignored
}

// decide says whether a firewall is on, and why (or why not). On Windows
// every profile must be on and block inbound connections by default. On
// Linux a base chain on the input hook must drop or reject by policy or by
// its last rule, or firewalld must be running, or ufw active.
func decide(chains []chain, g gathered) (bool, []string) {
	if len(g.profiles) > 0 {
		var off []string
		for _, p := range g.profiles {
			by := ""
			if p.Policy {
				by = " (group policy)"
			}
			switch {
			case !p.Enabled:
				off = append(off, p.Name+" profile is off"+by)
			case p.Inbound != "block":
				off = append(off, p.Name+" profile allows inbound connections by default"+by)
			}
		}
		if len(off) > 0 {
			return false, off
		}
		return true, []string{"all profiles on, blocking inbound connections by default"}
	}

	var why []string
	for _, c := range chains {
		if c.Hook != "input" || !slices.Contains([]string{"ip", "ip6", "inet"}, c.Family) {
			continue
		}
		switch {
		case c.Policy == "drop":
			why = append(why, c.Table+" "+c.Name+" drops by policy")
		case c.FinalDrop:
			why = append(why, c.Table+" "+c.Name+" drops or rejects by its last rule")
		}
	}
	if g.firewalld == "running" {
		why = append(why, "firewalld is running")
	}
	if g.ufw == "active" {
		why = append(why, "ufw is active")
	}
	if len(why) > 0 {
		return true, why
	}
	var off []string
	if len(chains) == 0 {
		off = append(off, "the ruleset is empty")
	} else {
		off = append(off, "no input chain drops or rejects by policy or by its last rule")
	}
	if g.firewalld != "" {
		off = append(off, "firewalld is "+g.firewalld)
	}
	if g.ufw != "" {
		off = append(off, "ufw is "+g.ufw)
	}
	return false, off
}

// snapshotOf puts chains into canonical form: tables and the chains in
// them sorted by name, rules in their order, which is part of what a
// ruleset means. Volatile parts (handles, counter values) never get here.
func snapshotOf(chains []chain) snapshot {
	sorted := slices.Clone(chains)
	slices.SortStableFunc(sorted, func(a, b chain) int {
		if c := strings.Compare(a.Table, b.Table); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	s := snapshot{Tables: map[string][]string{}}
	for _, c := range sorted {
		prefix := c.Table + " " + c.Name + ": "
		lines := append(s.Tables[c.Table], prefix+"chain"+spaced(c.Header))
		for _, r := range c.Rules {
			lines = append(lines, prefix+r)
		}
		s.Tables[c.Table] = lines
	}
	s.Fingerprint = s.fingerprint()
	return s
}

func spaced(s string) string {
	if s == "" {
		return ""
	}
	return " " + s
}

func (s snapshot) fingerprint() string {
	h := sha256.New()
	for _, t := range slices.Sorted(maps.Keys(s.Tables)) {
		for _, l := range s.Tables[t] {
			h.Write([]byte(l))
			h.Write([]byte{'\n'})
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

func tables(chains []chain) []Table {
	var out []Table
	idx := map[string]int{}
	for _, c := range chains {
		i, ok := idx[c.Table]
		if !ok {
			i = len(out)
			idx[c.Table] = i
			out = append(out, Table{Name: c.Table})
		}
		out[i].Chains++
		out[i].Rules += len(c.Rules)
	}
	slices.SortFunc(out, func(a, b Table) int { return strings.Compare(a.Name, b.Name) })
	return append([]Table{}, out...)
}

// tableDiff is how one table changed.
type tableDiff struct {
	table            string
	added, removed   []string
	reorderedOnly    bool
	rulesAdded       int
	rulesRemoved     int
	chainLinesChange int
}

type changes struct {
	tables         []tableDiff
	added, removed []string
}

// diff compares two snapshots line by line, as multisets per table, so
// that a rule added at the top of a chain is one added rule, not a shifted
// chain. A table whose lines only moved is reported as reordered.
func diff(old, cur snapshot) changes {
	var ch changes
	names := slices.Sorted(maps.Keys(old.Tables))
	for _, t := range slices.Sorted(maps.Keys(cur.Tables)) {
		if _, ok := old.Tables[t]; !ok {
			names = append(names, t)
		}
	}
	slices.Sort(names)
	for _, t := range names {
		o, c := old.Tables[t], cur.Tables[t]
		if slices.Equal(o, c) {
			continue
		}
		d := tableDiff{table: t}
		d.added, d.removed = multisetDiff(o, c)
		d.reorderedOnly = len(d.added) == 0 && len(d.removed) == 0
		for _, l := range d.added {
			if isChainLine(l) {
				d.chainLinesChange++
			} else {
				d.rulesAdded++
			}
		}
		for _, l := range d.removed {
			if isChainLine(l) {
				d.chainLinesChange++
			} else {
				d.rulesRemoved++
			}
		}
		ch.tables = append(ch.tables, d)
		ch.added = append(ch.added, d.added...)
		ch.removed = append(ch.removed, d.removed...)
	}
	return ch
}

// isChainLine tells a chain's header line from a rule line.
func isChainLine(l string) bool {
	i := strings.Index(l, ": ")
	if i < 0 {
		return false
	}
	rest := l[i+2:]
	return rest == "chain" || strings.HasPrefix(rest, "chain ")
}

// multisetDiff returns the lines of cur missing from old (added) and of
// old missing from cur (removed), each in its original order.
func multisetDiff(old, cur []string) (added, removed []string) {
	count := map[string]int{}
	for _, l := range old {
		count[l]++
	}
	for _, l := range cur {
		if count[l] > 0 {
			count[l]--
			continue
		}
		added = append(added, l)
	}
	for _, l := range old {
		if count[l] > 0 {
			count[l]--
			removed = append(removed, l)
		}
	}
	return added, removed
}

func (ch changes) findings() []protocol.Finding {
	var out []protocol.Finding
	for i, d := range ch.tables {
		if i == maxChangedTables {
			rest := ch.tables[i:]
			a, r := 0, 0
			for _, d := range rest {
				a += len(d.added)
				r += len(d.removed)
			}
			out = append(out, protocol.Finding{
				Code:     CodeFirewallChanged,
				Severity: protocol.SeverityWarn,
				Message:  fmt.Sprintf("%d more tables changed: %d lines added, %d removed", len(rest), a, r),
				Count:    uint64(len(rest)),
			})
			break
		}
		out = append(out, protocol.Finding{
			Code:     CodeFirewallChanged,
			Severity: protocol.SeverityWarn,
			Message:  protocol.Clip(d.message(), protocol.MaxMessageLen),
			Source:   protocol.Clip(d.table, protocol.MaxSourceLen),
		})
	}
	return out
}

func (d tableDiff) message() string {
	if d.reorderedOnly {
		return "rules reordered in table " + d.table
	}
	var parts []string
	switch {
	case d.rulesAdded > 0 && d.rulesRemoved > 0:
		parts = append(parts, fmt.Sprintf("%s added, %d removed", plural(d.rulesAdded, "rule"), d.rulesRemoved))
	case d.rulesAdded > 0:
		parts = append(parts, plural(d.rulesAdded, "rule")+" added")
	case d.rulesRemoved > 0:
		parts = append(parts, plural(d.rulesRemoved, "rule")+" removed")
	}
	if d.chainLinesChange > 0 {
		parts = append(parts, plural(d.chainLinesChange, "chain definition")+" added or removed")
	}
	return strings.Join(parts, ", ") + " in table " + d.table
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func capLines(lines []string, n int) []string {
	if len(lines) <= n {
		return lines
	}
	return lines[:n]
}
