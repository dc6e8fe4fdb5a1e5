package software

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"fmt"
	"github.com/guestdiag/guestdiag/checks"
	"github.com/guestdiag/guestdiag/checks/internal/checktest"
	"golang.org/x/sys/unix"
)

// dpkgParagraph is one installed package as dpkg writes it.
func dpkgParagraph(name, version string) string {
	return "Package: " + name + "\nStatus: install ok installed\nPriority: optional\nSection: utils\n" +
		"Installed-Size: 100\nMaintainer: Debian <debian@example.org>\nArchitecture: amd64\nVersion: " + version +
		"\nDescription: " + name + "\n a test package\n .\n with a long description\n\n"
}

// replace writes a file the way dpkg does: a new file beside it,
// renamed over the old.
func replace(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path+"-new", []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+"-new", path); err != nil {
		t.Fatal(err)
	}
}

func newUnder(t *testing.T, root string, state *checks.State) *Software {
	t.Helper()
	s, err := New(Config{Root: root, RPM: RPMOff}, checks.Env{State: state})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSoftwareDpkgStatusChanged(t *testing.T) {
	root := t.TempDir()
	status := filepath.Join(root, "var/lib/dpkg/status")
	if err := os.MkdirAll(filepath.Dir(status), 0o755); err != nil {
		t.Fatal(err)
	}
	replace(t, status, dpkgParagraph("bash", "5.2.15-2+b7")+
		dpkgParagraph("curl", "7.88.1-10+deb12u5")+dpkgParagraph("nano", "7.2-1"))
	state := checks.NewState(t.TempDir(), Name)
	s := newUnder(t, root, state)

	res := s.Run(context.Background())
	if res.Summary != "baseline recorded: 3 packages (dpkg 3)" || len(res.Findings) != 0 {
		t.Fatalf("first run: got %s %q %v", res.Status, res.Summary, res.Findings)
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}

	replace(t, status, dpkgParagraph("bash", "5.2.15-2+b8")+
		dpkgParagraph("curl", "7.88.1-10+deb12u5")+dpkgParagraph("htop", "3.2.2-2"))
	res = s.Run(context.Background())
	want := []string{
		"sw.installed installed htop (amd64) 3.2.2-2 [dpkg]",
		"sw.removed removed nano (amd64) 7.2-1 [dpkg]",
		"sw.upgraded upgraded bash (amd64) from 5.2.15-2+b7 to 5.2.15-2+b8 [dpkg]",
	}
	if got := codes(res.Findings); !slices.Equal(got, want) {
		t.Fatalf("got findings\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	wantChanges := []Change{
		{Change: "installed", Source: "dpkg", Name: "htop", Arch: "amd64", Version: "3.2.2-2"},
		{Change: "removed", Source: "dpkg", Name: "nano", Arch: "amd64", Version: "7.2-1"},
		{Change: "upgraded", Source: "dpkg", Name: "bash", Arch: "amd64", Version: "5.2.15-2+b8", OldVersion: "5.2.15-2+b7"},
	}
	got := slices.Clone(res.Data.(Data).Changes)
	slices.SortFunc(got, func(a, b Change) int { return strings.Compare(a.Change, b.Change) })
	if !slices.Equal(got, wantChanges) {
		t.Errorf("got changes %+v, want %+v", got, wantChanges)
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}

	restarted := newUnder(t, root, state)
	if res := restarted.Run(context.Background()); len(res.Findings) != 0 || res.Summary != "no package changes; 3 packages (dpkg 3)" {
		t.Errorf("after restart: got %q %v, want no changes", res.Summary, codes(res.Findings))
	}
}

func TestSoftwareGatherIsUnknownWithoutOrWithABrokenDatabase(t *testing.T) {
	root := t.TempDir()
	s := newUnder(t, root, nil)
	res := s.Run(context.Background())
	want := "no package database found (looked for " + root + "/var/lib/dpkg/status, " + root + "/lib/apk/db/installed)"
	if res.Status != "unknown" || res.Summary != want {
		t.Errorf("got %s %q, want unknown %q", res.Status, res.Summary, want)
	}

	apk := filepath.Join(root, "lib/apk/db/installed")
	if err := os.MkdirAll(filepath.Dir(apk), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(apk, []byte("P:musl\nV:1.2.4-r4\n\nP:busybox\n<html>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res = s.Run(context.Background())
	if want := "parse " + apk + ": line 5: want X:value"; res.Status != "unknown" || !strings.HasPrefix(res.Summary, want) {
		t.Errorf("got %s %q, want unknown starting %q", res.Status, res.Summary, want)
	}
}

func TestSoftwareWatchSeesDpkgReplaceItsStatusFile(t *testing.T) {
	root := t.TempDir()
	status := filepath.Join(root, "var/lib/dpkg/status")
	if err := os.MkdirAll(filepath.Dir(status), 0o755); err != nil {
		t.Fatal(err)
	}
	replace(t, status, dpkgParagraph("bash", "5.2.15-2+b7"))
	s := newUnder(t, root, nil)
	ready := make(chan struct{})
	w := checktest.StartWatch(t, watchFunc(func(ctx context.Context, trigger func()) error {
		return s.watch(ctx, trigger, func() { close(ready) })
	}))
	w.Until(t, ready)

	replace(t, status, dpkgParagraph("bash", "5.2.15-2+b8"))
	w.Await(t, "the status file being replaced", 2*time.Second)
}

func TestSoftwareWatchSetCountsOnlyDatabaseFilesThatChanged(t *testing.T) {
	event := func(wd int32, mask uint32, name string) []byte {
		n := (len(name) + 1 + 15) / 16 * 16 // the kernel pads names with NULs
		b := make([]byte, unix.SizeofInotifyEvent+n)
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&b[0]))
		ev.Wd, ev.Mask, ev.Len = wd, mask, uint32(n)
		copy(b[unix.SizeofInotifyEvent:], name)
		return b
	}
	dpkg, rpm := t.TempDir(), t.TempDir()
	status, rpmdb := filepath.Join(dpkg, "status"), filepath.Join(rpm, "rpmdb.sqlite")
	replace(t, status, "a")
	replace(t, rpmdb, "b")
	w := watchSet{names: map[int32]map[string]bool{}, dirs: map[int32]string{}, seen: map[string]fileSig{}}
	w.add(1, dpkg, "status")
	w.add(2, rpm, rpmFiles...)

	steps := []struct {
		name   string
		change func()
		events []byte
		want   bool
	}{
		{"dpkg's lock and journal do not count", nil,
			slices.Concat(event(1, unix.IN_CLOSE_WRITE, "lock"), event(1, unix.IN_CREATE, "updates")), false},
		{"status renamed into place counts", func() { replace(t, status, "c") },
			slices.Concat(event(1, unix.IN_CREATE, "status-new"), event(1, unix.IN_MOVED_TO, "status")), true},
		{"the same event again without a change does not count", nil, event(1, unix.IN_MOVED_TO, "status"), false},
		{"a name watched in another directory does not count", nil, event(2, unix.IN_MOVED_TO, "status"), false},
		{"rpm closing its database unchanged after a query does not count", nil,
			slices.Concat(event(2, unix.IN_CLOSE_WRITE, "rpmdb.sqlite-wal"), event(2, unix.IN_CLOSE_WRITE, "rpmdb.sqlite")), false},
		{"rpm closing its database after writing it counts", func() {
			if err := os.WriteFile(rpmdb, []byte("longer"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, event(2, unix.IN_CLOSE_WRITE, "rpmdb.sqlite"), true},
		{"the database deleted counts", func() { os.Remove(rpmdb) }, event(2, unix.IN_DELETE, "rpmdb.sqlite"), true},
		{"a queue overflow counts", nil, event(-1, unix.IN_Q_OVERFLOW, ""), true},
	}
	for _, st := range steps {
		if st.change != nil {
			st.change()
		}
		if got := w.changed(inotifyEvents(st.events)); got != st.want {
			t.Errorf("%s: got %v, want %v", st.name, got, st.want)
		}
	}
}

// TestIntegrationSoftwareRPM builds a package with rpmbuild, records it in
// a fresh database with Debian's rpm (sqlite backend) and reads it back
// through the check.
func TestIntegrationSoftwareRPM(t *testing.T) {
	for _, tool := range []string{"rpm", "rpmbuild"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found; install it with apt-get install -y --no-install-recommends rpm", tool)
		}
	}
	dir := t.TempDir()
	run := func(name string, args ...string) {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	spec := "Name: gdtest\nVersion: %s\nRelease: 4\nEpoch: 2\nSummary: guestdiag test package\nLicense: MIT\n" +
		"BuildArch: noarch\n%%description\nA package without files.\n%%files\n"
	build := func(version string) string {
		t.Helper()
		f := filepath.Join(dir, "gdtest-"+version+".spec")
		if err := os.WriteFile(f, []byte(strings.ReplaceAll(spec, "%s", version)), 0o644); err != nil {
			t.Fatal(err)
		}
		run("rpmbuild", "--define", "_topdir "+filepath.Join(dir, "top"), "--define", "_build_id_links none", "-bb", f)
		return filepath.Join(dir, "top/RPMS/noarch/gdtest-"+version+"-4.noarch.rpm")
	}
	v1, v2 := build("1.2.3"), build("1.10.0")

	root := filepath.Join(dir, "root")
	dbpath := filepath.Join(root, "var/lib/rpm")
	if err := os.MkdirAll(dbpath, 0o755); err != nil {
		t.Fatal(err)
	}
	run("rpm", "--initdb", "--dbpath", dbpath)
	run("rpm", "-i", "--justdb", "--nodeps", "--dbpath", dbpath, v1)

	s, err := New(Config{Root: root, RPM: RPMOn}, checks.Env{})
	if err != nil {
		t.Fatal(err)
	}
	dbs, err := s.gather(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []database{{Source: "rpm", Path: dbpath, Packages: []pkg{{"gdtest", "2:1.2.3-4", "noarch"}}}}
	if len(dbs) != 1 || dbs[0].Source != want[0].Source || dbs[0].Path != want[0].Path || !slices.Equal(dbs[0].Packages, want[0].Packages) {
		t.Fatalf("got %+v, want %+v", dbs, want)
	}

	// The kernel queues an inotify event before the close that makes it
	// returns, so once rpm has exited its events can be read at once.
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	wd, err := unix.InotifyAddWatch(fd, dbpath, unix.IN_CLOSE_WRITE|unix.IN_MOVED_TO|unix.IN_CREATE|unix.IN_DELETE)
	if err != nil {
		t.Fatal(err)
	}
	w := watchSet{names: map[int32]map[string]bool{}, dirs: map[int32]string{}, seen: map[string]fileSig{}}
	w.add(int32(wd), dbpath, rpmFiles...)
	pending := func() []inotifyEvent {
		buf := make([]byte, 64<<10)
		n, err := unix.Read(fd, buf)
		if err != nil {
			return nil // EAGAIN: nothing queued
		}
		return inotifyEvents(buf[:n])
	}

	s.Run(context.Background())
	s.Commit()
	if evs := pending(); w.changed(evs) {
		t.Errorf("the check's own rpm -qa counted as a change: %+v", evs)
	}
	run("rpm", "-U", "--justdb", "--nodeps", "--dbpath", dbpath, v2)
	if evs := pending(); !w.changed(evs) {
		t.Errorf("rpm -U did not count as a change: %+v", evs)
	}
	res := s.Run(context.Background())
	if got, want := codes(res.Findings), []string{"sw.upgraded upgraded gdtest (noarch) from 2:1.2.3-4 to 2:1.10.0-4 [rpm]"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestSoftwareRPMOnWithoutADatabaseIsUnknown(t *testing.T) {
	root := t.TempDir()
	s, err := New(Config{Root: root, RPM: RPMOn}, checks.Env{})
	if err != nil {
		t.Fatal(err)
	}
	res := s.Run(context.Background())
	if res.Status != "unknown" || !strings.HasPrefix(res.Summary, "rpm is on but no rpm database found in "+root+"/usr/lib/sysimage/rpm, ") {
		t.Errorf("got %s %q", res.Status, res.Summary)
	}
}

// watchFunc makes a function a Watcher.
type watchFunc func(ctx context.Context, trigger func()) error

func (f watchFunc) Watch(ctx context.Context, trigger func()) error { return f(ctx, trigger) }

// readyWatch is a Software whose Watch says when it is ready.
type readyWatch struct {
	*Software
	ready chan struct{}
}

func (r readyWatch) Watch(ctx context.Context, trigger func()) error {
	return r.Software.watch(ctx, trigger, func() { close(r.ready) })
}

// TestSoftwareBurstOfDatabaseWritesIsOneRun rewrites dpkg's status file
// every 250 ms for 3 s, as a large apt run does, under a real Runner: the
// settle time (1 s here, 5 s by default) makes it one run and one result.
func TestSoftwareBurstOfDatabaseWritesIsOneRun(t *testing.T) {
	root := t.TempDir()
	status := filepath.Join(root, "var/lib/dpkg/status")
	if err := os.MkdirAll(filepath.Dir(status), 0o755); err != nil {
		t.Fatal(err)
	}
	replace(t, status, dpkgParagraph("bash", "5.2.15-2+b7"))
	s, err := New(Config{Root: root, RPM: RPMOff, Settle: checks.D(time.Second), SettleMax: checks.D(30 * time.Second)}, checks.Env{})
	if err != nil {
		t.Fatal(err)
	}
	rw := readyWatch{Software: s, ready: make(chan struct{})}
	results := make(chan checks.Result, 16)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		checks.Runner{Check: rw, Interval: time.Hour, Timeout: 10 * time.Second,
			Report: func(r checks.Result) bool { results <- r; return true }}.Run(ctx)
	}()
	select {
	case <-results: // the baseline
	case <-time.After(10 * time.Second):
		t.Fatal("no first run")
	}
	select {
	case <-rw.ready:
	case <-time.After(10 * time.Second):
		t.Fatal("watch not ready")
	}

	start := time.Now()
	var last string
	for i := 0; time.Since(start) < 3*time.Second; i++ {
		last = fmt.Sprintf("5.2.15-2+b%d", 8+i)
		replace(t, status, dpkgParagraph("bash", last))
		time.Sleep(250 * time.Millisecond) // the pace of the burst, not a wait for state
	}

	var got []checks.Result
	timeout, quiet := time.After(5*time.Second), time.After(time.Hour)
collect:
	for {
		select {
		case r := <-results:
			got = append(got, r)
			quiet = time.After(2 * time.Second) // long enough for a second run to show
		case <-quiet:
			break collect
		case <-timeout:
			break collect
		}
	}
	if len(got) != 1 {
		t.Fatalf("%d results after the burst, want 1: %+v", len(got), got)
	}
	d := got[0].Data.(Data)
	if d.Upgraded != 1 || len(d.Changes) != 1 || d.Changes[0].Version != last {
		t.Errorf("result = %q %+v, want one upgrade of bash to %s", got[0].Summary, d.Changes, last)
	}
}
