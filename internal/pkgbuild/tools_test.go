package pkgbuild

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// requireTools skips the test when one of the named commands is missing,
// or fails it when GUESTDIAG_REQUIRE_PACKAGING=1 says they must be there
// (scripts/deps.sh installs them).
func requireTools(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			msg := n + " is not installed (scripts/deps.sh installs it; Debian packages dpkg, rpm, wixl, msitools, busybox-static)"
			if os.Getenv("GUESTDIAG_REQUIRE_PACKAGING") == "1" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
}

// requireRoot is for the tests that run maintainer scripts under dpkg
// --root or rpm --root, which chroot into a throwaway root.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		msg := "dpkg --root and rpm --root run the maintainer scripts in a chroot, which needs root"
		if os.Getenv("GUESTDIAG_REQUIRE_PACKAGING") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// builtBinaries builds the real commands, stripped as `make packages`
// builds them, once per test binary: linux/amd64 for the deb and rpm
// packages, the agent for linux/arm64 too, windows/amd64 for the MSI, and guestdiag-pkg itself
// for this machine. The packages are built by running guestdiag-pkg, as
// `make packages` does, and not by calling Build here: under -race the
// compression alone would take minutes.
func builtBinaries(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "guestdiag-pkg-bin-")
		if binErr != nil {
			return
		}
		linux := []string{"guestdiag-agent", "guestdiag-relay", "guestdiag-collector", "guestdiag", "guestdiag-scheduler"}
		for _, b := range []struct {
			goos, goarch string
			cmds         []string
		}{
			{"linux", "amd64", linux},
			{"linux", "arm64", []string{"guestdiag-agent"}},
			{"windows", "amd64", []string{"guestdiag-agent"}},
			{runtime.GOOS, runtime.GOARCH, []string{"guestdiag-pkg"}},
		} {
			dir := filepath.Join(binDir, b.goos+"_"+b.goarch)
			if b.cmds[0] == "guestdiag-pkg" {
				dir = filepath.Join(binDir, "tool")
			}
			args := []string{"build", "-trimpath", "-ldflags", "-s -w", "-o", dir + "/"}
			for _, c := range b.cmds {
				args = append(args, "./cmd/"+c)
			}
			cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), args...)
			cmd.Dir = "../.."
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+b.goos, "GOARCH="+b.goarch)
			if out, err := cmd.CombinedOutput(); err != nil {
				binErr = fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, out)
				return
			}
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binDir
}

var (
	builtMu sync.Mutex
	built   = map[string]map[string]string{}
)

// buildPackages runs guestdiag-pkg for the version git describe would call
// describe, with the extra flags args, and returns the packages it wrote
// keyed by file name. Builds are cached for the test binary's life.
func buildPackages(t *testing.T, describe string, args ...string) map[string]string {
	t.Helper()
	bin := builtBinaries(t)
	key := describe + " " + strings.Join(args, " ")
	builtMu.Lock()
	defer builtMu.Unlock()
	if m, ok := built[key]; ok {
		return m
	}
	out, err := os.MkdirTemp(bin, "dist-")
	if err != nil {
		t.Fatal(err)
	}
	cmdArgs := append([]string{"-describe", describe, "-bin", bin, "-packaging", "packaging", "-out", out}, args...)
	cmd := exec.Command(filepath.Join(bin, "tool", "guestdiag-pkg"), cmdArgs...)
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("guestdiag-pkg %s: %v: %s", strings.Join(cmdArgs, " "), err, stderr.String())
	}
	m := map[string]string{}
	for _, p := range strings.Fields(string(stdout)) {
		m[filepath.Base(p)] = p
	}
	built[key] = m
	return m
}

// pkgPath is the built package named name, or fails the test.
func pkgPath(t *testing.T, m map[string]string, name string) string {
	t.Helper()
	p, ok := m[name]
	if !ok {
		t.Fatalf("guestdiag-pkg made no %s; it made %v", name, keys(m))
	}
	return p
}

func keys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// output runs a command and returns its standard output.
func output(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// TestMain removes what builtBinaries and buildPackages left: the binaries
// and packages are kept across tests, so no test's TempDir may hold them.
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" && binErr == nil {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}
