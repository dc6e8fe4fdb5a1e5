package firewall

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/guestdiag/guestdiag/checks"
	"github.com/guestdiag/guestdiag/checks/internal/regfile"
	"github.com/guestdiag/guestdiag/protocol"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func chainOf(t *testing.T, chains []chain, table, name string) chain {
	t.Helper()
	for _, c := range chains {
		if c.Table == table && c.Name == name {
			return c
		}
	}
	t.Fatalf("no chain %s %s in %v", table, name, chains)
	return chain{}
}

func hasCode(res checks.Result, code string) bool {
	return slices.ContainsFunc(res.Findings, func(f protocol.Finding) bool { return f.Code == code })
}

// fakeSource serves programmable gatherings.
type fakeSource struct {
	mu  sync.Mutex
	g   gathered
	err error
}

func (f *fakeSource) set(g gathered, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.g, f.err = g, err
}

func (f *fakeSource) gather(context.Context) (gathered, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.g, f.err
}

func (f *fakeSource) watch(context.Context, func()) error { return errors.ErrUnsupported }

func inputChain(policy string, rules ...string) chain {
	return chain{
		Table: "inet filter", Family: "inet", Name: "input", Hook: "input", Policy: policy,
		Header: "type filter hook input priority 0 policy " + policy, Rules: rules,
	}
}

func nftGathered(chains ...chain) gathered {
	return gathered{chains: chains, sources: []string{"nftables"}}
}

func TestFirewallDecide(t *testing.T) {
	tests := []struct {
		name    string
		g       gathered
		enabled bool
		reason  string
	}{
		{"an empty ruleset is off", nftGathered(), false, "the ruleset is empty"},
		{"an input chain with policy drop is on", nftGathered(inputChain("drop")), true, "inet filter input drops by policy"},
		{
			"an input chain ending in reject is on",
			nftGathered(func() chain { c := inputChain("accept", "reject"); c.FinalDrop = true; return c }()),
			true, "inet filter input drops or rejects by its last rule",
		},
		{"an input chain accepting by policy is off", nftGathered(inputChain("accept", "tcp dport 22 drop")), false, "no input chain drops or rejects by policy or by its last rule"},
		{
			"a bridge chain does not protect the guest",
			nftGathered(chain{Table: "bridge filter", Family: "bridge", Name: "input", Hook: "input", Policy: "drop"}),
			false, "no input chain drops or rejects by policy or by its last rule",
		},
		{"a running firewalld is on", gathered{firewalld: "running"}, true, "firewalld is running"},
		{"an active ufw is on", gathered{ufw: "active"}, true, "ufw is active"},
		{"a stopped firewalld says so", gathered{firewalld: "not running"}, false, "firewalld is not running"},
		{
			"windows with every profile on and blocking is on",
			gathered{profiles: []Profile{{Name: "Domain", Enabled: true, Inbound: "block"}, {Name: "Public", Enabled: true, Inbound: "block"}}},
			true, "all profiles on, blocking inbound connections by default",
		},
		{
			"windows with one profile off is off",
			gathered{profiles: []Profile{{Name: "Domain", Enabled: true, Inbound: "block"}, {Name: "Public", Enabled: false, Inbound: "block", Policy: true}}},
			false, "Public profile is off (group policy)",
		},
		{
			"windows allowing inbound by default is off",
			gathered{profiles: []Profile{{Name: "Private", Enabled: true, Inbound: "allow"}}},
			false, "Private profile allows inbound connections by default",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enabled, reasons := decide(tt.g.chains, tt.g)
			if enabled != tt.enabled || !slices.Contains(reasons, tt.reason) {
				t.Errorf("got %v %q, want %v with %q", enabled, reasons, tt.enabled, tt.reason)
			}
		})
	}
}

func TestFirewallRun(t *testing.T) {
	src := &fakeSource{}
	env := checks.Env{Logger: testLogger(t), State: checks.NewState(t.TempDir(), Name)}
	fw := newCheck(DefaultConfig(), src, env)

	src.set(nftGathered(inputChain("drop", "tcp dport 22 accept", "tcp dport 80 accept")), nil)
	t.Run("the first run reports no change and keeps the ruleset as baseline", func(t *testing.T) {
		res := fw.Run(t.Context())
		if res.Status != protocol.StatusOK || len(res.Findings) != 0 {
			t.Fatalf("got %s %q %v", res.Status, res.Summary, res.Findings)
		}
		if got, want := res.Summary, "firewall is on: inet filter input drops by policy"; got != want {
			t.Errorf("summary %q, want %q", got, want)
		}
		if err := fw.Commit(); err != nil {
			t.Fatal(err)
		}
	})

	src.set(nftGathered(inputChain("drop", "tcp dport 443 accept", "tcp dport 22 accept", "tcp dport 8080 accept")), nil)
	t.Run("a changed ruleset lists what was added and removed", func(t *testing.T) {
		res := fw.Run(t.Context())
		if res.Status != protocol.StatusWarn || len(res.Findings) != 1 {
			t.Fatalf("got %s %q %v", res.Status, res.Summary, res.Findings)
		}
		f := res.Findings[0]
		if f.Code != CodeFirewallChanged || f.Message != "2 rules added, 1 removed in table inet filter" || f.Source != "inet filter" {
			t.Errorf("finding %+v", f)
		}
		d := res.Data.(Data)
		wantAdded := []string{"inet filter input: tcp dport 443 accept", "inet filter input: tcp dport 8080 accept"}
		wantRemoved := []string{"inet filter input: tcp dport 80 accept"}
		if !slices.Equal(d.Added, wantAdded) || !slices.Equal(d.Removed, wantRemoved) || d.AddedCount != 2 || d.RemovedCount != 1 {
			t.Errorf("added %q (%d), removed %q (%d)", d.Added, d.AddedCount, d.Removed, d.RemovedCount)
		}
		if d.Baseline == "" || d.Baseline == d.Fingerprint {
			t.Errorf("baseline %q, fingerprint %q: want two different fingerprints", d.Baseline, d.Fingerprint)
		}
	})

	t.Run("an uncommitted change is reported again", func(t *testing.T) {
		res := fw.Run(t.Context())
		if !hasCode(res, CodeFirewallChanged) {
			t.Fatalf("got %s %q", res.Status, res.Summary)
		}
		if err := fw.Commit(); err != nil {
			t.Fatal(err)
		}
		if res := fw.Run(t.Context()); res.Status != protocol.StatusOK {
			t.Errorf("after commit: got %s %q", res.Status, res.Summary)
		}
	})

	src.set(nftGathered(inputChain("drop", "tcp dport 22 accept", "tcp dport 443 accept", "tcp dport 8080 accept")), nil)
	t.Run("rules that only moved are reported as reordered", func(t *testing.T) {
		res := fw.Run(t.Context())
		if len(res.Findings) != 1 || res.Findings[0].Message != "rules reordered in table inet filter" {
			t.Fatalf("got %s %v", res.Status, res.Findings)
		}
		if err := fw.Commit(); err != nil {
			t.Fatal(err)
		}
	})

	src.set(nftGathered(inputChain("accept", "tcp dport 22 accept", "tcp dport 443 accept", "tcp dport 8080 accept")), nil)
	t.Run("a policy turned to accept is fw.disabled and a changed chain", func(t *testing.T) {
		res := fw.Run(t.Context())
		if res.Status != protocol.StatusCrit || !hasCode(res, CodeFirewallDisabled) || !hasCode(res, CodeFirewallChanged) {
			t.Fatalf("got %s %v", res.Status, res.Findings)
		}
		if got, want := res.Findings[1].Message, "2 chain definitions added or removed in table inet filter"; got != want {
			t.Errorf("message %q, want %q", got, want)
		}
	})

	t.Run("a restarted check loads the committed baseline", func(t *testing.T) {
		res := newCheck(DefaultConfig(), src, env).Run(t.Context())
		if !hasCode(res, CodeFirewallChanged) {
			t.Errorf("got %s %v, want fw.changed against the saved baseline", res.Status, res.Findings)
		}
	})
}

func TestFirewallConfig(t *testing.T) {
	off := nftGathered(inputChain("accept"))
	tests := []struct {
		name string
		cfg  func(*Config)
		sev  protocol.Severity
	}{
		{"by default a disabled firewall is critical", func(*Config) {}, protocol.SeverityCrit},
		{"disabled_severity warn makes it a warning", func(c *Config) { c.DisabledSeverity = "warn" }, protocol.SeverityWarn},
		{"an unknown disabled_severity stays critical", func(c *Config) { c.DisabledSeverity = "loud" }, protocol.SeverityCrit},
		{"require_enabled false reports it as info", func(c *Config) { c.RequireEnabled = false }, protocol.SeverityInfo},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.cfg(&cfg)
			res := newCheck(cfg, &fakeSource{g: off}, checks.Env{}).Run(t.Context())
			if len(res.Findings) != 1 || res.Findings[0].Severity != tt.sev {
				t.Fatalf("got %v, want one finding of severity %s", res.Findings, tt.sev)
			}
		})
	}

	t.Run("config keys decode from the agent's JSON", func(t *testing.T) {
		cfg := DefaultConfig()
		err := json.Unmarshal([]byte(`{"require_enabled":false,"disabled_severity":"warn","ignore_tables":["ip nat","libvirt_network"],"max_listed_rules":5}`), &cfg)
		if err != nil {
			t.Fatal(err)
		}
		want := Config{DisabledSeverity: "warn", IgnoreTables: []string{"ip nat", "libvirt_network"}, MaxListedRules: 5}
		if fmt.Sprint(cfg) != fmt.Sprint(want) {
			t.Errorf("got %+v, want %+v", cfg, want)
		}
	})

	t.Run("ignored tables leave the decision and the fingerprint", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.IgnoreTables = []string{"libvirt_network", "ip nat"}
		g := nftGathered(
			chain{Table: "ip libvirt_network", Family: "ip", Name: "guest_input", Hook: "input", Policy: "drop"},
			chain{Table: "ip nat", Family: "ip", Name: "postrouting", Rules: []string{"masquerade"}},
		)
		res := newCheck(cfg, &fakeSource{g: g}, checks.Env{}).Run(t.Context())
		d := res.Data.(Data)
		if d.Enabled || !slices.Equal(d.Ignored, []string{"ip libvirt_network", "ip nat"}) || len(d.Tables) != 0 {
			t.Errorf("enabled %v ignored %q tables %v", d.Enabled, d.Ignored, d.Tables)
		}
		if d.Fingerprint != snapshotOf(nil).Fingerprint {
			t.Errorf("fingerprint %s, want the empty ruleset's", d.Fingerprint)
		}
	})

	t.Run("added rules are listed up to max_listed_rules with full counts", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.MaxListedRules = 3
		src := &fakeSource{g: nftGathered(inputChain("drop"))}
		fw := newCheck(cfg, src, checks.Env{})
		fw.Run(t.Context())
		if err := fw.Commit(); err != nil {
			t.Fatal(err)
		}
		var rules []string
		for i := range 10 {
			rules = append(rules, "tcp dport "+strconv.Itoa(1000+i)+" accept")
		}
		src.set(nftGathered(inputChain("drop", rules...)), nil)
		d := fw.Run(t.Context()).Data.(Data)
		if len(d.Added) != 3 || d.AddedCount != 10 {
			t.Errorf("listed %d of %d, want 3 of 10", len(d.Added), d.AddedCount)
		}
	})
}

func TestFirewallUnknown(t *testing.T) {
	t.Run("a source that cannot be read is unknown with the reason", func(t *testing.T) {
		src := &fakeSource{err: errors.New("nftables: permission denied (needs root or CAP_NET_ADMIN)")}
		res := newCheck(DefaultConfig(), src, checks.Env{}).Run(t.Context())
		if res.Status != protocol.StatusUnknown || !strings.Contains(res.Summary, "permission denied") {
			t.Errorf("got %s %q", res.Status, res.Summary)
		}
	})
	t.Run("no firewall in a partial read is unknown, not disabled", func(t *testing.T) {
		g := nftGathered()
		g.errs = []string{"legacy ip tables (filter): none of iptables-legacy-save, iptables-save is installed"}
		res := newCheck(DefaultConfig(), &fakeSource{g: g}, checks.Env{}).Run(t.Context())
		if res.Status != protocol.StatusUnknown || len(res.Findings) != 0 {
			t.Errorf("got %s %q %v", res.Status, res.Summary, res.Findings)
		}
	})
	t.Run("a firewall found in a partial read is on, and not kept as baseline", func(t *testing.T) {
		g := nftGathered(inputChain("drop"))
		g.errs = []string{"legacy ip tables (filter): exit status 1"}
		fw := newCheck(DefaultConfig(), &fakeSource{g: g}, checks.Env{})
		res := fw.Run(t.Context())
		if res.Status != protocol.StatusOK || fw.pending != nil {
			t.Errorf("got %s %q, pending %v", res.Status, res.Summary, fw.pending)
		}
	})
}

func TestFirewallDiffManyTables(t *testing.T) {
	var old, cur []chain
	for i := range maxChangedTables + 5 {
		name := fmt.Sprintf("ip t%02d", i)
		old = append(old, chain{Table: name, Name: "c", Rules: []string{"accept"}})
		cur = append(cur, chain{Table: name, Name: "c", Rules: []string{"drop"}})
	}
	fs := diff(snapshotOf(old), snapshotOf(cur)).findings()
	if len(fs) != maxChangedTables+1 {
		t.Fatalf("%d findings, want %d", len(fs), maxChangedTables+1)
	}
	if last := fs[len(fs)-1]; last.Count != 5 || last.Message != "5 more tables changed: 5 lines added, 5 removed" {
		t.Errorf("last finding %+v", last)
	}
}

func TestFirewallParseIptablesSave(t *testing.T) {
	t.Run("ufw's legacy ruleset with counters", func(t *testing.T) {
		chains := readIptables(t, "testdata/iptables-legacy-save.txt")
		in := chainOf(t, chains, "legacy ip filter", "INPUT")
		if in.Hook != "input" || in.Policy != "drop" || in.Header != "policy DROP" {
			t.Errorf("INPUT: %+v", in)
		}
		if want := []string{"-j ufw-before-input", "-j ufw-after-input"}; !slices.Equal(in.Rules, want) {
			t.Errorf("INPUT rules %q, want %q", in.Rules, want)
		}
		user := chainOf(t, chains, "legacy ip filter", "ufw-user-input")
		want := []string{
			`-p tcp -m tcp --dport 22 -m comment --comment "\'dapp_OpenSSH\'" -j ACCEPT`,
			"-s 192.168.10.0/24 -p tcp -m multiport --dports 80,443 -j ACCEPT",
		}
		if user.Hook != "" || user.Policy != "" || !slices.Equal(user.Rules, want) {
			t.Errorf("ufw-user-input: %+v", user)
		}
		if nat := chainOf(t, chains, "legacy ip nat", "INPUT"); nat.Hook != "" {
			t.Errorf("nat INPUT counts as the input hook: %+v", nat)
		}
		if len(chains) != 10 {
			t.Errorf("%d chains, want 10", len(chains))
		}
	})
	t.Run("an old CentOS ruleset ending in REJECT", func(t *testing.T) {
		chains := readIptables(t, "testdata/iptables-legacy-save-reject.txt")
		in := chainOf(t, chains, "legacy ip filter", "INPUT")
		if !in.FinalDrop || in.Policy != "accept" || len(in.Rules) != 5 {
			t.Errorf("INPUT: %+v", in)
		}
		enabled, _ := decide(chains, gathered{})
		if !enabled {
			t.Error("not enabled")
		}
	})
	t.Run("the nf_tables variant's output is refused", func(t *testing.T) {
		b, err := os.ReadFile("testdata/iptables-nft-save.txt")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := parseIptablesSave(b, "ip"); !errors.Is(err, errNotLegacy) {
			t.Errorf("err = %v, want fwErrNotLegacy", err)
		}
	})
	t.Run("counters do not change the fingerprint", func(t *testing.T) {
		a, err := parseIptablesSave([]byte("*filter\n:INPUT DROP [1:2]\n[5:300] -A INPUT -j ACCEPT\nCOMMIT\n"), "ip")
		if err != nil {
			t.Fatal(err)
		}
		b, err := parseIptablesSave([]byte("*filter\n:INPUT DROP [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n"), "ip")
		if err != nil {
			t.Fatal(err)
		}
		if snapshotOf(a).Fingerprint != snapshotOf(b).Fingerprint {
			t.Error("fingerprints differ")
		}
	})
	for _, bad := range []string{"-A INPUT -j ACCEPT\n", "*filter\n-A NOPE -j ACCEPT\n", "*filter\n:INPUT\n"} {
		t.Run(fmt.Sprintf("malformed input %q is an error", bad), func(t *testing.T) {
			if _, err := parseIptablesSave([]byte(bad), "ip"); err == nil {
				t.Error("no error")
			}
		})
	}
}

func readIptables(t *testing.T, path string) []chain {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	chains, err := parseIptablesSave(b, "ip")
	if err != nil {
		t.Fatal(err)
	}
	return chains
}

// regExport is a `reg export` file: key path -> value name -> value,
// as regfile reads it (DWORDs in decimal).
type regExport map[string]map[string]string

// readRegExport reads a .reg file as reg export writes it: UTF-16LE with
// a byte order mark and CRLF line ends.
func readRegExport(t *testing.T, path string) regExport {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 2 || b[0] != 0xff || b[1] != 0xfe {
		t.Fatalf("%s: no UTF-16LE byte order mark", path)
	}
	text, err := regfile.Decode(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	out := regExport{}
	var key string
	for line := range strings.Lines(text) {
		line = strings.TrimRight(line, "\r\n")
		switch {
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			key = line[1 : len(line)-1]
			out[key] = map[string]string{}
		case strings.HasPrefix(line, `"`):
			name, value, err := regfile.Value(line)
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			out[key][name] = value
		}
	}
	return out
}

// regDWORD returns the named DWORD of vals, nil when absent.
func regDWORD(vals map[string]string, name string) *uint32 {
	v, ok := vals[name]
	if !ok {
		return nil
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return nil
	}
	u := uint32(n)
	return &u
}

func (r regExport) values(base string, sub func(winProfile) string) []winValues {
	var out []winValues
	for _, p := range winProfileKeys {
		var v winValues
		vals := r[`HKEY_LOCAL_MACHINE\`+base+`\`+sub(p)]
		v.EnableFirewall = regDWORD(vals, "EnableFirewall")
		v.DefaultInboundAction = regDWORD(vals, "DefaultInboundAction")
		out = append(out, v)
	}
	return out
}

func (r regExport) rules(key string) map[string]string {
	out := map[string]string{}
	for name, v := range r[`HKEY_LOCAL_MACHINE\`+key+`\FirewallRules`] {
		out[name] = v
	}
	return out
}

func TestFirewallWindowsRegistry(t *testing.T) {
	local := readRegExport(t, "testdata/windows-local.reg")
	policy := readRegExport(t, "testdata/windows-policy.reg")
	localValues := local.values(winLocalKey, func(p winProfile) string { return p.localKey })
	policyValues := policy.values(winPolicyKey, func(p winProfile) string { return p.policyKey })

	t.Run("the local settings alone keep every profile on and blocking", func(t *testing.T) {
		got := winEffective(localValues, nil)
		want := []Profile{
			{Name: "Domain", Enabled: true, Inbound: "block"},
			{Name: "Private", Enabled: true, Inbound: "block"},
			{Name: "Public", Enabled: true, Inbound: "block"},
		}
		if !slices.Equal(got, want) {
			t.Errorf("got %+v, want %+v", got, want)
		}
		if on, why := decide(nil, gathered{profiles: got}); !on {
			t.Errorf("off: %q", why)
		}
	})

	t.Run("group policy turns Public off and lets Private allow inbound", func(t *testing.T) {
		got := winEffective(localValues, policyValues)
		want := []Profile{
			{Name: "Domain", Enabled: true, Inbound: "block", Policy: true},
			{Name: "Private", Enabled: true, Inbound: "allow", Policy: true},
			{Name: "Public", Enabled: false, Inbound: "block", Policy: true},
		}
		if !slices.Equal(got, want) {
			t.Errorf("got %+v, want %+v", got, want)
		}
		on, why := decide(nil, gathered{profiles: got})
		wantWhy := []string{
			"Private profile allows inbound connections by default (group policy)",
			"Public profile is off (group policy)",
		}
		if on || !slices.Equal(why, wantWhy) {
			t.Errorf("got %v %q, want off %q", on, why, wantWhy)
		}
	})

	t.Run("rules read in canonical form", func(t *testing.T) {
		rules := local.rules(winLocalKey)
		if len(rules) != 6 {
			t.Fatalf("%d rules in the fixture, want 6", len(rules))
		}
		tests := []struct {
			id, dir, text string
		}{
			{
				"RemoteDesktop-UserMode-In-TCP", "in",
				`RemoteDesktop-UserMode-In-TCP: allow active app=%SystemRoot%\system32\svchost.exe desc=@FirewallAPI.dll,-28756 embedctxt=@FirewallAPI.dll,-28752 lport=3389 name=@FirewallAPI.dll,-28775 protocol=6 svc=termservice`,
			},
			{
				"FPS-ICMP4-ERQ-In", "in",
				`FPS-ICMP4-ERQ-In: allow inactive app=System desc=@FirewallAPI.dll,-28544 embedctxt=@FirewallAPI.dll,-28502 icmp4=8:* name=@FirewallAPI.dll,-28543 profile=Domain protocol=1`,
			},
			{
				"{6F1C2B1E-3A5D-4C7B-9E21-5B8D0A9F4C11}", "in",
				`{6F1C2B1E-3A5D-4C7B-9E21-5B8D0A9F4C11}: allow active desc="opened by the \"devtools\" installer" lport=8080 lport=8443 name="Dev web server" profile=Private protocol=6`,
			},
			{
				"{0B7E5D43-2C19-4F0A-8D36-7E1A2B9C5D08}", "out",
				`{0B7E5D43-2C19-4F0A-8D36-7E1A2B9C5D08}: block active name="Block SMTP out" protocol=6 ra4=203.0.113.0/255.255.255.0 rport=25`,
			},
		}
		for _, tt := range tests {
			r := parseWinRule(tt.id, rules[tt.id])
			if r.dir != tt.dir || r.text != tt.text {
				t.Errorf("%s:\n got %s %s\nwant %s %s", tt.id, r.dir, r.text, tt.dir, tt.text)
			}
		}
	})

	t.Run("a rule's version does not change its text", func(t *testing.T) {
		a := parseWinRule("x", "v2.10|Action=Allow|Dir=In|LPort=1|")
		b := parseWinRule("x", "v2.33|Action=Allow|Dir=In|LPort=1|")
		if a != b {
			t.Errorf("%+v != %+v", a, b)
		}
	})

	t.Run("a value that is not a rule is kept verbatim", func(t *testing.T) {
		if r := parseWinRule("odd", "hello"); r.text != `odd: unparsed "hello"` || r.dir != "other" {
			t.Errorf("got %+v", r)
		}
	})

	t.Run("profiles and both stores make stable chains", func(t *testing.T) {
		profiles := winEffective(localValues, policyValues)
		chains := winChains(profiles, local.rules(winLocalKey), policy.rules(winPolicyKey))
		snap := snapshotOf(chains)
		again := snapshotOf(winChains(profiles, local.rules(winLocalKey), policy.rules(winPolicyKey)))
		if snap.Fingerprint != again.Fingerprint {
			t.Error("two readings of the same registry differ")
		}
		if got := chainOf(t, chains, "windows profiles", "Public").Header; got != "firewall off inbound block group-policy" {
			t.Errorf("Public header %q", got)
		}
		in := chainOf(t, chains, "windows policy", "in")
		if len(in.Rules) != 1 || !strings.HasPrefix(in.Rules[0], "{A3C2E1F0-7B6D-4E5C-9A8B-1D2E3F4A5B6C}: allow active lport=5985") {
			t.Errorf("policy rules %q", in.Rules)
		}
		if got := len(chainOf(t, chains, "windows local", "in").Rules); got != 4 {
			t.Errorf("%d local inbound rules, want 4", got)
		}
	})
}
