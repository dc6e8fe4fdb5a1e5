package guestagent

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// writeTree creates files (path → content) under root; a content of "" makes
// an empty file, as a device node stand-in.
func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFindPort(t *testing.T) {
	const name = "org.guestdiag.agent.0"
	tests := []struct {
		desc    string
		files   map[string]string
		want    string // relative to the fake root; "" when an error is expected
		wantErr error
	}{
		{
			desc: "the port is found by its sysfs name",
			files: map[string]string{
				"sys/class/virtio-ports/vport0p1/name": "org.qemu.guest_agent.0\n",
				"sys/class/virtio-ports/vport0p2/name": name + "\n",
				"dev/vport0p1":                         "",
				"dev/vport0p2":                         "",
			},
			want: "dev/vport0p2",
		},
		{
			desc: "sysfs wins over the udev link",
			files: map[string]string{
				"sys/class/virtio-ports/vport1p3/name": name,
				"dev/vport1p3":                         "",
				"dev/virtio-ports/" + name:             "",
			},
			want: "dev/vport1p3",
		},
		{
			desc: "the udev link is used when sysfs does not list the port",
			files: map[string]string{
				"dev/virtio-ports/" + name: "",
			},
			want: "dev/virtio-ports/" + name,
		},
		{
			desc: "a port with another name is not taken",
			files: map[string]string{
				"sys/class/virtio-ports/vport0p1/name": "org.guestdiag.agent.01\n",
				"dev/vport0p1":                         "",
			},
			wantErr: ErrPortNotFound,
		},
		{
			desc:    "no virtio ports at all",
			files:   map[string]string{"sys/class/tty/ttyS0/name": "x"},
			wantErr: ErrPortNotFound,
		},
		{
			desc: "a port named in sysfs without its device node",
			files: map[string]string{
				"sys/class/virtio-ports/vport0p1/name": name,
			},
			wantErr: os.ErrNotExist,
		},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, tt.files)
			got, err := findPort(filepath.Join(root, "sys"), filepath.Join(root, "dev"), name)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("findPort = %q, %v; want error %v", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := filepath.Join(root, filepath.FromSlash(tt.want)); got != want {
				t.Errorf("findPort = %q, want %q", got, want)
			}
		})
	}
}

func TestFindPortRejectsPathNames(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{"dev/secret": ""})
	for _, name := range []string{"", "../secret", "a/b", ".."} {
		if got, err := findPort(filepath.Join(root, "sys"), filepath.Join(root, "dev", "virtio-ports"), name); !errors.Is(err, ErrPortNotFound) {
			t.Errorf("findPort(%q) = %q, %v; want ErrPortNotFound", name, got, err)
		}
	}
}
