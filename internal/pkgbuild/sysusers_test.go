package pkgbuild

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The sysusers.d files make the service users that the units name, in the
// groups that reach libvirt's channel sockets, as systemd-sysusers does in
// the packages' postinst (here with --root on a throwaway /etc).
func TestSysusersMakeTheServiceUsers(t *testing.T) {
	requireTools(t, "systemd-sysusers")
	for _, tc := range []struct {
		name, file, user string
		groups           []string // the user is a member of each
	}{
		{"the deb's relay user is in kvm", "guestdiag-relay.conf", "guestdiag-relay", []string{"kvm"}},
		{"the rpm's relay user is in kvm and qemu", "guestdiag-relay-rpm.conf", "guestdiag-relay", []string{"kvm", "qemu"}},
		{"the collector's user is in no other group", "guestdiag-collector.conf", "guestdiag-collector", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
				t.Fatal(err)
			}
			// A system where kvm exists already (udev made it) and qemu does not.
			for f, body := range map[string]string{"etc/passwd": "root:x:0:0:root:/root:/bin/sh\n", "etc/group": "root:x:0:\nkvm:x:993:\n"} {
				if err := os.WriteFile(filepath.Join(root, f), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			src, err := filepath.Abs(filepath.Join("../../packaging/sysusers", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command("systemd-sysusers", "--root", root, src).CombinedOutput(); err != nil {
				t.Fatalf("systemd-sysusers: %v: %s", err, out)
			}
			passwd, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
			var entry []string
			for _, l := range strings.Split(string(passwd), "\n") {
				if f := strings.Split(l, ":"); f[0] == tc.user {
					entry = f
				}
			}
			if len(entry) != 7 {
				t.Fatalf("no %s in /etc/passwd:\n%s", tc.user, passwd)
			}
			if entry[2] == "0" || !strings.HasSuffix(entry[6], "nologin") {
				t.Errorf("%s is uid %s with shell %s, want a system uid with no login", tc.user, entry[2], entry[6])
			}
			group, _ := os.ReadFile(filepath.Join(root, "etc/group"))
			for _, g := range tc.groups {
				found := false
				for _, l := range strings.Split(string(group), "\n") {
					f := strings.Split(l, ":")
					if f[0] == g && len(f) == 4 && strings.Contains(","+f[3]+",", ","+tc.user+",") {
						found = true
					}
				}
				if !found {
					t.Errorf("%s is not a member of %s:\n%s", tc.user, g, group)
				}
			}
		})
	}
}
