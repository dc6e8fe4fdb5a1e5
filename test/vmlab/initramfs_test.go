//go:build linux

package vmlab

import (
	"bytes"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"
)

type newcRecord struct {
	name               string
	mode               uint32
	rdevMajor, rdevMin uint32
	data               string
}

// readNewc is a minimal reader so the writer is checked against the format, not
// against itself.
func readNewc(t *testing.T, b []byte) []newcRecord {
	t.Helper()
	var recs []newcRecord
	off := 0
	align := func() { off = (off + 3) &^ 3 }
	field := func(i int) uint32 {
		v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
		if err != nil {
			t.Fatalf("header at %d field %d: %v", off, i, err)
		}
		return uint32(v)
	}
	for {
		if off+110 > len(b) || string(b[off:off+6]) != "070701" {
			t.Fatalf("no newc header at offset %d", off)
		}
		r := newcRecord{mode: field(1), rdevMajor: field(9), rdevMin: field(10)}
		size, nameSize := int(field(6)), int(field(11))
		off += 110
		r.name = string(b[off : off+nameSize-1])
		if b[off+nameSize-1] != 0 {
			t.Fatalf("name %q is not NUL-terminated", r.name)
		}
		off += nameSize
		align()
		r.data = string(b[off : off+size])
		off += size
		align()
		if r.name == "TRAILER!!!" {
			if off != len(b) {
				t.Errorf("%d bytes after the trailer", len(b)-off)
			}
			return recs
		}
		recs = append(recs, r)
	}
}

func TestArchiveWritesNewcWithParentsFirst(t *testing.T) {
	a := newArchive()
	a.dir("proc")
	a.add(entry{name: "dev/console", mode: modeCharDev | 0o600, rdevMajor: 5, rdevMinor: 1})
	a.add(entry{name: "bin/sh", mode: modeSymlink | 0o777, data: []byte("busybox")})
	a.add(entry{name: "usr/bin/x", mode: modeRegular | 0o755, data: []byte("abcde")})
	a.add(entry{name: "usr/bin/x", mode: modeRegular | 0o700, data: []byte("override")})

	var buf bytes.Buffer
	if err := a.writeTo(&buf); err != nil {
		t.Fatal(err)
	}
	recs := readNewc(t, buf.Bytes())

	var got []string
	seen := map[string]bool{}
	for _, r := range recs {
		if d := path.Dir(r.name); d != "." && !seen[d] {
			t.Errorf("%s comes before its directory %s", r.name, d)
		}
		seen[r.name] = true
		got = append(got, fmt.Sprintf("%s %o %d:%d %q", r.name, r.mode, r.rdevMajor, r.rdevMin, r.data))
	}
	want := []string{
		`bin 40755 0:0 ""`,
		`bin/sh 120777 0:0 "busybox"`,
		`dev 40755 0:0 ""`,
		`dev/console 20600 5:1 ""`,
		`proc 40755 0:0 ""`,
		`usr 40755 0:0 ""`,
		`usr/bin 40755 0:0 ""`,
		`usr/bin/x 100700 0:0 "override"`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("archive entries:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
	}
}

func TestInitScriptLoadsModulesInDependencyOrder(t *testing.T) {
	var mods []string
	for _, m := range baseModules {
		mods = append(mods, "/lib/modules/v/kernel/"+m+".ko")
	}
	script := string(initScript("guest", mods))

	var got []string
	for line := range strings.Lines(script) {
		if rest, ok := strings.CutPrefix(line, "insmod "); ok {
			got = append(got, path.Base(strings.Fields(rest)[0]))
		}
	}
	want := []string{"virtio_ring.ko", "virtio.ko", "virtio_pci_modern_dev.ko", "virtio_pci_legacy_dev.ko",
		"virtio_pci.ko", "virtio_console.ko", "failover.ko", "net_failover.ko", "virtio_net.ko"}
	if !slices.Equal(got, want) {
		t.Errorf("insmod order = %v, want %v", got, want)
	}
	for _, s := range []string{"mount -t devtmpfs devtmpfs /dev", "hostname guest", InitDoneMarker, "while :; do sleep 3600; done"} {
		if !strings.Contains(script, s) {
			t.Errorf("init script lacks %q", s)
		}
	}
}

func TestBuildInitramfsRejectsBadInput(t *testing.T) {
	k := Kernel{Vmlinuz: "/nonexistent", ModulesDir: t.TempDir(), Version: "v"}
	tests := []struct {
		name string
		spec InitramfsSpec
		want string
	}{
		{"a hostname with a space", InitramfsSpec{Kernel: k, Hostname: "a b"}, "not a valid DNS label"},
		{"an empty kernel", InitramfsSpec{Hostname: "g"}, "spec.Kernel is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := BuildInitramfs(path.Join(t.TempDir(), "i"), tt.spec)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("BuildInitramfs error = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}
