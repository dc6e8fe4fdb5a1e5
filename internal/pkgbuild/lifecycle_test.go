package pkgbuild

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeRoot makes a throwaway root in which dpkg --root and rpm --root run
// the maintainer scripts for real: a static busybox for /bin/sh, and
// systemctl and udevadm stand-ins that only write down how they were called
// (no systemd runs here). /run/systemd/system and /run/udev say that systemd
// and udev run, and the agent's port exists, as in a booted guest.
func fakeRoot(t *testing.T) string {
	t.Helper()
	requireTools(t, "busybox")
	requireRoot(t)
	root := t.TempDir()
	for _, d := range []string{"bin", "usr/bin", "tmp", "var/tmp", "etc", "run/systemd/system", "run/udev", "dev/virtio-ports", "var/lib/dpkg/info", "var/lib/dpkg/updates"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, _ := exec.LookPath("busybox")
	if err := copyFile(bb, filepath.Join(root, "bin/busybox")); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(root, "bin/busybox"), 0o755)
	for _, c := range []string{"sh", "rm", "mkdir", "cat", "echo", "test", "["} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", c)); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []string{"systemctl", "udevadm"} {
		if err := os.WriteFile(filepath.Join(root, "usr/bin", c), []byte("#!/bin/sh\necho \""+c+" $*\" >> /calls\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"var/lib/dpkg/status", "var/lib/dpkg/available", "dev/virtio-ports/" + AgentPort} {
		if err := os.WriteFile(filepath.Join(root, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// calls returns, and forgets, the systemctl and udevadm calls the scripts made.
func calls(t *testing.T, root string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "calls"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(root, "calls"))
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func exists(root, p string) bool {
	_, err := os.Stat(filepath.Join(root, p))
	return err == nil
}

// lifecycleStep is one package operation and what a user checks after it.
type lifecycleStep struct {
	name        string
	args        []string // to dpkg or rpm, after --root; "%v1"/"%v2" are the two packages
	wantCalls   []string // systemctl and udevadm calls, in order
	spoolKept   bool     // the spool file written after the install is still there
	configKept  bool     // the edited conffile is still there, edited
	stateExists bool
}

func runLifecycle(t *testing.T, tool string, root, v1, v2 string, steps []lifecycleStep) {
	const spool = "var/lib/guestdiag/spool/000001.ndjson"
	const conf = "etc/guestdiag/agent.yaml"
	for i, s := range steps {
		args := []string{"--root", root}
		for _, a := range s.args {
			args = append(args, strings.NewReplacer("%v1", v1, "%v2", v2).Replace(a))
		}
		out, err := exec.Command(tool, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %s %s: %v\n%s", s.name, tool, strings.Join(args, " "), err, out)
		}
		if got := calls(t, root); !slices.Equal(got, s.wantCalls) {
			t.Errorf("%s: calls\n%s\nwant\n%s", s.name, strings.Join(got, "\n"), strings.Join(s.wantCalls, "\n"))
		}
		if i == 0 {
			// What the running agent would have left: a spool entry, and
			// an administrator's edit of the config.
			if err := os.MkdirAll(filepath.Join(root, filepath.Dir(spool)), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, spool), []byte("{\"seq\":1}\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(filepath.Join(root, conf), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString("# edited by the administrator\n")
			f.Close()
			continue
		}
		if got := exists(root, spool); got != s.spoolKept {
			t.Errorf("%s: spool file there: %v, want %v", s.name, got, s.spoolKept)
		}
		if got := exists(root, "var/lib/guestdiag"); got != s.stateExists {
			t.Errorf("%s: /var/lib/guestdiag there: %v, want %v", s.name, got, s.stateExists)
		}
		b, _ := os.ReadFile(filepath.Join(root, conf))
		if got := strings.Contains(string(b), "edited by the administrator"); got != s.configKept {
			t.Errorf("%s: edited %s there: %v, want %v", s.name, conf, got, s.configKept)
		}
	}
}

var (
	startOnInstall = []string{
		"udevadm control --reload",
		"udevadm trigger --action=add --subsystem-match=virtio-ports --attr-match=name=" + AgentPort,
		"systemctl --no-block start guestdiag-agent.service",
	}
)

func TestDebAgentInstallUpgradeRemovePurge(t *testing.T) {
	requireTools(t, "dpkg", "dpkg-deb")
	root := fakeRoot(t)
	v1 := pkgPath(t, buildPackages(t, "v1.0.0", "-arch", "amd64", "-packages", "guestdiag-agent", "-formats", "deb", "-msi=false"), "guestdiag-agent_1.0.0_amd64.deb")
	v2 := pkgPath(t, buildPackages(t, "v1.0.1", "-arch", "amd64", "-packages", "guestdiag-agent", "-formats", "deb", "-msi=false"), "guestdiag-agent_1.0.1_amd64.deb")
	runLifecycle(t, "dpkg", root, v1, v2, []lifecycleStep{
		{name: "install", args: []string{"--force-confold", "-i", "%v1"},
			wantCalls: append([]string{"systemctl enable guestdiag-agent.service", "systemctl daemon-reload"}, startOnInstall...)},
		{name: "upgrade restarts the agent and keeps its state and config", args: []string{"--force-confold", "-i", "%v2"},
			wantCalls: append([]string{"systemctl enable guestdiag-agent.service", "systemctl daemon-reload", "systemctl try-restart guestdiag-agent.service"}, startOnInstall...),
			spoolKept: true, configKept: true, stateExists: true},
		{name: "remove stops the agent and keeps state and config", args: []string{"-r", "guestdiag-agent"},
			wantCalls: []string{"systemctl stop guestdiag-agent.service", "systemctl disable guestdiag-agent.service", "systemctl daemon-reload"},
			spoolKept: true, configKept: true, stateExists: true},
		{name: "purge removes state and config", args: []string{"-P", "guestdiag-agent"},
			wantCalls: []string{"systemctl daemon-reload"}},
	})
}

func TestRPMAgentInstallUpgradeErase(t *testing.T) {
	requireTools(t, "rpm")
	root := fakeRoot(t)
	if out, err := exec.Command("rpm", "--root", root, "--initdb").CombinedOutput(); err != nil {
		t.Fatalf("rpm --initdb: %v: %s", err, out)
	}
	v1 := pkgPath(t, buildPackages(t, "v1.0.0", "-arch", "amd64", "-packages", "guestdiag-agent", "-formats", "rpm", "-msi=false"), "guestdiag-agent-1.0.0-1.x86_64.rpm")
	v2 := pkgPath(t, buildPackages(t, "v1.0.1", "-arch", "amd64", "-packages", "guestdiag-agent", "-formats", "rpm", "-msi=false"), "guestdiag-agent-1.0.1-1.x86_64.rpm")
	runLifecycle(t, "rpm", root, v1, v2, []lifecycleStep{
		{name: "install", args: []string{"-i", "--nodeps", "%v1"},
			wantCalls: append([]string{"systemctl daemon-reload", "systemctl enable guestdiag-agent.service"}, startOnInstall...)},
		// %post of the new package ($1=2), then %postun of the old ($1=1).
		{name: "upgrade restarts the agent and keeps its state and config", args: []string{"-U", "--nodeps", "%v2"},
			wantCalls: []string{"systemctl daemon-reload", startOnInstall[0], startOnInstall[1], "systemctl daemon-reload", "systemctl try-restart guestdiag-agent.service"},
			spoolKept: true, configKept: true, stateExists: true},
		// rpm has no purge: the state stays, and the edited config is kept
		// as agent.yaml.rpmsave (so not at its own name).
		{name: "erase stops the agent and keeps its state", args: []string{"-e", "--nodeps", "guestdiag-agent"},
			wantCalls: []string{"systemctl stop guestdiag-agent.service", "systemctl disable guestdiag-agent.service", "systemctl daemon-reload"},
			spoolKept: true, configKept: false, stateExists: true},
	})
	if !exists(root, "etc/guestdiag/agent.yaml.rpmsave") {
		t.Error("the edited config was not kept as agent.yaml.rpmsave")
	}
}
