package daemon

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/scheduler/inventory"
	"github.com/guestdiag/guestdiag/scheduler/planner"
)

func TestParseTheFullExample(t *testing.T) {
	b, err := os.ReadFile("testdata/scheduler.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse("scheduler.yaml", b)
	if err != nil {
		t.Fatal(err)
	}
	if f.Interval != Duration(2*time.Minute) || f.Lease.Replicas != 3 || f.Libvirt.URI != "qemu+ssh://root@{host}/system" {
		t.Errorf("got interval %v replicas %d uri %q", time.Duration(f.Interval), f.Lease.Replicas, f.Libvirt.URI)
	}
	o := f.Options(time.Time{})
	if want := (planner.Options{Cooldown: time.Hour, MaxMoves: 4, MaxPerHost: 1, MinGain: 0.1, Step: 0.05, Consolidate: true}); o != want {
		t.Errorf("got options %+v, want %+v", o, want)
	}
	d := f.Declared(map[string]string{"shop-db": "node1/net/backend", "lone": "node1/net/x"})
	if got, want := d.Hosts["node3"], (inventory.Policy{CPU: planner.Band{High: 50}, Mem: planner.Band{High: 85}}); got != want {
		t.Errorf("node3: got %+v, want its CPU band and the default memory band %+v", got, want)
	}
	if !d.Hosts["node4"].Empty || d.Hosts["node5"].VMs.High != 12 {
		t.Errorf("got node4 %+v, node5 %+v", d.Hosts["node4"], d.Hosts["node5"])
	}
	if d.Chunks["shop-db"] != "shop" || d.Chunks["lone"] != "node1/net/x" {
		t.Errorf("got chunks %v, want the declared shop over the derived one", d.Chunks)
	}
	if len(d.Groups) != 2 || !d.Groups[0].Anti || !d.Groups[0].Hard || d.Groups[1].Hard {
		t.Errorf("got groups %+v", d.Groups)
	}
	var qmp struct{ Sockets string }
	node := f.Executors["qmp"]
	if err := node.Decode(&qmp); err != nil || qmp.Sockets != "/run/qemu" {
		t.Errorf("executors.qmp: got %+v, %v", qmp, err)
	}
}

func TestAnEmptyFileIsTheDefaults(t *testing.T) {
	f, err := Parse("empty.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.Interval != Duration(time.Minute) || f.Defaults.CPU.High != 85 || f.Planner.MaxMoves != 10 {
		t.Errorf("got %+v, want the defaults", f)
	}
}

func TestConfigErrorsSayWhere(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"a misspelt top-level key is refused", "interval: 1m\nintervall: 2m\n", []string{"x.yaml:2: field intervall not found"}},
		{"a misspelt band key is refused", "defaults:\n  cpu: {low: 10, hihg: 80}\n", []string{`x.yaml:2: unknown key "hihg"`}},
		{"a duration without a unit is refused", "planner:\n  cooldown: 30\n", []string{`x.yaml:2: duration "30"`}},
		{"a band whose low is not below its high is refused", "hosts:\n  n1:\n    cpu: {low: 80, high: 70}\n", []string{"x.yaml:3: hosts.n1.cpu: low 80 is not below high 70"}},
		{"a CPU band over 100 % is refused", "defaults:\n  cpu: {high: 170}\n", []string{"x.yaml:2: defaults.cpu: bounds are percent"}},
		{"a VM in two chunks is refused", "chunks:\n  a: [v1, v2]\n  b: [v2, v3]\n", []string{`x.yaml:3: chunks.b: VM "v2" is already in chunk a`}},
		{"a group of one is refused", "groups:\n  - name: g\n    vms: [v1]\n", []string{"x.yaml:2: groups.g: a group needs at least two VMs"}},
		{"every mistake is reported", "groups:\n  - vms: [a, b]\n  - name: x\n    vms: [a]\n", []string{"x.yaml:2: groups: a group needs a name", "x.yaml:3: groups.x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("x.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			lines := strings.Split(err.Error(), "\n")
			for _, w := range tc.want {
				if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, w) }) {
					t.Errorf("got %q, want a line starting %q", err, w)
				}
			}
		})
	}
}

// FuzzParse: whatever the file holds, Parse returns a config or errors
// that each say FILE:LINE or FILE, and never panics.
func FuzzParse(f *testing.F) {
	b, err := os.ReadFile("testdata/scheduler.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte("hosts:\n  n1:\n    cpu: {low: 80, high: 70}\n"))
	f.Add([]byte("groups: [{name: a, vms: [x]}, 3]\n"))
	f.Add([]byte("chunks: {a: [1, 2], b: 7}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse("f.yaml", b)
		if err == nil {
			if c == nil {
				t.Fatal("no config and no error")
			}
			return
		}
		for _, line := range strings.Split(err.Error(), "\n") {
			if !strings.HasPrefix(line, "f.yaml") {
				t.Errorf("an error line does not say where: %q", line)
			}
		}
	})
}

// A host the collector hints overloaded or underloaded is one the default
// policy plans for, and no other.
func TestDefaultBandsAreTheCollectorsHintThresholds(t *testing.T) {
	d := Defaults().Defaults
	got := [3]float64{d.CPU.High, d.CPU.Low, d.Memory.High}
	want := [3]float64{collector.DefaultCPUHighPct, collector.DefaultCPULowPct, collector.DefaultMemHighPct}
	if got != want {
		t.Errorf("default bands cpu high/low, memory high = %v, the collector's hint thresholds are %v", got, want)
	}
}
