package guestagent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/guestdiag/guestdiag/checks"
)

// ConfigError is one mistake in a config file, where it is.
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

// option is one top-level key of the config file.
type option struct {
	key string
	set func(c *Config, v *yaml.Node) error
	get func(c Config) any
}

var options = []option{
	{"transports", func(c *Config, v *yaml.Node) error {
		list, err := stringList(v)
		if err != nil {
			return err
		}
		if err := CheckTransports(list); err != nil {
			return err
		}
		c.Transports = list
		return nil
	}, func(c Config) any { return c.Transports }},
	{"fallback_after", durationOpt(func(c *Config) *time.Duration { return &c.FallbackAfter }), func(c Config) any { return c.FallbackAfter.String() }},
	{"retry_preferred", durationOpt(func(c *Config) *time.Duration { return &c.RetryPreferred }), func(c Config) any { return c.RetryPreferred.String() }},
	{"port_name", stringOpt(func(c *Config) *string { return &c.PortName }), func(c Config) any { return c.PortName }},
	{"device", stringOpt(func(c *Config) *string { return &c.DevicePath }), func(c Config) any { return c.DevicePath }},
	{"vsock_port", func(c *Config, v *yaml.Node) error {
		n, err := strconv.ParseUint(v.Value, 10, 32)
		if err != nil || v.Kind != yaml.ScalarNode || n == 0 || n == 0xFFFFFFFF {
			return fmt.Errorf("vsock_port %q: want a port number from 1 to 4294967294", v.Value)
		}
		c.VsockPort = uint32(n)
		return nil
	}, func(c Config) any { return c.VsockPort }},
	{"state_dir", stringOpt(func(c *Config) *string { return &c.StateDir }), func(c Config) any { return c.StateDir }},
	{"spool_max_bytes", sizeOpt(func(c *Config) *int64 { return &c.SpoolMaxBytes }), func(c Config) any { return FormatSize(c.SpoolMaxBytes) }},
	{"spool_max_age", durationOpt(func(c *Config) *time.Duration { return &c.SpoolMaxAge }), func(c Config) any { return c.SpoolMaxAge.String() }},
	{"heartbeat", durationOpt(func(c *Config) *time.Duration { return &c.HeartbeatInterval }), func(c Config) any { return c.HeartbeatInterval.String() }},
	{"memory_limit", sizeOpt(func(c *Config) *int64 { return &c.MemoryLimit }), func(c Config) any { return FormatSize(c.MemoryLimit) }},
	{"priority", func(c *Config, v *yaml.Node) error {
		if v.Kind != yaml.ScalarNode || v.Value != PriorityLow && v.Value != PriorityNormal {
			return fmt.Errorf("priority %q: want low or normal", v.Value)
		}
		c.Priority = v.Value
		return nil
	}, func(c Config) any { return c.Priority }},
	{"check_grace", durationOpt(func(c *Config) *time.Duration { return &c.CheckGrace }), func(c Config) any { return c.CheckGrace.String() }},
	{"ack_timeout", durationOpt(func(c *Config) *time.Duration { return &c.AckTimeout }), func(c Config) any { return c.AckTimeout.String() }},
	{"write_timeout", durationOpt(func(c *Config) *time.Duration { return &c.WriteTimeout }), func(c Config) any { return c.WriteTimeout.String() }},
}

// CheckTransports says what is wrong with a transport list for this OS.
func CheckTransports(list []string) error { return checkTransportsOn(runtime.GOOS, list) }

func checkTransportsOn(goos string, list []string) error {
	if len(list) == 0 {
		return errors.New("transports: want at least one of virtio-serial, vsock")
	}
	for i, name := range list {
		switch name {
		case TransportVirtioSerial:
		case TransportVsock:
			if goos != "linux" {
				return fmt.Errorf("transports: vsock is not supported on %s: AF_VSOCK is reached through mdlayher/vsock, which is Linux only", goos)
			}
		default:
			return fmt.Errorf("transports: unknown transport %q; known: virtio-serial, vsock", name)
		}
		if slices.Contains(list[:i], name) {
			return fmt.Errorf("transports: %s is listed twice", name)
		}
	}
	return nil
}

func stringOpt(field func(*Config) *string) func(*Config, *yaml.Node) error {
	return func(c *Config, v *yaml.Node) error {
		if v.Kind != yaml.ScalarNode || v.Tag != "!!str" {
			return errors.New("want a string")
		}
		*field(c) = v.Value
		return nil
	}
}

func durationOpt(field func(*Config) *time.Duration) func(*Config, *yaml.Node) error {
	return func(c *Config, v *yaml.Node) error {
		d, err := positiveDuration(v)
		if err != nil {
			return err
		}
		*field(c) = d
		return nil
	}
}

func positiveDuration(v *yaml.Node) (time.Duration, error) {
	d, err := time.ParseDuration(v.Value)
	if v.Kind != yaml.ScalarNode || err != nil || d <= 0 {
		return 0, fmt.Errorf("duration %q: want a positive number with a unit such as 30s, 5m or 168h", v.Value)
	}
	return d, nil
}

func sizeOpt(field func(*Config) *int64) func(*Config, *yaml.Node) error {
	return func(c *Config, v *yaml.Node) error {
		if v.Kind != yaml.ScalarNode {
			return errors.New("want a size such as 16MiB")
		}
		n, err := ParseSize(v.Value)
		if err != nil {
			return err
		}
		*field(c) = n
		return nil
	}
}

func stringList(v *yaml.Node) ([]string, error) {
	if v.Kind != yaml.SequenceNode {
		return nil, errors.New("want a list such as [virtio-serial, vsock]")
	}
	var out []string
	for _, n := range v.Content {
		if n.Kind != yaml.ScalarNode {
			return nil, errors.New("want a list of names")
		}
		out = append(out, n.Value)
	}
	return out, nil
}

// LoadConfigFile reads a config file over DefaultConfig. Every mistake is
// reported, each as a *ConfigError with the file and line, joined with
// errors.Join: an unknown key, an unknown check or a setting a check does
// not accept is never silently ignored. The format is YAML; JSON, which is
// YAML too, reads the same.
func LoadConfigFile(path string) (Config, error) {
	cfg := DefaultConfig()
	b, err := os.ReadFile(path)
	if err != nil {
		return cfg, err
	}
	return cfg, errors.Join(parseConfig(path, b, &cfg)...)
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func parseConfig(file string, b []byte, cfg *Config) []error {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
			line, _ := strconv.Atoi(m[1])
			return []error{&ConfigError{file, line, m[2]}}
		}
		return []error{&ConfigError{file, 0, strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	if len(doc.Content) == 0 {
		return nil // an empty file keeps every default
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return []error{&ConfigError{file, root.Line, "want a mapping of options, such as heartbeat: 10s"}}
	}
	var errs []error
	at := func(n *yaml.Node, err error) { errs = append(errs, &ConfigError{file, n.Line, err.Error()}) }
	seen := map[string]bool{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if seen[k.Value] {
			at(k, fmt.Errorf("%s is set twice", k.Value))
			continue
		}
		seen[k.Value] = true
		if k.Value == "checks" {
			cfg.Checks = parseChecks(v, at)
			continue
		}
		i := slices.IndexFunc(options, func(o option) bool { return o.key == k.Value })
		if i < 0 {
			at(k, fmt.Errorf("unknown option %q", k.Value))
			continue
		}
		if err := options[i].set(cfg, v); err != nil {
			if !strings.HasPrefix(err.Error(), k.Value) {
				err = fmt.Errorf("%s: %w", k.Value, err)
			}
			at(v, err)
		}
	}
	return errs
}

func parseChecks(v *yaml.Node, at func(*yaml.Node, error)) map[string]CheckSettings {
	if v.Kind != yaml.MappingNode {
		at(v, errors.New("checks: want a mapping of check names"))
		return nil
	}
	out := map[string]CheckSettings{}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, sv := v.Content[i], v.Content[i+1]
		name := k.Value
		if _, ok := checks.Lookup(name); !ok {
			at(k, fmt.Errorf("unknown check %q; known: %s", name, strings.Join(checkNames(), ", ")))
			continue
		}
		if _, dup := out[name]; dup {
			at(k, fmt.Errorf("checks.%s is set twice", name))
			continue
		}
		out[name] = parseCheck(name, sv, at)
	}
	return out
}

func parseCheck(name string, v *yaml.Node, at func(*yaml.Node, error)) CheckSettings {
	var s CheckSettings
	if v.Kind != yaml.MappingNode {
		at(v, fmt.Errorf("checks.%s: want a mapping such as {enabled: false}", name))
		return s
	}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, sv := v.Content[i], v.Content[i+1]
		key := "checks." + name + "." + k.Value
		var err error
		switch k.Value {
		case "enabled":
			var on bool
			if sv.Kind != yaml.ScalarNode || sv.Tag != "!!bool" {
				err = errors.New("want true or false")
			} else if err = sv.Decode(&on); err == nil {
				s.Enabled = &on
			}
		case "interval", "timeout", "cpu_budget":
			var d time.Duration
			if d, err = positiveDuration(sv); err == nil {
				dst := map[string]*checks.Duration{"interval": &s.Interval, "timeout": &s.Timeout, "cpu_budget": &s.CPUBudget}[k.Value]
				*dst = checks.D(d)
			}
		case "config":
			s.Config, err = checkConfigJSON(name, sv, at)
			if err != nil {
				at(sv, fmt.Errorf("%s: %w", key, err))
			}
			continue
		default:
			at(k, fmt.Errorf("%s: unknown setting; known: enabled, interval, timeout, cpu_budget, config", key))
			continue
		}
		if err != nil {
			at(sv, fmt.Errorf("%s: %w", key, err))
		}
	}
	return s
}

// checkConfigJSON turns a check's config node into JSON and decodes it
// into the check's config, which has JSON field names. A mistake inside it
// is reported at the line of the key it names, where that can be found.
func checkConfigJSON(name string, v *yaml.Node, at func(*yaml.Node, error)) (json.RawMessage, error) {
	var tree any
	if err := v.Decode(&tree); err != nil {
		return nil, err
	}
	b, err := json.Marshal(tree)
	if err != nil {
		return nil, fmt.Errorf("want a mapping with string keys: %w", err)
	}
	r, _ := checks.Lookup(name)
	if err := decodeStrict(b, r.NewConfig()); err != nil {
		at(lineOf(v, err), fmt.Errorf("checks.%s.config: %w", name, err))
		return nil, nil
	}
	return b, nil
}

var unknownField = regexp.MustCompile(`unknown field "([^"]*)"`)

// lineOf finds the node in v that a JSON decoding error is about.
func lineOf(v *yaml.Node, err error) *yaml.Node {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		n := v
		for _, part := range strings.Split(te.Field, ".") {
			if next := child(n, part); next != nil {
				n = next
			}
		}
		return n
	}
	if m := unknownField.FindStringSubmatch(err.Error()); m != nil {
		if n := findKey(v, m[1]); n != nil {
			return n
		}
	}
	return v
}

func child(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func findKey(n *yaml.Node, key string) *yaml.Node {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				return n.Content[i]
			}
		}
	}
	for _, c := range n.Content {
		if f := findKey(c, key); f != nil {
			return f
		}
	}
	return nil
}

func checkNames() []string {
	var names []string
	for _, r := range checks.All() {
		names = append(names, r.Name)
	}
	return names
}

// EffectiveYAML writes cfg as a config file that sets every option,
// with every registered check's settings and config as they apply.
func EffectiveYAML(cfg Config) ([]byte, error) {
	cfg = cfg.withDefaults()
	root := &yaml.Node{Kind: yaml.MappingNode}
	add := func(key string, val any) error {
		var v yaml.Node
		if err := v.Encode(val); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		if v.Kind == yaml.SequenceNode {
			v.Style = yaml.FlowStyle
		}
		root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, &v)
		return nil
	}
	for _, o := range options {
		if err := add(o.key, o.get(cfg)); err != nil {
			return nil, err
		}
	}
	all := map[string]any{}
	for _, r := range checks.All() {
		s := cfg.Checks[r.Name]
		ccfg, err := checkConfig(r.Name, s)
		if err != nil {
			return nil, err
		}
		// Through JSON, so the check's own field names and duration text
		// come out.
		b, err := json.Marshal(ccfg)
		if err != nil {
			return nil, err
		}
		var tree any
		if err := json.Unmarshal(b, &tree); err != nil {
			return nil, err
		}
		eff := resolveCheck(r, s)
		all[r.Name] = map[string]any{
			"enabled":    eff.enabled,
			"interval":   eff.interval.String(),
			"timeout":    eff.timeout.String(),
			"cpu_budget": eff.cpuBudget.String(),
			"config":     tree,
		}
	}
	if err := add("checks", all); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{root}}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
