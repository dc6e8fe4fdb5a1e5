package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/guestdiag/guestdiag/scheduler/inventory"
	"github.com/guestdiag/guestdiag/scheduler/lease"
	"github.com/guestdiag/guestdiag/scheduler/planner"
)

// DefaultConfigPath is where run, plan and config check look.
const DefaultConfigPath = "/etc/guestdiag/scheduler.yaml"

// File is the scheduler's configuration file, with defaults filled in.
type File struct {
	Interval  Duration `yaml:"interval"`
	HintDelay Duration `yaml:"hint_delay"`
	// HostBucket is the collector's bucket of host records, which holds
	// the drain marks (the collector's --host-bucket).
	HostBucket string `yaml:"host_bucket"`
	Demand     struct {
		Window     Duration `yaml:"window"`
		Percentile float64  `yaml:"percentile"`
	} `yaml:"demand"`
	Defaults PolicySpec            `yaml:"defaults"`
	Hosts    map[string]PolicySpec `yaml:"hosts"`
	Chunks   map[string][]string   `yaml:"chunks"`
	Groups   []GroupSpec           `yaml:"groups"`
	Planner  struct {
		Cooldown    Duration `yaml:"cooldown"`
		MaxMoves    int      `yaml:"max_moves"`
		MaxPerHost  int      `yaml:"max_per_host"`
		MinGain     float64  `yaml:"min_gain"`
		Step        float64  `yaml:"step"`
		Consolidate bool     `yaml:"consolidate"`
	} `yaml:"planner"`
	FailureHold    Duration `yaml:"failure_hold"`
	MigrateTimeout Duration `yaml:"migrate_timeout"`
	Lease          struct {
		TTL      Duration `yaml:"ttl"`
		Replicas int      `yaml:"replicas"`
	} `yaml:"lease"`
	Libvirt struct {
		// URI is a libvirt URI with {host} standing for each host's name;
		// empty turns chunk discovery off.
		URI            string   `yaml:"uri"`
		Virsh          string   `yaml:"virsh"`
		PrivateBridges []string `yaml:"private_bridges"`
		Refresh        Duration `yaml:"refresh"`
	} `yaml:"libvirt"`
	// Executors holds each executor's own section, for its constructor.
	Executors map[string]yaml.Node `yaml:"executors"`
}

// PolicySpec is a host policy as written: CPU and memory bands in percent
// of the host's capacity, a VM-count band, or empty.
type PolicySpec struct {
	CPU    *BandSpec `yaml:"cpu"`
	Memory *BandSpec `yaml:"memory"`
	VMs    *BandSpec `yaml:"vms"`
	Empty  *bool     `yaml:"empty"`
}

// BandSpec is a low and a high bound; 0 leaves one unset.
type BandSpec struct {
	Low  float64 `yaml:"low"`
	High float64 `yaml:"high"`
	line int
}

// GroupSpec is a declared affinity or anti-affinity group.
type GroupSpec struct {
	Name string   `yaml:"name"`
	VMs  []string `yaml:"vms"`
	// Anti: the VMs must not share a host; else they stay together.
	Anti bool `yaml:"anti"`
	// Hard makes it a rule; a soft group only steers the score.
	Hard bool `yaml:"hard"`
	line int
}

// Duration is a time.Duration written as "30s" or "5m".
type Duration time.Duration

// UnmarshalYAML reads a positive duration.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil || v <= 0 {
		return lineError(n, "duration %q: want a positive number with a unit such as 30s, 5m or 1h", n.Value)
	}
	*d = Duration(v)
	return nil
}

// UnmarshalYAML reads a band and remembers its line for checks.
func (b *BandSpec) UnmarshalYAML(n *yaml.Node) error {
	type plain BandSpec
	var p plain
	if err := onlyKeys(n, "low", "high"); err != nil {
		return err
	}
	if err := n.Decode(&p); err != nil {
		return err
	}
	*b = BandSpec(p)
	b.line = n.Line
	return nil
}

// UnmarshalYAML reads a group and remembers its line for checks.
func (g *GroupSpec) UnmarshalYAML(n *yaml.Node) error {
	type plain GroupSpec
	var p plain
	if err := onlyKeys(n, "name", "vms", "anti", "hard"); err != nil {
		return err
	}
	if err := n.Decode(&p); err != nil {
		return err
	}
	*g = GroupSpec(p)
	g.line = n.Line
	return nil
}

// onlyKeys refuses a mapping with a key not in keys: a custom unmarshaler
// decodes without the file's KnownFields, and a misspelt "hihg" must not
// pass unseen.
func onlyKeys(n *yaml.Node, keys ...string) error {
	if n.Kind != yaml.MappingNode {
		return lineError(n, "want a mapping with %v", keys)
	}
	for i := 0; i < len(n.Content); i += 2 {
		if k := n.Content[i]; !slices.Contains(keys, k.Value) {
			return lineError(k, "unknown key %q; known: %v", k.Value, keys)
		}
	}
	return nil
}

func lineError(n *yaml.Node, format string, args ...any) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", n.Line, fmt.Sprintf(format, args...))}}
}

// ConfigError is one mistake in the file, where it is.
type ConfigError struct {
	File string
	Line int
	Msg  string
}

func (e *ConfigError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// Defaults returns the configuration of an absent or empty file.
func Defaults() *File {
	f := &File{}
	f.Interval = Duration(60 * time.Second)
	f.HintDelay = Duration(5 * time.Second)
	f.HostBucket = DefaultHostBucket
	f.Demand.Window = Duration(inventory.DefaultDemand.Window)
	f.Demand.Percentile = inventory.DefaultDemand.Percentile
	// The collector's hint thresholds (collector.DefaultCPUHighPct and the
	// others), so that a host it calls overloaded is one the plan relieves.
	f.Defaults = PolicySpec{CPU: &BandSpec{Low: 20, High: 85}, Memory: &BandSpec{High: 90}}
	o := planner.DefaultOptions(time.Time{})
	f.Planner.Cooldown = Duration(o.Cooldown)
	f.Planner.MaxMoves, f.Planner.MaxPerHost = o.MaxMoves, o.MaxPerHost
	f.Planner.MinGain, f.Planner.Step = o.MinGain, o.Step
	f.FailureHold = Duration(o.Cooldown)
	f.MigrateTimeout = Duration(30 * time.Minute)
	f.Lease.TTL = Duration(lease.DefaultTTL)
	f.Lease.Replicas = 1
	f.Libvirt.Virsh = "virsh"
	f.Libvirt.Refresh = Duration(10 * time.Minute)
	return f
}

// fillZeros gives the periods a File built by hand left at zero their
// defaults: a zero interval would stop the loop and a zero migrate_timeout
// fail every migration at once.
func (f *File) fillZeros() {
	d := Defaults()
	for _, p := range []struct{ v, def *Duration }{
		{&f.Interval, &d.Interval}, {&f.HintDelay, &d.HintDelay}, {&f.MigrateTimeout, &d.MigrateTimeout},
		{&f.FailureHold, &d.FailureHold}, {&f.Lease.TTL, &d.Lease.TTL}, {&f.Libvirt.Refresh, &d.Libvirt.Refresh},
		{&f.Demand.Window, &d.Demand.Window},
	} {
		if *p.v <= 0 {
			*p.v = *p.def
		}
	}
	if f.Lease.Replicas < 1 {
		f.Lease.Replicas = 1
	}
	if f.Demand.Percentile <= 0 {
		f.Demand.Percentile = d.Demand.Percentile
	}
	if f.Libvirt.Virsh == "" {
		f.Libvirt.Virsh = d.Libvirt.Virsh
	}
	if f.HostBucket == "" {
		f.HostBucket = d.HostBucket
	}
}

// LoadFile reads and checks a configuration file. A missing file at the
// default path is the defaults; anywhere else it is an error.
func LoadFile(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && path == DefaultConfigPath {
		return Defaults(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("scheduler config: %w", err)
	}
	return Parse(path, b)
}

var goType = regexp.MustCompile(` in type [\w.\[\]]+`)

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// Parse reads a configuration file's bytes; name is used in errors. Every
// mistake found is returned, each as a *ConfigError, joined.
func Parse(name string, b []byte) (*File, error) {
	f := Defaults()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	err := dec.Decode(f)
	// An empty file is the defaults.
	if err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		var msgs []string
		if errors.As(err, &te) {
			msgs = te.Errors
		} else {
			msgs = []string{err.Error()}
		}
		var errs []error
		for _, m := range msgs {
			ce := &ConfigError{File: name, Msg: m}
			if sub := yamlLine.FindStringSubmatch(m); sub != nil {
				ce.Line, _ = strconv.Atoi(sub[1])
				ce.Msg = sub[2]
			}
			// The Go type is no help to whoever edits the file.
			ce.Msg = goType.ReplaceAllString(ce.Msg, "")
			errs = append(errs, ce)
		}
		return nil, errors.Join(errs...)
	}
	if err := f.check(name, b); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *File) check(name string, b []byte) error {
	var errs []error
	bad := func(line int, format string, args ...any) {
		errs = append(errs, &ConfigError{File: name, Line: line, Msg: fmt.Sprintf(format, args...)})
	}
	band := func(where string, b *BandSpec, pct bool) {
		if b == nil {
			return
		}
		switch {
		case b.Low < 0 || b.High < 0:
			bad(b.line, "%s: bounds cannot be negative", where)
		case pct && (b.Low > 100 || b.High > 100):
			bad(b.line, "%s: bounds are percent of capacity, at most 100", where)
		case b.High > 0 && b.Low >= b.High:
			bad(b.line, "%s: low %g is not below high %g", where, b.Low, b.High)
		}
	}
	policy := func(where string, p PolicySpec) {
		band(where+".cpu", p.CPU, true)
		band(where+".memory", p.Memory, true)
		band(where+".vms", p.VMs, false)
	}
	policy("defaults", f.Defaults)
	for _, h := range slices.Sorted(maps.Keys(f.Hosts)) {
		policy("hosts."+h, f.Hosts[h])
	}
	if f.Demand.Percentile <= 0 || f.Demand.Percentile > 100 {
		bad(0, "demand.percentile %g: want more than 0 and at most 100", f.Demand.Percentile)
	}
	if f.Planner.MaxMoves < 0 || f.Planner.MaxPerHost < 0 || f.Planner.MinGain < 0 || f.Planner.Step < 0 {
		bad(0, "planner: max_moves, max_per_host, min_gain and step cannot be negative")
	}
	if f.Lease.Replicas < 1 {
		bad(0, "lease.replicas %d: want at least 1", f.Lease.Replicas)
	}
	// Chunks are a map; find each one's line in the document for errors.
	var doc yaml.Node
	_ = yaml.Unmarshal(b, &doc)
	chunkLines := mapLines(&doc, "chunks")
	owner := map[string]string{}
	for _, c := range slices.Sorted(maps.Keys(f.Chunks)) {
		if len(f.Chunks[c]) < 2 {
			bad(chunkLines[c], "chunks.%s: a chunk needs at least two VMs", c)
		}
		for _, v := range f.Chunks[c] {
			if o, ok := owner[v]; ok {
				bad(chunkLines[c], "chunks.%s: VM %q is already in chunk %s", c, v, o)
			}
			owner[v] = c
		}
	}
	seen := map[string]bool{}
	for _, g := range f.Groups {
		switch {
		case g.Name == "":
			bad(g.line, "groups: a group needs a name")
		case seen[g.Name]:
			bad(g.line, "groups: %s is declared twice", g.Name)
		case len(g.VMs) < 2:
			bad(g.line, "groups.%s: a group needs at least two VMs", g.Name)
		}
		seen[g.Name] = true
	}
	return errors.Join(errs...)
}

// mapLines returns the line of each key of the top-level mapping key.
func mapLines(doc *yaml.Node, key string) map[string]int {
	out := map[string]int{}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return out
	}
	m := doc.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value != key || m.Content[i+1].Kind != yaml.MappingNode {
			continue
		}
		sub := m.Content[i+1]
		for j := 0; j+1 < len(sub.Content); j += 2 {
			out[sub.Content[j].Value] = sub.Content[j].Line
		}
	}
	return out
}

// Declared turns the file's policies, chunks and groups into what the
// inventory adds to the samples. derived are chunks found in libvirt; a
// declared chunk wins over a derived one for the same VM.
func (f *File) Declared(derived map[string]string) inventory.Declared {
	d := inventory.Declared{Default: toPolicy(f.Defaults), Hosts: map[string]inventory.Policy{}, Chunks: map[string]string{}}
	for h, p := range f.Hosts {
		// A host's entry replaces the default band of each resource it
		// names and keeps the others.
		m := f.Defaults
		if p.CPU != nil {
			m.CPU = p.CPU
		}
		if p.Memory != nil {
			m.Memory = p.Memory
		}
		if p.VMs != nil {
			m.VMs = p.VMs
		}
		if p.Empty != nil {
			m.Empty = p.Empty
		}
		d.Hosts[h] = toPolicy(m)
	}
	for vm, c := range derived {
		d.Chunks[vm] = c
	}
	for c, vms := range f.Chunks {
		for _, vm := range vms {
			d.Chunks[vm] = c
		}
	}
	for _, g := range f.Groups {
		d.Groups = append(d.Groups, planner.Group{Name: g.Name, VMs: g.VMs, Anti: g.Anti, Hard: g.Hard})
	}
	return d
}

func toPolicy(p PolicySpec) inventory.Policy {
	b := func(s *BandSpec) planner.Band {
		if s == nil {
			return planner.Band{}
		}
		return planner.Band{Low: s.Low, High: s.High}
	}
	return inventory.Policy{CPU: b(p.CPU), Mem: b(p.Memory), VMs: b(p.VMs), Empty: p.Empty != nil && *p.Empty}
}

// Options returns the planner options at now.
func (f *File) Options(now time.Time) planner.Options {
	return planner.Options{
		Now: now, Cooldown: time.Duration(f.Planner.Cooldown),
		MaxMoves: f.Planner.MaxMoves, MaxPerHost: f.Planner.MaxPerHost,
		MinGain: f.Planner.MinGain, Step: f.Planner.Step, Consolidate: f.Planner.Consolidate,
	}
}
