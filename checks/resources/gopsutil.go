package resources

import (
	"context"
	"errors"

	"github.com/shirou/gopsutil/v3/cpu"
	"github.com/shirou/gopsutil/v3/disk"
	"github.com/shirou/gopsutil/v3/load"
	"github.com/shirou/gopsutil/v3/mem"
)

// psutilSource gathers through gopsutil, which already hides the OS
// differences (procfs on Linux, PDH and Win32 calls on Windows), so this one
// file serves every GOOS. On Linux the roots can be moved with gopsutil's
// common.EnvKey context value, which the fixture tests use. The process
// listing, which gopsutil would make expensive, is in the per-OS files.
type psutilSource struct {
	users *users
}

func (psutilSource) cpuTimes(ctx context.Context) (cpuTimes, error) {
	ts, err := cpu.TimesWithContext(ctx, false)
	if err != nil {
		return cpuTimes{}, err
	}
	if len(ts) == 0 {
		return cpuTimes{}, errors.New("no cpu times reported")
	}
	t := ts[0]
	return cpuTimes{
		User: t.User, Nice: t.Nice, System: t.System, Idle: t.Idle, Iowait: t.Iowait,
		Irq: t.Irq, Softirq: t.Softirq, Steal: t.Steal,
	}, nil
}

func (psutilSource) memory(ctx context.Context) (memoryStat, error) {
	v, err := mem.VirtualMemoryWithContext(ctx)
	if err != nil {
		return memoryStat{}, err
	}
	return memoryStat{Total: v.Total, Available: v.Available}, nil
}

func (psutilSource) swap(ctx context.Context) (swapStat, error) {
	s, err := mem.SwapMemoryWithContext(ctx)
	if err != nil {
		return swapStat{}, err
	}
	return swapStat{Total: s.Total, Used: s.Used}, nil
}

func (psutilSource) load(ctx context.Context) (LoadData, error) {
	a, err := load.AvgWithContext(ctx)
	if err != nil {
		return LoadData{}, err
	}
	return LoadData{Load1: a.Load1, Load5: a.Load5, Load15: a.Load15}, nil
}

// mounts lists mounted filesystems backed by a device; gopsutil's all=false
// already leaves out the "nodev" ones of /proc/filesystems.
func (psutilSource) mounts(ctx context.Context) ([]mount, error) {
	ps, err := disk.PartitionsWithContext(ctx, false)
	// On Windows a drive that cannot be queried comes back as a warning next
	// to the drives that could.
	if err != nil && len(ps) == 0 {
		return nil, err
	}
	out := make([]mount, len(ps))
	for i, p := range ps {
		out[i] = mount{Device: p.Device, Mountpoint: p.Mountpoint, Fstype: p.Fstype}
	}
	return out, nil
}

// usage ignores its context inside gopsutil (statfs cannot be interrupted),
// which is why the caller runs it in a goroutine.
func (psutilSource) usage(path string) (diskUsage, error) {
	u, err := disk.UsageWithContext(context.Background(), path)
	if err != nil {
		return diskUsage{}, err
	}
	return diskUsage{Total: u.Total, Used: u.Used, Free: u.Free,
		InodesTotal: u.InodesTotal, InodesUsed: u.InodesUsed, InodesFree: u.InodesFree}, nil
}
