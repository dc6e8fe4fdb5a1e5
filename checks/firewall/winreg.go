package firewall

import (
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Registry locations of the Windows firewall, under HKLM.
const (
	winLocalKey  = `SYSTEM\CurrentControlSet\Services\SharedAccess\Parameters\FirewallPolicy`
	winPolicyKey = `SOFTWARE\Policies\Microsoft\WindowsFirewall`
)

// winProfile names a profile and its subkeys: the local settings call the
// private profile StandardProfile, Group Policy calls it PrivateProfile.
type winProfile struct {
	name, localKey, policyKey string
}

var winProfileKeys = []winProfile{
	{"Domain", "DomainProfile", "DomainProfile"},
	{"Private", "StandardProfile", "PrivateProfile"},
	{"Public", "PublicProfile", "PublicProfile"},
}

// winValues are the DWORD values of one profile key; nil when absent.
type winValues struct {
	EnableFirewall       *uint32
	DefaultInboundAction *uint32
}

// winEffective returns the effective state of the profiles, in the
// order of winProfileKeys: a Group Policy value overrides the local one,
// and an absent value means the Windows default (on, block inbound).
// DefaultInboundAction is 1 for block and 0 for allow.
func winEffective(local, policy []winValues) []Profile {
	out := make([]Profile, len(winProfileKeys))
	for i, k := range winProfileKeys {
		p := Profile{Name: k.name, Enabled: true, Inbound: "block"}
		var l, g winValues
		if i < len(local) {
			l = local[i]
		}
		if i < len(policy) {
			g = policy[i]
		}
		enable, inbound := l.EnableFirewall, l.DefaultInboundAction
		if g.EnableFirewall != nil {
			enable, p.Policy = g.EnableFirewall, true
		}
		if g.DefaultInboundAction != nil {
			inbound, p.Policy = g.DefaultInboundAction, true
		}
		if enable != nil {
			p.Enabled = *enable != 0
		}
		if inbound != nil && *inbound == 0 {
			p.Inbound = "allow"
		}
		out[i] = p
	}
	return out
}

// winRule is one rule of a FirewallRules key in canonical form.
type winRule struct {
	dir  string // "in", "out", or "other" for a value without Dir
	text string
}

// parseWinRule parses a FirewallRules value such as
// "v2.30|Action=Allow|Active=TRUE|Dir=In|Protocol=6|LPort=3389|Name=...|"
// into "<id>: allow active protocol=6 lport=3389 name=...". The version is
// left out: Windows rewrites it on upgrade without changing the rule. The
// other fields keep their values, sorted by key; repeated keys (LPort,
// RA4) keep their order. A value that is not a rule is kept verbatim.
func parseWinRule(id, value string) winRule {
	fields := strings.Split(strings.TrimSuffix(value, "|"), "|")
	if len(fields) < 2 || !strings.HasPrefix(fields[0], "v") {
		return winRule{dir: "other", text: id + ": unparsed " + strconv.Quote(value)}
	}
	type kv struct{ k, v string }
	var (
		rest           []kv
		action, active string
		dir            = "other"
	)
	for _, f := range fields[1:] {
		k, v, _ := strings.Cut(f, "=")
		switch strings.ToLower(k) {
		case "action":
			action = strings.ToLower(v)
		case "dir":
			dir = strings.ToLower(v)
		case "active":
			active = "inactive"
			if strings.EqualFold(v, "TRUE") {
				active = "active"
			}
		default:
			rest = append(rest, kv{strings.ToLower(k), v})
		}
	}
	slices.SortStableFunc(rest, func(a, b kv) int { return strings.Compare(a.k, b.k) })
	parts := []string{id + ":"}
	if action != "" {
		parts = append(parts, action)
	}
	if active != "" {
		parts = append(parts, active)
	}
	for _, f := range rest {
		parts = append(parts, f.k+"="+winQuote(f.v))
	}
	return winRule{dir: dir, text: strings.Join(parts, " ")}
}

// winQuote quotes values with spaces so that a line splits back into
// its fields unambiguously.
func winQuote(v string) string {
	if v == "" || strings.ContainsAny(v, " \"") {
		return strconv.Quote(v)
	}
	return v
}

// winChains turns the profiles and the rules of the local store and of
// Group Policy (value name -> rule string) into chains: table "windows
// profiles" with one chain per profile, tables "windows local" and
// "windows policy" with one chain per direction, rules sorted by text since
// the registry has no order.
func winChains(profiles []Profile, local, policy map[string]string) []chain {
	var chains []chain
	for _, p := range profiles {
		state := "off"
		if p.Enabled {
			state = "on"
		}
		h := "firewall " + state + " inbound " + p.Inbound
		if p.Policy {
			h += " group-policy"
		}
		chains = append(chains, chain{Table: "windows profiles", Name: p.Name, Header: h})
	}
	for _, store := range []struct {
		table string
		rules map[string]string
	}{{"windows local", local}, {"windows policy", policy}} {
		byDir := map[string][]string{}
		for id, v := range store.rules {
			r := parseWinRule(id, v)
			byDir[r.dir] = append(byDir[r.dir], r.text)
		}
		for _, dir := range slices.Sorted(maps.Keys(byDir)) {
			rules := byDir[dir]
			slices.Sort(rules)
			chains = append(chains, chain{Table: store.table, Name: dir, Rules: rules})
		}
	}
	return chains
}
