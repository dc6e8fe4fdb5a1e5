package hostrelay

import (
	"slices"
	"testing"

	"github.com/guestdiag/guestdiag/checks"
	_ "github.com/guestdiag/guestdiag/checks/all"
	"github.com/guestdiag/guestdiag/protocol"
)

func TestKnownChecksAreTheAgentsChecks(t *testing.T) {
	want := []string{protocol.AgentCheck}
	for _, r := range checks.All() {
		want = append(want, r.Name)
	}
	slices.Sort(want)
	if got := slices.Sorted(slices.Values(knownChecks)); !slices.Equal(got, want) {
		t.Errorf("knownChecks = %q, want the checks package's %q", got, want)
	}
}

func TestCheckNamesAllowsKnownAndAnnouncedUpToTheBound(t *testing.T) {
	c := &checkNames{max: 2}
	if refused := c.announce([]byte(`{"hostname":"h","os":"linux","agent_version":"1","checks":["disk","resources","extra1","extra2","extra3"]}`)); refused != 2 {
		t.Errorf("announce refused %d names, want 2 (the bound is 2: disk and extra1 fit)", refused)
	}
	for _, tt := range []struct {
		check string
		want  bool
	}{{"resources", true}, {"software", true}, {"disk", true}, {"extra1", true}, {"extra2", false}, {"invented", false}} {
		if got := c.allowed(tt.check); got != tt.want {
			t.Errorf("allowed(%q) = %v, want %v", tt.check, got, tt.want)
		}
	}
}
