//go:build unix

package executor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// standInVirsh puts a virsh on PATH that records its arguments, one call
// per line, and plays the part of libvirt: this machine has no libvirt,
// so no real virsh can run here. With the environment variable
// STANDIN_VIRSH_FAIL set, migrate fails with that text on stderr.
func standInVirsh(t *testing.T, jobinfo string) (calls func() []string) {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "calls")
	script := `#!/bin/sh
echo "$*" >> '` + log + `'
case "$*" in
*" migrate "*)
	if [ -n "$STANDIN_VIRSH_FAIL" ]; then echo "$STANDIN_VIRSH_FAIL" >&2; exit 1; fi
	echo "Migration: [100 %]" ;;
*" domjobinfo "*)
	printf '%s' "$STANDIN_VIRSH_JOBINFO" ;;
esac
`
	if err := os.WriteFile(filepath.Join(dir, "virsh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("STANDIN_VIRSH_JOBINFO", jobinfo)
	return func() []string {
		b, err := os.ReadFile(log)
		if err != nil {
			return nil
		}
		return strings.Split(strings.TrimSpace(string(b)), "\n")
	}
}

// completedJob is what virsh domjobinfo --completed prints for a live
// migration (libvirt 9, C locale), shortened.
const completedJob = `Job type:         Completed
Operation:        Incoming migration
Time elapsed:     1204         ms
Data processed:   261.531 MiB
Total downtime:   37           ms
Downtime w/o network: 31       ms
`

func TestLibvirtMigratesWithVirshAndReadsTheDowntime(t *testing.T) {
	calls := standInVirsh(t, completedJob)
	ex, err := NewLibvirt(LibvirtConfig{}, testLog())
	if err != nil {
		t.Fatal(err)
	}
	res, err := ex.Migrate(t.Context(), "web1", "hv1", "hv2")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"-c qemu+ssh://hv1/system migrate --live --persistent --undefinesource --domain web1 --desturi qemu+ssh://hv2/system",
		"-c qemu+ssh://hv2/system domjobinfo --completed --domain web1",
	}
	got := calls()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("stand-in virsh ran with\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if res.Downtime != 37*time.Millisecond || res.Duration <= 0 {
		t.Errorf("result %+v, want the 37 ms downtime domjobinfo reported and a measured duration", res)
	}
}

func TestLibvirtTargetURIIsConfigurable(t *testing.T) {
	calls := standInVirsh(t, "")
	ex, err := NewLibvirt(LibvirtConfig{URI: "qemu+tls://{host}.dc1/system", TargetURI: "qemu+tls://{host}.dc1/system"}, testLog())
	if err != nil {
		t.Fatal(err)
	}
	res, err := ex.Migrate(t.Context(), "web1", "hv1", "hv2")
	if err != nil {
		t.Fatal(err)
	}
	if got := calls(); len(got) == 0 || !strings.HasSuffix(got[0], "--desturi qemu+tls://hv2.dc1/system") || !strings.HasPrefix(got[0], "-c qemu+tls://hv1.dc1/system ") {
		t.Errorf("stand-in virsh ran with %q, want the configured URIs", got)
	}
	if res.Downtime != 0 {
		t.Errorf("downtime %v with no downtime in domjobinfo, want 0 (not reported)", res.Downtime)
	}
	if _, err := NewLibvirt(LibvirtConfig{TargetURI: "qemu+ssh://hv2/system"}, testLog()); err == nil {
		t.Error("a target URI without {host} was accepted")
	}
	if _, err := NewLibvirt(LibvirtConfig{URI: "qemu:///system"}, testLog()); err == nil || !strings.Contains(err.Error(), "source URI") {
		t.Errorf("a source URI without {host} gave %v, want it refused: every move has its own source", err)
	}
}

func TestLibvirtFailureCarriesVirshsText(t *testing.T) {
	calls := standInVirsh(t, completedJob)
	t.Setenv("STANDIN_VIRSH_FAIL", "error: operation failed: guest CPU doesn't match specification: missing features: avx512f")
	ex, err := NewLibvirt(LibvirtConfig{}, testLog())
	if err != nil {
		t.Fatal(err)
	}
	_, err = ex.Migrate(t.Context(), "web1", "hv1", "hv2")
	if err == nil || !strings.Contains(err.Error(), "missing features: avx512f") {
		t.Errorf("error %v, want virsh's own text", err)
	}
	if got := calls(); len(got) != 1 {
		t.Errorf("stand-in virsh ran %d times (%q), want once: a failed migration is not followed by domjobinfo, nor retried", len(got), got)
	}
}

func TestLibvirtRefusesANameVirshWouldTakeForAnOption(t *testing.T) {
	calls := standInVirsh(t, "")
	ex, err := NewLibvirt(LibvirtConfig{}, testLog())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ex.Migrate(t.Context(), "--all", "hv1", "hv2"); err == nil {
		t.Error(`VM "--all" was accepted`)
	}
	if _, err := ex.Migrate(t.Context(), "web1", "hv1", "hv2/system?x"); err == nil {
		t.Error(`target "hv2/system?x" was accepted`)
	}
	if _, err := ex.Migrate(t.Context(), "web1", "hv1/system?x", "hv2"); err == nil {
		t.Error(`source "hv1/system?x" was accepted`)
	}
	if got := calls(); got != nil {
		t.Errorf("stand-in virsh ran with %q, want not at all", got)
	}
}
