package checks

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"strconv"
	"syscall"

	"github.com/guestdiag/guestdiag/checks/internal/procstat"
	"github.com/shirou/gopsutil/v3/common"
)

// procs lists the processes from /proc/<pid>/stat alone and leaves kernel
// threads out. gopsutil's process package would read several files per
// process; this check runs every 30 s on small guests.
func (s psutilSource) procs(ctx context.Context) ([]resProc, error) {
	stats, err := procstat.ReadAll(ctx, resHostRoot(ctx, common.HostProcEnvKey, "/proc"))
	if err != nil {
		return nil, err
	}
	out := make([]resProc, 0, len(stats))
	for _, p := range stats {
		if !p.Kernel {
			out = append(out, resProcOf(p))
		}
	}
	return out, nil
}

// procUser returns the name of the process's effective user, or its uid
// when /etc/passwd does not know it, or "" when the process is gone.
func (s psutilSource) procUser(ctx context.Context, p resProc) string {
	root := resHostRoot(ctx, common.HostProcEnvKey, "/proc")
	b, err := os.ReadFile(root + "/" + strconv.Itoa(p.PID) + "/status")
	if err != nil {
		return ""
	}
	uid, ok := parseResStatusUID(b)
	if !ok {
		return ""
	}
	return s.users.passwdName(resHostRoot(ctx, common.HostEtcEnvKey, "/etc"), uid)
}

// psi reads /proc/pressure. A kernel without it is not an error: the data
// says so.
func (s psutilSource) psi(ctx context.Context) *ResourcesPSI {
	root := resHostRoot(ctx, common.HostProcEnvKey, "/proc")
	out := &ResourcesPSI{Available: true}
	for _, f := range []struct {
		name string
		dst  **ResourcesPSIResource
	}{{"cpu", &out.CPU}, {"memory", &out.Memory}, {"io", &out.IO}} {
		b, err := os.ReadFile(root + "/pressure/" + f.name)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return &ResourcesPSI{Reason: "kernel has no /proc/pressure (built without CONFIG_PSI)"}
		case errors.Is(err, syscall.EOPNOTSUPP):
			return &ResourcesPSI{Reason: "psi is turned off (psi=0 on the kernel command line)"}
		case err != nil:
			return &ResourcesPSI{Reason: err.Error()}
		}
		r, err := parseResPSI(b)
		if err != nil {
			return &ResourcesPSI{Reason: root + "/pressure/" + f.name + ": " + err.Error()}
		}
		*f.dst = &r
	}
	return out
}
