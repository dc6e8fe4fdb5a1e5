package sim

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// scripted places every VM on host 0 and makes the moves it is given at
// the first step.
type scripted struct{ moves func(p *Plan) []Move }

func (scripted) Name() string               { return "scripted" }
func (scripted) Place(p *Plan, _ *VM) *Host { return p.Hosts()[0] }
func (s *scripted) Migrate(p *Plan) []Move {
	if s.moves == nil {
		return nil
	}
	m := s.moves(p)
	s.moves = nil
	return m
}

func tinySetup(hosts int) Setup {
	s := Setup{VMTypes: []VMSpec{{MIPS: 500, RAM: 613, BW: 100000}}, Step: 300}
	for range hosts {
		s.Hosts = append(s.Hosts, HostSpec{PEMIPS: 1860, PEs: 2, RAM: 4096, BW: 1000000, Power: &HPProLiantG4})
	}
	return s
}

func constant(u float64, n int) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = u
	}
	return s
}

func near(got, want float64) bool { return math.Abs(got-want) <= 1e-9*math.Max(1, math.Abs(want)) }

func TestEnergyOfAnIdleSteadyHostIsItsDrawOverTheInterval(t *testing.T) {
	r, err := Run(tinySetup(1), []Trace{{Name: "a", Samples: constant(0.5, 3)}}, &scripted{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// 250 of 3720 MIPS: 6.72 % of the way from 86 W to 89.4 W, for the
	// 300 s between the two updates (before the first, the host was off).
	watts := 86 + 3.4*(250.0/3720*10)
	if want := watts * 300 / 3.6e6; !near(r.EnergyKWh, want) {
		t.Errorf("energy: got %.9f kWh, want %.9f", r.EnergyKWh, want)
	}
	if r.Migrations != 0 || r.SLATAH != 0 || r.PDM != 0 {
		t.Errorf("got migrations %d, SLATAH %g, PDM %g; want all zero on an unloaded host", r.Migrations, r.SLATAH, r.PDM)
	}
}

func TestAHostThatCannotServeItsVMsCountsAsOverloaded(t *testing.T) {
	// Eight VMs of 500 MIPS at full load ask for 4000 of 3720 MIPS.
	var tr []Trace
	for range 8 {
		tr = append(tr, Trace{Name: "busy", Samples: constant(1, 4)})
	}
	r, err := Run(tinySetup(1), tr, &scripted{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.SLATAH != 1 {
		t.Errorf("SLATAH: got %g, want 1 (the host never had enough)", r.SLATAH)
	}
}

func TestAMigrationCostsTheVMATenthForRAMOverHalfTheBandwidth(t *testing.T) {
	move := &scripted{moves: func(p *Plan) []Move {
		return []Move{{VM: p.VMs(p.Hosts()[0])[0], To: p.Hosts()[1]}}
	}}
	r, err := Run(tinySetup(2), []Trace{{Name: "a", Samples: constant(0.5, 3)}}, move, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Migrations != 1 {
		t.Fatalf("got %d migrations, want 1", r.Migrations)
	}
	// 613 MB over 62.5 MB/s is 9.808 s at 90 % of 250 MIPS, out of 300 s
	// of 250 MIPS asked for.
	if want := 25 * (613 / 62.5) / (250 * 300); !near(r.PDM, want) {
		t.Errorf("PDM: got %.9f, want %.9f", r.PDM, want)
	}
	// The target counts the VM's whole demand from the start of the copy
	// but holds a tenth of it: CloudSim's hosts are short while a VM
	// migrates in.
	if r.SLATAH <= 0 {
		t.Errorf("SLATAH: got %g, want the target's time receiving the VM counted", r.SLATAH)
	}
}

func TestLoadDayNamesTheBadLine(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "vm1"), []byte("10\n20\n101\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadDay(dir)
	if err == nil || !strings.Contains(err.Error(), "vm1:3:") || !strings.Contains(err.Error(), `"101"`) {
		t.Fatalf("got %v, want an error naming vm1:3 and the sample", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "vm1"), []byte(strings.Repeat("9", 100)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadDay(dir); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Fatalf("got %v, want an over-long line refused", err)
	}
}
