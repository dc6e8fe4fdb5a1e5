package checks

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"syscall"

	"github.com/shirou/gopsutil/v3/common"
	"golang.org/x/sys/unix"
)

// procs lists the processes from /proc/<pid>/stat alone, one small read
// each, and leaves kernel threads out. gopsutil's process package would
// read several files per process; this check runs every 30 s on small
// guests.
func (s psutilSource) procs(ctx context.Context) ([]resProc, error) {
	root := resHostRoot(ctx, common.HostProcEnvKey, "/proc")
	d, err := os.Open(root)
	if err != nil {
		return nil, err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, err
	}
	page := uint64(os.Getpagesize())
	buf := make([]byte, 4096)
	out := make([]resProc, 0, len(names))
	for i, name := range names {
		if name[0] < '1' || name[0] > '9' {
			continue
		}
		if i%64 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		b, err := resReadSmall(root+"/"+name+"/stat", buf)
		if err != nil {
			continue // gone since the listing
		}
		p, err := parseResProcStat(b, page)
		if err != nil {
			return nil, fmt.Errorf("%s/%s/stat: %w", root, name, err)
		}
		if !p.Kernel {
			out = append(out, p)
		}
	}
	return out, nil
}

// resReadSmall reads a file of at most len(buf) bytes with three system
// calls and no allocation beyond the path.
func resReadSmall(path string, buf []byte) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	n := 0
	for n < len(buf) {
		m, err := unix.Read(fd, buf[n:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if m == 0 {
			return buf[:n], nil
		}
		n += m
	}
	return nil, fmt.Errorf("%s: longer than %d bytes", path, len(buf))
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
