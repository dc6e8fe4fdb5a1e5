//go:build linux

package executor

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/internal/qmp"
)

// qemu is a real QEMU with no disk: SeaBIOS runs, finds nothing to boot
// and idles, which is enough state to migrate.
type qemu struct {
	cmd  *exec.Cmd
	qmp  string
	done chan struct{}
}

func startQEMU(t *testing.T, dir, name string, extra ...string) *qemu {
	t.Helper()
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		if os.Getenv("GUESTDIAG_REQUIRE_QEMU") != "" {
			t.Fatalf("GUESTDIAG_REQUIRE_QEMU is set and qemu-system-x86_64 is missing (scripts/deps.sh installs it): %v", err)
		}
		t.Skip("qemu-system-x86_64 not installed; scripts/deps.sh installs it")
	}
	q := &qemu{qmp: filepath.Join(dir, name+".qmp"), done: make(chan struct{})}
	args := append([]string{"-name", name, "-nodefaults", "-display", "none", "-accel", "tcg", "-m", "32",
		"-qmp", "unix:" + q.qmp + ",server=on,wait=off"}, extra...)
	q.cmd = exec.Command(bin, args...)
	if err := q.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { q.cmd.Wait(); close(q.done) }()
	t.Cleanup(func() {
		q.cmd.Process.Kill()
		<-q.done
	})
	waitFor(t, "QEMU's QMP socket "+q.qmp, func() bool { _, err := os.Stat(q.qmp); return err == nil })
	return q
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20 s", what)
		}
		<-time.After(20 * time.Millisecond)
	}
}

// status runs query-status on a QMP socket.
func status(t *testing.T, path string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	c, err := qmp.Dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func execute(t *testing.T, path, cmd string, args any) json.RawMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	c, err := qmp.Dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ret, err := c.Execute(ctx, cmd, args)
	if err != nil {
		t.Fatal(err)
	}
	return ret
}

// labPrepare starts the destination on this machine, as the VM lab does
// for its second host.
func labPrepare(t *testing.T, dir string) PrepareFunc {
	return func(ctx context.Context, vm, from, to string) (Destination, error) {
		in := filepath.Join(dir, vm+"."+to+".in")
		dst := startQEMU(t, dir, vm+"."+to, "-incoming", "unix:"+in)
		waitFor(t, "the destination listening", func() bool { _, err := os.Stat(in); return err == nil })
		return Destination{URI: "unix:" + in, QMP: dst.qmp}, nil
	}
}

// labPrepareReporting is labPrepare with the destination's QMP socket
// replaced by qmp, as a prepare command that names a wrong one or none
// would give.
func labPrepareReporting(t *testing.T, dir, qmp string) PrepareFunc {
	prepare := labPrepare(t, dir)
	return func(ctx context.Context, vm, from, to string) (Destination, error) {
		d, err := prepare(ctx, vm, from, to)
		d.QMP = qmp
		return d, err
	}
}

// checkMoved checks what a completed move leaves: the destination, which
// holds the only running copy, running, and the source QEMU quit.
func checkMoved(t *testing.T, src *qemu, dstQMP string) {
	t.Helper()
	if got := status(t, dstQMP); got != "running" {
		t.Errorf("destination is %q after the move, want running: it holds the only running copy", got)
	}
	select {
	case <-src.done:
	case <-time.After(10 * time.Second):
		t.Error("the source QEMU still runs 10 s after the move completed, want it quit")
	}
}

func TestQMPMigratesARunningQEMUAndQuitsTheSource(t *testing.T) {
	dir := t.TempDir()
	src := startQEMU(t, dir, "web1")
	var dst Destination
	prepare := labPrepare(t, dir)
	ex, err := NewQMP(QMPConfig{
		Sockets: map[string]string{"hostA": filepath.Join(dir, "{vm}.qmp")},
		Prepare: func(ctx context.Context, vm, from, to string) (Destination, error) {
			d, err := prepare(ctx, vm, from, to)
			dst = d
			return d, err
		},
	}, testLog())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	res, err := ex.Migrate(ctx, "web1", "hostA", "hostB")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("migrated a 32 MiB QEMU: total-time %v, downtime %v", res.Duration, res.Downtime)
	if res.Duration <= 0 {
		t.Errorf("result %+v has no duration, want QEMU's total-time", res)
	}
	checkMoved(t, src, dst.QMP)
}

func TestQMPKeepsTheSourceWhenTold(t *testing.T) {
	dir := t.TempDir()
	src := startQEMU(t, dir, "db1")
	ex, err := NewQMP(QMPConfig{Sockets: map[string]string{"hostA": filepath.Join(dir, "{vm}.qmp")}, Prepare: labPrepare(t, dir), KeepSource: true}, testLog())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ex.Migrate(t.Context(), "db1", "hostA", "hostB"); err != nil {
		t.Fatal(err)
	}
	if got := status(t, src.qmp); got != "postmigrate" {
		t.Errorf("kept source is %q, want postmigrate", got)
	}
	if got := status(t, filepath.Join(dir, "db1.hostB.qmp")); got != "running" {
		t.Errorf("destination is %q, want running: keeping the source must not keep the VM from moving", got)
	}
}

func TestQMPKeepsTheSourceWhenTheDestinationCannotBeAsked(t *testing.T) {
	dir := t.TempDir()
	src := startQEMU(t, dir, "c1")
	ex, err := NewQMP(QMPConfig{
		Sockets: map[string]string{"hostA": filepath.Join(dir, "{vm}.qmp")},
		Prepare: labPrepareReporting(t, dir, filepath.Join(dir, "gone.qmp")),
	}, testLog())
	if err != nil {
		t.Fatal(err)
	}
	_, err = ex.Migrate(t.Context(), "c1", "hostA", "hostB")
	if err == nil || !strings.Contains(err.Error(), "source kept paused") || !errors.Is(err, ErrMovedUnconfirmed) {
		t.Errorf("error %v, want the source kept and ErrMovedUnconfirmed", err)
	}
	if got := status(t, src.qmp); got != "postmigrate" {
		t.Errorf("source is %q, want postmigrate: not quit while the destination is unconfirmed", got)
	}
}

func TestQMPFailureLeavesTheVMOnItsSource(t *testing.T) {
	dir := t.TempDir()
	t.Run("a destination nobody listens on fails with QEMU's reason", func(t *testing.T) {
		src := startQEMU(t, dir, "a1")
		ex, err := NewQMP(QMPConfig{
			Sockets: map[string]string{"hostA": filepath.Join(dir, "{vm}.qmp")},
			Prepare: func(context.Context, string, string, string) (Destination, error) {
				return Destination{URI: "unix:" + filepath.Join(dir, "nobody"), QMP: filepath.Join(dir, "nobody.qmp")}, nil
			},
		}, testLog())
		if err != nil {
			t.Fatal(err)
		}
		_, err = ex.Migrate(t.Context(), "a1", "hostA", "hostB")
		if err == nil || !strings.Contains(err.Error(), "No such file or directory") {
			t.Errorf("error %v, want QEMU's \"No such file or directory\"", err)
		}
		if got := status(t, src.qmp); got != "running" {
			t.Errorf("source is %q after the failed migration, want running", got)
		}
	})
	t.Run("a migration still running when the context ends is cancelled", func(t *testing.T) {
		src := startQEMU(t, dir, "a2")
		// 32 MiB at 64 KiB/s takes minutes.
		execute(t, src.qmp, "migrate-set-parameters", map[string]any{"max-bandwidth": 64 << 10})
		// The destination starts before the clock runs: on a loaded
		// machine its start alone can take the 2 s, and then migrate is
		// never sent.
		dst, err := labPrepare(t, dir)(t.Context(), "a2", "hostA", "hostB")
		if err != nil {
			t.Fatal(err)
		}
		ex, err := NewQMP(QMPConfig{
			Sockets: map[string]string{"hostA": filepath.Join(dir, "{vm}.qmp")},
			Prepare: func(context.Context, string, string, string) (Destination, error) { return dst, nil },
		}, testLog())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		_, err = ex.Migrate(ctx, "a2", "hostA", "hostB")
		if err == nil || !strings.Contains(err.Error(), context.DeadlineExceeded.Error()) {
			t.Errorf("error %v, want the deadline", err)
		}
		waitFor(t, "the migration cancelled", func() bool { return migrationOf(t, src.qmp) == "cancelled" })
		if got := status(t, src.qmp); got != "running" {
			t.Errorf("source is %q after the cancelled migration, want running", got)
		}
	})
	t.Run("a host without a socket template is refused before anything runs", func(t *testing.T) {
		ex, err := NewQMP(QMPConfig{Sockets: map[string]string{"hostA": filepath.Join(dir, "{vm}.qmp")}, PrepareCommand: []string{"false"}}, testLog())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ex.Migrate(t.Context(), "x", "hostC", "hostB"); err == nil || !strings.Contains(err.Error(), "hostC") {
			t.Errorf("error %v, want one naming hostC", err)
		}
	})
}

// migrationOf reads query-migrate's status on a QMP socket.
func migrationOf(t *testing.T, path string) string {
	t.Helper()
	var mig migrationStatus
	if err := json.Unmarshal(execute(t, path, "query-migrate", nil), &mig); err != nil {
		t.Fatal(err)
	}
	return mig.Status
}

// abandoned starts a throttled migration of vm with an executor that
// polls once an hour, so that after its first query-migrate it only waits
// for its context: the test then sets the scene on the source's second
// monitor (ctl) and cancels. It returns the source, the path of ctl, the
// cancel function and where Migrate's error arrives.
func abandoned(t *testing.T, dir, vm string) (*qemu, string, context.CancelFunc, <-chan error) {
	t.Helper()
	ctl := filepath.Join(dir, vm+".ctl")
	src := startQEMU(t, dir, vm, "-qmp", "unix:"+ctl+",server=on,wait=off")
	waitFor(t, "the control monitor", func() bool { _, err := os.Stat(ctl); return err == nil })
	execute(t, ctl, "migrate-set-parameters", map[string]any{"max-bandwidth": 64 << 10})
	ex, err := NewQMP(QMPConfig{Sockets: map[string]string{"hostA": filepath.Join(dir, "{vm}.qmp")}, Prepare: labPrepare(t, dir), PollInterval: time.Hour}, testLog())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	errc := make(chan error, 1)
	go func() {
		_, err := ex.Migrate(ctx, vm, "hostA", "hostB")
		errc <- err
	}()
	waitFor(t, "the migration active", func() bool { return migrationOf(t, ctl) == "active" })
	return src, ctl, cancel, errc
}

func TestQMPAMigrationThatCompletesWhileAbandonedIsKept(t *testing.T) {
	dir := t.TempDir()
	src, ctl, cancel, errc := abandoned(t, dir, "late1")
	// The migration completes after the executor's last look and before
	// its context ends, as one finishing at MigrateTimeout does.
	execute(t, ctl, "migrate-set-parameters", map[string]any{"max-bandwidth": 10 << 30})
	waitFor(t, "the migration completed", func() bool { return migrationOf(t, ctl) == "completed" })
	dstQMP := filepath.Join(dir, "late1.hostB.qmp")
	waitFor(t, "the destination running", func() bool { return status(t, dstQMP) == "running" })
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("Migrate returned %v, want success: the VM completed its move", err)
	}
	checkMoved(t, src, dstQMP)
}

func TestQMPAnAbandonedMigrationResumesASourceLeftPaused(t *testing.T) {
	dir := t.TempDir()
	src, ctl, cancel, errc := abandoned(t, dir, "late2")
	// A stand-in for QEMU stopping the source for the switch-over just
	// before the context ends: stop on the second monitor.
	execute(t, ctl, "stop", nil)
	cancel()
	if err := <-errc; err == nil || !errors.Is(err, context.Canceled) {
		t.Errorf("Migrate returned %v, want the cancelled context", err)
	}
	if got := migrationOf(t, ctl); got != "cancelled" {
		t.Errorf("migration is %q, want cancelled", got)
	}
	if got := status(t, src.qmp); got != "running" {
		t.Errorf("source is %q after the abandoned migration, want running again", got)
	}
}

func TestQMPWithoutTheDestinationsSocketRefusesToQuitTheSource(t *testing.T) {
	dir := t.TempDir()
	src := startQEMU(t, dir, "n1")
	ex, err := NewQMP(QMPConfig{
		Sockets: map[string]string{"hostA": filepath.Join(dir, "{vm}.qmp")},
		Prepare: labPrepareReporting(t, dir, ""), // a prepare command that printed no qmp= line
	}, testLog())
	if err != nil {
		t.Fatal(err)
	}
	_, err = ex.Migrate(t.Context(), "n1", "hostA", "hostB")
	if err == nil || !strings.Contains(err.Error(), "no qmp= line") || !strings.Contains(err.Error(), "keep_source") {
		t.Errorf("error %v, want one saying the qmp= line is missing and keep_source would do without", err)
	}
	if got := status(t, src.qmp); got != "running" {
		t.Errorf("source is %q, want running: nothing migrated", got)
	}
	if got := migrationOf(t, src.qmp); got != "" {
		t.Errorf("source's migration is %q, want none started", got)
	}
}
