//go:build linux

package vmlab

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestQEMUArgsAlwaysRestrictUserNetwork(t *testing.T) {
	args, err := qemuArgs(VMConfig{Name: "g", Kernel: "k", Initrd: "i", MemoryMiB: 256, Network: true}, "/tmp/q", "/tmp/c", "")
	if err != nil {
		t.Fatal(err)
	}
	i := slices.Index(args, "-netdev")
	if i < 0 || !strings.Contains(args[i+1], "restrict=on") {
		t.Errorf("qemu args %q: -netdev without restrict=on", args)
	}
	if !strings.Contains(strings.Join(args, " "), "no_timer_check") {
		t.Errorf("qemu args %q: kernel command line lacks no_timer_check", args)
	}
}

func TestQEMUArgsRejectLongSocketPaths(t *testing.T) {
	long := "/tmp/" + strings.Repeat("x", 110)
	_, err := qemuArgs(VMConfig{Name: "g", ChannelSocket: long}, "/tmp/q", "/tmp/c", "")
	if err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("qemuArgs with a %d-byte socket path: error = %v, want a length error", len(long), err)
	}
}

func TestLibvirtChannelPathMatchesLibvirtLayout(t *testing.T) {
	root := t.TempDir()
	got := LibvirtChannelPath(root, 7, "a-very-long-domain-name-indeed")
	want := filepath.Join(root, "domain-7-a-very-long-domain-n", "org.guestdiag.agent.0")
	if got != want {
		t.Errorf("LibvirtChannelPath = %q, want %q", got, want)
	}
	if st, err := os.Stat(filepath.Dir(got)); err != nil || !st.IsDir() {
		t.Errorf("domain directory not created: %v", err)
	}
}
