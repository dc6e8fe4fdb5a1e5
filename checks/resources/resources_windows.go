package resources

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
)

// procs lists the processes with one NtQuerySystemInformation call, which
// returns every process's times, working set and name together; opening
// each process as gopsutil does would cost a handle per process, and fail
// for protected ones.
func (s psutilSource) procs(ctx context.Context) ([]proc, error) {
	size := uint32(256 << 10)
	var buf []byte
	for try := 0; ; try++ {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// uint64 elements keep the records aligned for the struct access.
		words := make([]uint64, (size+7)/8)
		buf = unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), len(words)*8)
		var need uint32
		err := windows.NtQuerySystemInformation(windows.SystemProcessInformation, unsafe.Pointer(&buf[0]), uint32(len(buf)), &need)
		if err == nil {
			break
		}
		if !errors.Is(err, windows.STATUS_INFO_LENGTH_MISMATCH) || try == 4 {
			return nil, fmt.Errorf("NtQuerySystemInformation(SystemProcessInformation): %w", err)
		}
		// Processes start between the calls: ask for more than was needed.
		size = max(need, size) + 64<<10
	}
	var out []proc
	for off := uintptr(0); off+unsafe.Sizeof(windows.SYSTEM_PROCESS_INFORMATION{}) <= uintptr(len(buf)); {
		p := (*windows.SYSTEM_PROCESS_INFORMATION)(unsafe.Pointer(&buf[off]))
		name := p.ImageName.String()
		pid, ppid := int(p.UniqueProcessID), int(p.InheritedFromUniqueProcessID)
		if !windowsKernelProc(pid, ppid, name) {
			out = append(out, proc{
				PID:   pid,
				Start: uint64(p.CreateTime),
				Name:  name,
				CPU:   time.Duration(p.UserTime+p.KernelTime) * 100, // 100 ns units
				RSS:   uint64(p.WorkingSetSize),
			})
		}
		if p.NextEntryOffset == 0 {
			break
		}
		off += uintptr(p.NextEntryOffset)
	}
	return out, nil
}

// procUser returns DOMAIN\name of the process's token user, or "" when
// the process is gone or protected from this account.
func (s psutilSource) procUser(ctx context.Context, p proc) string {
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, uint32(p.PID))
	if err != nil {
		return ""
	}
	defer windows.CloseHandle(h)
	var tok windows.Token
	if err := windows.OpenProcessToken(h, windows.TOKEN_QUERY, &tok); err != nil {
		return ""
	}
	defer tok.Close()
	tu, err := tok.GetTokenUser()
	if err != nil {
		return ""
	}
	sid := tu.User.Sid.String()
	if name, ok := s.users.cached(sid); ok {
		return name
	}
	// Looking up a domain account may ask a domain controller.
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	name, err := bounded(lctx, func() (string, error) {
		account, domain, _, err := tu.User.Sid.LookupAccount("")
		if err != nil {
			return "", err
		}
		if domain == "" {
			return account, nil
		}
		return domain + `\` + account, nil
	})
	if err != nil {
		return sid
	}
	s.users.remember(sid, name)
	return name
}

// psi is Linux only.
func (s psutilSource) psi(context.Context) *PSI { return nil }

func (u *users) cached(key string) (string, bool) {
	if u == nil {
		return "", false
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	n, ok := u.names[key]
	return n, ok
}

// remember keeps at most a few thousand names: an account per key is all
// a guest has, but the map must not grow without bound.
func (u *users) remember(key, name string) {
	if u == nil {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.names == nil || len(u.names) >= 4096 {
		u.names = map[string]string{}
	}
	u.names[key] = name
}
