package pkgbuild

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// unitValues returns every value of key in a unit file, later lines after
// earlier ones, as systemd reads them.
func unitValues(t *testing.T, path, key string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var vs []string
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+"="); ok {
			vs = append(vs, v)
		}
	}
	return vs
}

func TestAgentUnitBindsToThePortTheUdevRuleNames(t *testing.T) {
	const unit = "../../packaging/systemd/guestdiag-agent.service"
	// systemd escapes "-" in a device path as \x2d.
	dev := `dev-virtio\x2dports-` + AgentPort + ".device"
	if got := unitValues(t, unit, "BindsTo"); !slices.Equal(got, []string{dev}) {
		t.Errorf("BindsTo=%q, want %q", got, dev)
	}
	after := unitValues(t, unit, "After")
	if len(after) != 1 || !slices.Contains(strings.Fields(after[0]), dev) {
		t.Errorf("After=%q, want it to hold %s", after, dev)
	}
	rule, err := os.ReadFile("../../packaging/udev/70-guestdiag.rules")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`ATTR{name}=="` + AgentPort + `"`, `SYMLINK+="virtio-ports/` + AgentPort + `"`, `TAG+="systemd"`, `ENV{SYSTEMD_WANTS}+="guestdiag-agent.service"`} {
		if !strings.Contains(string(rule), want) {
			t.Errorf("the udev rule has no %s", want)
		}
	}
}

// The capabilities the agent's unit keeps are the ones docs/install.md
// explains, no more and no fewer.
func TestAgentCapabilitiesAreTheDocumentedOnes(t *testing.T) {
	set := unitValues(t, "../../packaging/systemd/guestdiag-agent.service", "CapabilityBoundingSet")
	if len(set) != 1 {
		t.Fatalf("CapabilityBoundingSet= appears %d times, want once", len(set))
	}
	got := strings.Fields(set[0])
	doc, err := os.ReadFile("../../docs/install.md")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, m := range regexp.MustCompile("(?m)^\\| `(CAP_[A-Z_]+)` \\|").FindAllStringSubmatch(string(doc), -1) {
		want = append(want, m[1])
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("the unit keeps %q, docs/install.md explains %q", got, want)
	}
}

// The relay, the collector and the scheduler keep no capability, run as
// their own users (the scheduler as the collector's) and cannot gain
// privileges.
func TestServiceUnitsRunUnprivileged(t *testing.T) {
	for _, u := range []struct{ unit, user string }{
		{"guestdiag-relay.service", "guestdiag-relay"},
		{"guestdiag-collector.service", "guestdiag-collector"},
		{"guestdiag-scheduler.service", "guestdiag-collector"},
	} {
		t.Run(u.unit+" runs as "+u.user, func(t *testing.T) {
			path := "../../packaging/systemd/" + u.unit
			for key, want := range map[string]string{"User": u.user, "CapabilityBoundingSet": "", "AmbientCapabilities": "", "NoNewPrivileges": "yes", "ProtectSystem": "strict"} {
				if got := unitValues(t, path, key); !slices.Equal(got, []string{want}) {
					t.Errorf("%s=%q, want %q", key, got, want)
				}
			}
			sysusers, err := os.ReadFile("../../packaging/sysusers/" + u.user + ".conf")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(sysusers), "u "+u.user+" ") {
				t.Errorf("sysusers.d/%s.conf makes no user %s", u.user, u.user)
			}
		})
	}
}
