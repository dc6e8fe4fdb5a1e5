package all_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/checks"
	"github.com/guestdiag/guestdiag/checks/firewall"
	"github.com/guestdiag/guestdiag/checks/internal/checktest"
	"github.com/guestdiag/guestdiag/checks/logs"
	"github.com/guestdiag/guestdiag/checks/network"
	"github.com/guestdiag/guestdiag/checks/processes"
	"github.com/guestdiag/guestdiag/checks/resources"
	"github.com/guestdiag/guestdiag/checks/software"
)

func TestTheSixChecksAreRegisteredOnByDefaultAndBuildFromTheirDefaults(t *testing.T) {
	want := []struct {
		name     string
		interval time.Duration
	}{
		{firewall.Name, 5 * time.Minute},
		{logs.Name, time.Minute},
		{network.Name, time.Minute},
		{processes.Name, 15 * time.Second},
		{resources.Name, 30 * time.Second},
		{software.Name, 15 * time.Minute},
	}
	var names []string
	for _, r := range checks.All() {
		names = append(names, r.Name)
	}
	for _, w := range want {
		t.Run(w.name, func(t *testing.T) {
			r, ok := checks.Lookup(w.name)
			if !ok {
				t.Fatalf("%s is not registered (registered: %v)", w.name, names)
			}
			if !r.Default || r.Interval != w.interval || r.Timeout <= 0 || r.Timeout > r.Interval {
				t.Errorf("registration = default %v, interval %v, timeout %v; want on, %v, a timeout within the interval",
					r.Default, r.Interval, r.Timeout, w.interval)
			}
			// The defaults survive a round trip through the config file's JSON.
			cfg := r.NewConfig()
			b, err := json.Marshal(cfg)
			if err != nil {
				t.Fatal(err)
			}
			cfg = r.NewConfig()
			if err := json.Unmarshal(b, cfg); err != nil {
				t.Fatalf("defaults %s do not read back: %v", b, err)
			}
			c, err := r.New(cfg, checks.Env{Logger: checktest.Discard(), State: checks.NewState(t.TempDir(), w.name)})
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Name(); got != w.name {
				t.Errorf("Name() = %q, want %q", got, w.name)
			}
		})
	}
	if len(names) != len(want) || !slices.IsSorted(names) {
		t.Errorf("All() = %v, want the six checks sorted by name", names)
	}
}
