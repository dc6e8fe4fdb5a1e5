//go:build linux

package processes

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/guestdiag/guestdiag/checks/internal/procstat"
	"github.com/prometheus/procfs"
)

// procfsSource reads processes from procfs under root and units from
// systemd over D-Bus.
type procfsSource struct {
	root string
	// systemdDir exists when systemd is PID 1 (what sd_booted looks at).
	systemdDir string
}

func newSource(cfg Config) source {
	return procfsSource{root: cfg.ProcRoot, systemdDir: "/run/systemd/system"}
}

// processes reads every process's stat, and for those in D, T or Z its
// wchan, and for D its context switch counts; of a process with worker
// threads, also the threads in D or T. A process that exits while
// being read is left out; any other failure to read one process is an error
// only if no process at all could be read.
func (s procfsSource) processes(ctx context.Context) ([]proc, error) {
	stats, err := procstat.ReadAll(ctx, s.root)
	if err != nil {
		return nil, err
	}
	pfs, err := procfs.NewFS(s.root)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", s.root, err)
	}
	out := make([]proc, 0, len(stats))
	for _, st := range stats {
		pr := proc{PID: st.PID, PPID: st.PPID, Start: st.Start, Name: st.Name, State: st.State, Kernel: st.Kernel}
		if class(pr.State) != 0 {
			if p, err := pfs.Proc(st.PID); err == nil {
				if w, err := p.Wchan(); err == nil {
					pr.Wchan = w
				}
				if pr.State == "D" {
					if ps, err := p.NewStatus(); err == nil {
						pr.Switches = ps.TotalCtxtSwitches()
					}
				}
			}
		}
		out = append(out, pr)
		if st.Threads > 1 && !st.Kernel {
			out = append(out, s.threads(ctx, pfs, pr)...)
		}
	}
	return out, nil
}

// threads returns the worker threads of main that are in D or T: a
// process whose main thread sleeps while a worker is stuck on a dead NFS
// server looks healthy from /proc/<pid>/stat alone. Stopped threads of a
// stopped process are left out, since a job-control stop stops them all
// and the process itself is already reported; Z is left to processes, as
// threads are reaped with their group.
func (s procfsSource) threads(ctx context.Context, pfs procfs.FS, main proc) []proc {
	tasks, err := procstat.ReadTasks(ctx, s.root, main.PID)
	if err != nil {
		return nil
	}
	var out []proc
	for _, t := range tasks {
		c := class(t.State)
		if c == 0 || c == 'Z' || (c == 'T' && class(main.State) == 'T') {
			continue
		}
		pr := proc{PID: main.PID, PPID: main.PPID, Start: t.Start, Name: main.Name, State: t.State,
			TID: t.PID, Thread: t.Name}
		if tp, err := pfs.Thread(main.PID, t.PID); err == nil {
			if w, err := tp.Wchan(); err == nil {
				pr.Wchan = w
			}
			if pr.State == "D" {
				if ps, err := tp.NewStatus(); err == nil {
					pr.Switches = ps.TotalCtxtSwitches()
				}
			}
		}
		out = append(out, pr)
	}
	return out
}

// bootID reads the kernel's boot_id under the proc root.
func (s procfsSource) bootID() string {
	b, err := os.ReadFile(s.root + "/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// cmdline reads /proc/<pid>/cmdline, arguments joined by spaces. It blocks
// while another task holds the process's memory map lock.
func (s procfsSource) cmdline(pid int) (string, error) {
	pfs, err := procfs.NewFS(s.root)
	if err != nil {
		return "", err
	}
	p, err := pfs.Proc(pid)
	if err != nil {
		return "", err
	}
	args, err := p.CmdLine()
	if err != nil {
		return "", err
	}
	return strings.Join(args, " "), nil
}

// units asks systemd for the watched units and, with FailedUnits, for every
// failed one. Without systemd it returns errNoManager.
func (s procfsSource) units(ctx context.Context, cfg Config) ([]Unit, error) {
	if len(cfg.Units) == 0 && !cfg.FailedUnits {
		return nil, nil
	}
	if _, err := os.Stat(s.systemdDir); err != nil {
		return nil, fmt.Errorf("systemd is not running (%s absent): %w", s.systemdDir, errNoManager)
	}
	conn, err := sddbus.NewWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to systemd: %w", err)
	}
	defer conn.Close()

	var statuses []sddbus.UnitStatus
	watched := map[string]bool{}
	if len(cfg.Units) > 0 {
		names := make([]string, len(cfg.Units))
		for i, n := range cfg.Units {
			names[i] = systemdUnitName(n)
			watched[names[i]] = true
		}
		us, err := conn.ListUnitsByNamesContext(ctx, names)
		if err != nil {
			return nil, fmt.Errorf("list watched units: %w", err)
		}
		statuses = append(statuses, us...)
	}
	if cfg.FailedUnits {
		us, err := conn.ListUnitsFilteredContext(ctx, []string{"failed"})
		if err != nil {
			return nil, fmt.Errorf("list failed units: %w", err)
		}
		for _, u := range us {
			if !watched[u.Name] {
				statuses = append(statuses, u)
			}
		}
	}
	out := make([]Unit, 0, len(statuses))
	for _, st := range statuses {
		u := Unit{
			Name: st.Name, Manager: "systemd", LoadState: st.LoadState,
			State: st.ActiveState, SubState: st.SubState, Watched: watched[st.Name],
		}
		if prop := systemdSinceProperty(u.State); prop != "" && len(out) < maxListed && u.LoadState != "not-found" {
			if v, err := conn.GetUnitPropertyContext(ctx, u.Name, prop); err == nil {
				if us, ok := v.Value.Value().(uint64); ok && us > 0 {
					t := time.UnixMicro(int64(us))
					u.Since = &t
				}
			}
		}
		out = append(out, u)
	}
	return out, nil
}

// testBusAddress, when set, is the D-Bus address units are watched on
// instead of systemd's own: a test's bus.
var testBusAddress string
