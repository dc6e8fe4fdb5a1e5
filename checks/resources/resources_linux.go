package resources

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
func (s psutilSource) procs(ctx context.Context) ([]proc, error) {
	stats, err := procstat.ReadAll(ctx, hostRoot(ctx, common.HostProcEnvKey, "/proc"))
	if err != nil {
		return nil, err
	}
	out := make([]proc, 0, len(stats))
	for _, p := range stats {
		if !p.Kernel {
			out = append(out, procOf(p))
		}
	}
	return out, nil
}

// procUser returns the name of the process's effective user, or its uid
// when /etc/passwd does not know it, or "" when the process is gone.
func (s psutilSource) procUser(ctx context.Context, p proc) string {
	root := hostRoot(ctx, common.HostProcEnvKey, "/proc")
	b, err := os.ReadFile(root + "/" + strconv.Itoa(p.PID) + "/status")
	if err != nil {
		return ""
	}
	uid, ok := parseStatusUID(b)
	if !ok {
		return ""
	}
	return s.users.passwdName(hostRoot(ctx, common.HostEtcEnvKey, "/etc"), uid)
}

// psi reads /proc/pressure. A kernel without it is not an error: the data
// says so.
func (s psutilSource) psi(ctx context.Context) *PSI {
	root := hostRoot(ctx, common.HostProcEnvKey, "/proc")
	out := &PSI{Available: true}
	for _, f := range []struct {
		name string
		dst  **PSIResource
	}{{"cpu", &out.CPU}, {"memory", &out.Memory}, {"io", &out.IO}} {
		b, err := os.ReadFile(root + "/pressure/" + f.name)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return &PSI{Reason: "kernel has no /proc/pressure (built without CONFIG_PSI)"}
		case errors.Is(err, syscall.EOPNOTSUPP):
			return &PSI{Reason: "psi is turned off (psi=0 on the kernel command line)"}
		case err != nil:
			return &PSI{Reason: err.Error()}
		}
		r, err := parsePSI(b)
		if err != nil {
			return &PSI{Reason: root + "/pressure/" + f.name + ": " + err.Error()}
		}
		*f.dst = &r
	}
	return out
}

// hostRoot returns where gopsutil reads key (its HOST_PROC, HOST_ETC
// settings): the context's common.EnvMap, then the environment, then def.
// Fixture tests move the roots the same way for every part of the check.
func hostRoot(ctx context.Context, key common.EnvKeyType, def string) string {
	if m, ok := ctx.Value(common.EnvKey).(common.EnvMap); ok {
		if v := m[key]; v != "" {
			return v
		}
	}
	if v := os.Getenv(string(key)); v != "" {
		return v
	}
	return def
}
