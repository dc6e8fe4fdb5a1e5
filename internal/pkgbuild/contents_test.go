package pkgbuild

import (
	"debug/elf"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// wantFile is one entry a user expects to see in a package listing.
type wantFile struct{ mode, path string }

// wantContents are, per package, the files that dpkg-deb -c and rpm -qplv
// must show (besides the directories holding them), and the conffiles.
var wantContents = map[string]struct {
	files     []wantFile
	conffiles []string
}{
	"guestdiag-agent": {
		files: []wantFile{
			{"-rwxr-xr-x", "/usr/bin/guestdiag-agent"},
			{"-rw-r--r--", "/usr/lib/systemd/system/guestdiag-agent.service"},
			{"-rw-r--r--", "/usr/lib/udev/rules.d/70-guestdiag.rules"},
			{"-rw-r--r--", "/etc/guestdiag/agent.yaml"},
			{"drwx------", "/var/lib/guestdiag"},
		},
		conffiles: []string{"/etc/guestdiag/agent.yaml"},
	},
	"guestdiag-relay": {
		files: []wantFile{
			{"-rwxr-xr-x", "/usr/bin/guestdiag-relay"},
			{"-rw-r--r--", "/usr/lib/systemd/system/guestdiag-relay.service"},
			{"-rw-r--r--", "/usr/lib/sysusers.d/guestdiag-relay.conf"},
			{"-rw-r--r--", "/etc/default/guestdiag-relay"},
		},
		conffiles: []string{"/etc/default/guestdiag-relay"},
	},
	"guestdiag-control-plane": {
		files: []wantFile{
			{"-rwxr-xr-x", "/usr/bin/guestdiag-collector"},
			{"-rwxr-xr-x", "/usr/bin/guestdiag"},
			{"-rwxr-xr-x", "/usr/bin/guestdiag-scheduler"},
			{"-rw-r--r--", "/usr/lib/systemd/system/guestdiag-collector.service"},
			{"-rw-r--r--", "/usr/lib/sysusers.d/guestdiag-collector.conf"},
			{"-rw-r--r--", "/etc/default/guestdiag-collector"},
			{"-rw-r--r--", "/usr/lib/systemd/system/guestdiag-scheduler.service"},
			{"-rw-r--r--", "/etc/default/guestdiag-scheduler"},
		},
		conffiles: []string{"/etc/default/guestdiag-collector", "/etc/default/guestdiag-scheduler"},
	},
}

// listing maps each path of a package listing to its mode and owner. Each
// line is "<mode> <owner> <path>" once parsed.
type listing map[string]string

func (l listing) check(t *testing.T, want []wantFile) {
	t.Helper()
	for _, w := range want {
		got, ok := l[w.path]
		if !ok {
			t.Errorf("%s is not in the package", w.path)
			continue
		}
		if want := w.mode + " root/root"; got != want {
			t.Errorf("%s is %q, want %q", w.path, got, want)
		}
	}
	// Nothing beyond what was asked for, but the directories on the way.
	for p, m := range l {
		if strings.HasPrefix(m, "d") && !slices.ContainsFunc(want, func(w wantFile) bool { return w.path == p }) {
			continue
		}
		if !slices.ContainsFunc(want, func(w wantFile) bool { return w.path == p }) {
			t.Errorf("the package holds %s (%s), which no one asked for", p, m)
		}
	}
}

func debListing(t *testing.T, deb string) listing {
	l := listing{}
	// drwxr-xr-x root/root         0 2026-01-01 00:00 ./etc/
	for _, line := range strings.Split(strings.TrimSpace(output(t, "dpkg-deb", "-c", deb)), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("dpkg-deb -c line %q", line)
		}
		p := strings.TrimSuffix(strings.TrimPrefix(f[5], "."), "/")
		l[p] = f[0] + " " + f[1]
	}
	return l
}

func rpmListing(t *testing.T, rpm string) listing {
	l := listing{}
	for _, line := range strings.Split(strings.TrimSpace(output(t, "rpm", "-qp", "--qf", "[%{FILEMODES:perms} %{FILEUSERNAME}/%{FILEGROUPNAME} %{FILENAMES}\n]", rpm)), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			t.Fatalf("rpm -qp line %q", line)
		}
		l[f[2]] = f[0] + " " + f[1]
	}
	return l
}

// fields parses "Key: value" lines (dpkg-deb -I's control, rpm -qpi).
func fields(out string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok {
			m[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return m
}

func TestDebPackagesHoldTheirFilesAndMetadata(t *testing.T) {
	requireTools(t, "dpkg-deb")
	built := buildPackages(t, "v1.2.3-5-gabc1234", "-arch", "amd64", "-msi=false")
	for _, p := range Packages() {
		t.Run(p.Name+" is what a user expects", func(t *testing.T) {
			deb := pkgPath(t, built, p.Name+"_1.2.3+git5.gabc1234_amd64.deb")
			w := wantContents[p.Name]
			debListing(t, deb).check(t, w.files)

			info := fields(output(t, "dpkg-deb", "-f", deb))
			for k, want := range map[string]string{"Package": p.Name, "Version": "1.2.3+git5.gabc1234", "Architecture": "amd64", "Recommends": strings.Join(p.Recommends, ", ")} {
				if info[k] != want {
					t.Errorf("%s: %q, want %q", k, info[k], want)
				}
			}
			if got := strings.Fields(output(t, "dpkg-deb", "-I", deb, "conffiles")); !slices.Equal(got, w.conffiles) {
				t.Errorf("conffiles %q, want %q", got, w.conffiles)
			}
			for _, s := range []string{"postinst", "prerm", "postrm"} {
				if out := output(t, "dpkg-deb", "-I", deb, s); !strings.HasPrefix(out, "#!/bin/sh\n") {
					t.Errorf("%s does not start with #!/bin/sh: %q", s, out[:min(len(out), 40)])
				}
			}

			// What is shipped is packaging/ as it is in the repository.
			root := t.TempDir()
			output(t, "dpkg-deb", "-x", deb, root)
			for _, f := range p.Files {
				got, err := os.ReadFile(filepath.Join(root, f.Dst))
				if err != nil {
					t.Fatal(err)
				}
				want, err := os.ReadFile(filepath.Join("../../packaging", f.Src))
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != string(want) {
					t.Errorf("%s differs from packaging/%s", f.Dst, f.Src)
				}
			}
		})
	}
}

func TestRPMPackagesHoldTheirFilesAndMetadata(t *testing.T) {
	requireTools(t, "rpm")
	built := buildPackages(t, "v1.2.3-5-gabc1234", "-arch", "amd64", "-msi=false")
	for _, p := range Packages() {
		t.Run(p.Name+" is what a user expects", func(t *testing.T) {
			rpm := pkgPath(t, built, p.Name+"-1.2.3+git5.gabc1234-1.x86_64.rpm")
			w := wantContents[p.Name]
			rpmListing(t, rpm).check(t, w.files)

			info := fields(output(t, "rpm", "-qpi", rpm))
			for k, want := range map[string]string{"Name": p.Name, "Version": "1.2.3+git5.gabc1234", "Release": "1", "Architecture": "x86_64"} {
				if info[k] != want {
					t.Errorf("%s: %q, want %q", k, info[k], want)
				}
			}
			if got := strings.Fields(output(t, "rpm", "-qp", "--recommends", rpm)); !slices.Equal(got, p.Recommends) {
				t.Errorf("recommends %q, want %q", got, p.Recommends)
			}
			// %config(noreplace): rpm -qp --qf FILEFLAGS shows c and n.
			var noreplace []string
			for _, line := range strings.Split(strings.TrimSpace(output(t, "rpm", "-qp", "--qf", "[%{FILEFLAGS:fflags} %{FILENAMES}\n]", rpm)), "\n") {
				flags, name, _ := strings.Cut(line, " ")
				if strings.Contains(flags, "c") && strings.Contains(flags, "n") {
					noreplace = append(noreplace, name)
				}
			}
			if !slices.Equal(noreplace, w.conffiles) {
				t.Errorf("%%config(noreplace) files %q, want %q", noreplace, w.conffiles)
			}
			scripts := output(t, "rpm", "-qp", "--scripts", rpm)
			for _, s := range []string{"postinstall scriptlet", "preuninstall scriptlet", "postuninstall scriptlet"} {
				if !strings.Contains(scripts, s) {
					t.Errorf("rpm -qp --scripts has no %s:\n%s", s, scripts)
				}
			}
		})
	}
}

func TestArm64PackagesAreMadeForArm64(t *testing.T) {
	requireTools(t, "dpkg-deb", "rpm")
	built := buildPackages(t, "v1.2.3", "-arch", "arm64", "-packages", "guestdiag-agent", "-msi=false")
	deb := pkgPath(t, built, "guestdiag-agent_1.2.3_arm64.deb")
	if got := fields(output(t, "dpkg-deb", "-f", deb))["Architecture"]; got != "arm64" {
		t.Errorf("deb Architecture %q, want arm64", got)
	}
	rpm := pkgPath(t, built, "guestdiag-agent-1.2.3-1.aarch64.rpm")
	if got := fields(output(t, "rpm", "-qpi", rpm))["Architecture"]; got != "aarch64" {
		t.Errorf("rpm Architecture %q, want aarch64", got)
	}
	// The binary inside is the arm64 build.
	root := t.TempDir()
	output(t, "dpkg-deb", "-x", deb, root)
	f, err := elf.Open(filepath.Join(root, "usr/bin/guestdiag-agent"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Machine != elf.EM_AARCH64 {
		t.Errorf("the binary is for %v, want %v", f.Machine, elf.EM_AARCH64)
	}
}
