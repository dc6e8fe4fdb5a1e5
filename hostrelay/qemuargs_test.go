package hostrelay

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseQEMUArgs(t *testing.T) {
	tests := []struct {
		name string
		args string
		want qemuVM
	}{
		{"libvirt's guest= form with debug threads", "-name guest=web01,debug-threads=on -S -m size=4194304k -smp 4,sockets=4,cores=1,threads=1", qemuVM{"web01", 4 << 30, 4}},
		{"a bare name, memory in MiB and a cpu count", "-enable-kvm -name db -m 2048 -smp 2", qemuVM{"db", 2 << 30, 2}},
		{"two dashes and a suffixed size", "--name lab --m 1G --smp cpus=3,maxcpus=8", qemuVM{"lab", 1 << 30, 3}},
		{"a comma written twice belongs to the name", "-name guest=a,,b,debug-threads=on", qemuVM{"a,b", 0, 0}},
		{"a topology without a count multiplies out", "-name t -smp sockets=2,cores=4,threads=2 -m 512M", qemuVM{"t", 512 << 20, 16}},
		{"Proxmox's name with debug threads", "-id 101 -name vm101,debug-threads=on -m 64", qemuVM{"vm101", 64 << 20, 0}},
		{"a size that is not a number is unknown", "-name x -m lots", qemuVM{"x", 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseQEMUArgs(strings.Fields(tt.args))
			if !ok || got != tt.want {
				t.Errorf("parseQEMUArgs(%s) = %+v, %v; want %+v", tt.args, got, ok, tt.want)
			}
		})
	}
	if _, ok := parseQEMUArgs(strings.Fields("-m 64 -S")); ok {
		t.Error("a command line without -name was taken for a named VM")
	}
}

// writeProc makes a /proc/<pid> with a command line, a stat and a statm.
func writeProc(tb testing.TB, root, pid string, args []string, utime, stime, start string) {
	tb.Helper()
	dir := filepath.Join(root, pid)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	stat := pid + " (qemu-system-x86) S 1 1 1 0 -1 0 0 0 0 0 " + utime + " " + stime + " 0 0 20 0 3 0 " + start + " 1000000 250 0\n"
	for name, body := range map[string]string{
		"cmdline": strings.Join(args, "\x00") + "\x00",
		"stat":    stat,
		"statm":   "10000 250 100 1 0 500 0\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

func TestFindQEMUNamesEachProcess(t *testing.T) {
	root, pidDir := t.TempDir(), t.TempDir()
	writeProc(t, root, "100", []string{"/usr/bin/qemu-system-x86_64", "-name", "guest=web01,debug-threads=on", "-m", "1024", "-smp", "2"}, "50", "25", "1000")
	writeProc(t, root, "200", []string{"/usr/libexec/qemu-kvm", "-m", "512"}, "1", "1", "2000")
	writeProc(t, root, "300", []string{"/bin/bash", "-name", "guest=impostor"}, "1", "1", "3000")
	writeProc(t, root, "400", []string{"qemu-system-aarch64", "-name", "arm"}, "1", "1", "4000")
	// libvirt's pid file names the process whose command line has no -name.
	if err := os.WriteFile(filepath.Join(pidDir, "db01.pid"), []byte("200"), 0o644); err != nil {
		t.Fatal(err)
	}
	procs, err := findQEMU(root, pidDir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range procs {
		got = append(got, p.vm.name)
	}
	slices.Sort(got)
	if want := []string{"arm", "db01", "web01"}; !slices.Equal(got, want) {
		t.Fatalf("found %v, want %v", got, want)
	}
	for _, p := range procs {
		if p.vm.name != "web01" {
			continue
		}
		if p.pid != 100 || p.times != (procTimes{start: 1000, ticks: 75}) || p.rss != 250*uint64(os.Getpagesize()) || p.vm.memBytes != 1<<30 || p.vm.vcpus != 2 {
			t.Errorf("web01 = %+v, want pid 100, 75 ticks since start 1000, 250 pages resident, 1 GiB and 2 vCPUs", p)
		}
	}
}
