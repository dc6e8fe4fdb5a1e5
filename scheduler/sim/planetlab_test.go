package sim

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
)

// planetLab is where the PlanetLab traces live beside the project.
const planetLab = "../../../shared/traces/planetlab"

func planetLabDays(t testing.TB) []string {
	t.Helper()
	days, err := filepath.Glob(filepath.Join(planetLab, "2011*"))
	if err != nil || len(days) == 0 {
		if os.Getenv("GUESTDIAG_REQUIRE_TRACES") != "" {
			t.Fatalf("PlanetLab traces not found under %s", planetLab)
		}
		t.Skipf("PlanetLab traces not found under %s (see ../shared/traces/README.md): simulator not checked against CloudSim", planetLab)
	}
	return days
}

// runDays runs a policy over every day, two days at a time.
func runDays(t testing.TB, days []string, p Policy) []Result {
	res := make([]Result, len(days))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2)
	for i, d := range days {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			tr, err := LoadDay(d)
			if err != nil {
				t.Error(err)
				return
			}
			if res[i], err = Run(PlanetLabSetup(), tr, p, Options{}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	return res
}

func median(res []Result, f func(Result) float64) float64 {
	v := make([]float64, len(res))
	for i, r := range res {
		v[i] = f(r)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// TestReproducesCloudSim replays all ten PlanetLab days through the two
// Beloglazov baselines and compares the medians with the figures CloudSim
// 3.0.3 gives on the same set-up (../shared/traces/README.md). It takes
// minutes, so it runs only when GUESTDIAG_SIM_FULL is set.
func TestReproducesCloudSim(t *testing.T) {
	days := planetLabDays(t)
	if os.Getenv("GUESTDIAG_SIM_FULL") == "" {
		t.Skip("set GUESTDIAG_SIM_FULL=1 to replay all ten PlanetLab days (minutes)")
	}
	cases := []struct {
		policy         Policy
		energy, slatah float64
		migrations     float64
	}{
		{Beloglazov{Param: 0.8}, 187.6, 0.0510, 26746},
		{Beloglazov{LR: true, Param: 1.2}, 145.6, 0.0803, 29553},
	}
	for _, c := range cases {
		t.Run(c.policy.Name(), func(t *testing.T) {
			res := runDays(t, days, c.policy)
			check := func(what string, got, want, tol float64) {
				t.Logf("%s: got %.4g, CloudSim %.4g (%+.1f %%)", what, got, want, (got/want-1)*100)
				if math.Abs(got/want-1) > tol {
					t.Errorf("%s: got %.4g, want within %.0f %% of CloudSim's %.4g", what, got, tol*100, want)
				}
			}
			check("energy kWh", median(res, func(r Result) float64 { return r.EnergyKWh }), c.energy, 0.05)
			check("migrations", median(res, func(r Result) float64 { return float64(r.Migrations) }), c.migrations, 0.05)
			check("SLATAH", median(res, func(r Result) float64 { return r.SLATAH }), c.slatah, 0.05)
		})
	}
}
