package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/guestdiag/guestdiag/internal/cli"
)

// day writes a PlanetLab-style day folder: n VMs at a steady load.
func day(t *testing.T, n int, pct string) string {
	t.Helper()
	dir := t.TempDir()
	for i := range n {
		lines := strings.Repeat(pct+"\n", 12)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("vm%02d", i)), []byte(lines), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func runCmd(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestSimulatePrintsOneRowPerPolicy(t *testing.T) {
	code, out, errOut := runCmd("simulate", "-policies", "guestdiag,thr-mmt-0.8,sandpiper", day(t, 20, "30"))
	if code != cli.ExitOK {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	for _, p := range []string{"guestdiag", "thr-mmt-0.8", "sandpiper", "migrations", "SLATAH", "energy kWh"} {
		if !strings.Contains(out, p) {
			t.Errorf("output lacks %q:\n%s", p, out)
		}
	}
	if strings.Contains(errOut, "[") {
		t.Errorf("a progress bar went to a stderr that is not a terminal: %q", errOut)
	}
}

func TestSimulateRefusesWhatItCannotRun(t *testing.T) {
	code, _, errOut := runCmd("simulate", "-policies", "guestdiag,magic", day(t, 2, "10"))
	if code != cli.ExitUsage || !strings.Contains(errOut, `unknown policy "magic"`) {
		t.Errorf("unknown policy: exit %d, stderr %q; want a usage error naming it", code, errOut)
	}
	bad := day(t, 2, "10")
	if err := os.WriteFile(filepath.Join(bad, "vm01"), []byte("10\nlots\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCmd("simulate", bad)
	if code != cli.ExitFailed || !strings.Contains(errOut, "vm01:2:") {
		t.Errorf("bad trace: exit %d, stderr %q; want a failure naming vm01:2", code, errOut)
	}
	if code, _, _ := runCmd("simulate"); code != cli.ExitUsage {
		t.Errorf("no day folder: exit %d, want %d", code, cli.ExitUsage)
	}
}
