package inventory

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// These fixtures are virsh's output as libvirt 9 prints it; libvirt is
// not installed here, so GatherNets runs against them through its Runner.
func fixtureRunner(t *testing.T, domains ...string) Runner {
	t.Helper()
	return func(_ context.Context, args ...string) ([]byte, error) {
		switch args[0] {
		case "list":
			return []byte(strings.Join(domains, "\n") + "\n\n"), nil
		case "domiflist":
			return os.ReadFile(filepath.Join("testdata", "domiflist-"+args[1]+".txt"))
		case "net-dumpxml":
			return os.ReadFile(filepath.Join("testdata", "net-"+args[1]+".xml"))
		}
		return nil, errors.New("unexpected virsh " + args[0])
	}
}

func TestParseDomIfList(t *testing.T) {
	b, err := os.ReadFile("testdata/domiflist-web2.txt")
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseDomIfList(b)
	if err != nil {
		t.Fatal(err)
	}
	want := []Iface{
		{"vnet2", "network", "default", "virtio", "52:54:00:6b:3c:59"},
		{"vnet3", "network", "backend", "virtio", "52:54:00:11:22:02"},
		{"vnet4", "bridge", "br-db", "virtio", "52:54:00:11:22:03"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for _, bad := range []string{"error: failed to get domain 'x'\n", " Interface Type Source Model MAC\n---\n vnet0 network\n"} {
		if _, err := ParseDomIfList([]byte(bad)); err == nil {
			t.Errorf("%q was accepted", bad)
		}
	}
}

func TestParseNetXML(t *testing.T) {
	for _, tc := range []struct {
		file string
		want Network
	}{
		{"net-default.xml", Network{Name: "default", Bridge: "virbr0"}},
		{"net-backend.xml", Network{Name: "backend", Bridge: "virbr1", Isolated: true}},
	} {
		t.Run("the "+tc.file+" network is read with its forwarding", func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseNetXML(b)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestChunksFromLibvirt(t *testing.T) {
	h, err := GatherNets(t.Context(), "hostA", fixtureRunner(t, "web1", "web2", "db1", "lone"), []string{"br-db"})
	if err != nil {
		t.Fatal(err)
	}
	got := Chunks([]HostNets{h})
	want := map[string]string{
		// web2 is on both private segments, so all three are one chunk.
		"web1": "hostA/bridge/br-db", "web2": "hostA/bridge/br-db",
		"db1": "hostA/bridge/br-db",
	}
	if !maps.Equal(got, want) {
		t.Errorf("got %v, want %v (NAT network and uplinked br0 make no chunk)", got, want)
	}
}

// FuzzParsers: virsh output is read, never trusted; no input panics.
func FuzzParsers(f *testing.F) {
	for _, name := range []string{"domiflist-web2.txt", "net-backend.xml", "net-default.xml"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ifs, err := ParseDomIfList(b)
		for _, i := range ifs {
			if err == nil && (i.Name == "" || i.MAC == "") {
				t.Errorf("an interface with empty columns: %+v", i)
			}
		}
		_, _ = ParseNetXML(b)
	})
}
