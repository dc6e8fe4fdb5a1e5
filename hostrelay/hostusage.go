package hostrelay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/shirou/gopsutil/v3/cpu"
	"github.com/shirou/gopsutil/v3/load"
	"github.com/shirou/gopsutil/v3/mem"

	"github.com/guestdiag/guestdiag/protocol"
)

// DefaultHostUsageInterval is how often the relay publishes host usage.
const DefaultHostUsageInterval = 10 * time.Second

// clockTicks is Linux's USER_HZ, the unit of CPU times in /proc/<pid>/stat.
// It is 100 on every architecture Linux runs on, whatever the kernel's HZ.
const clockTicks = 100

// usageSampler gathers HostUsage, keeping the previous CPU times so that
// each sample reports the use since the one before.
type usageSampler struct {
	host     string
	procRoot string // /proc
	pidDir   string // libvirt's <name>.pid files
	interval time.Duration

	lastHost cpu.TimesStat
	lastAt   time.Time
	lastProc map[int]procTimes

	// shared, when enabled, limits the sample to the processes with a
	// socket in served() (see SharedMachine).
	shared SharedMachine
	served func() map[string]bool
}

// procTimes identifies one process (pid and start time, since pids are
// reused) and its CPU time, in clock ticks.
type procTimes struct {
	start uint64
	ticks uint64
}

func newUsageSampler(host, procRoot, pidDir string, interval time.Duration) *usageSampler {
	return &usageSampler{host: host, procRoot: procRoot, pidDir: pidDir, interval: interval, lastProc: map[int]procTimes{}}
}

func (u *usageSampler) sample(ctx context.Context, now time.Time) protocol.HostUsage {
	out := protocol.HostUsage{V: protocol.Version, Host: u.host, TS: now.UTC(), IntervalS: uint32(u.interval / time.Second), VMs: []protocol.VMUsage{}}
	fail := func(what string, err error) { out.Errors = append(out.Errors, what+": "+err.Error()) }

	if n, err := cpu.CountsWithContext(ctx, true); err == nil {
		out.CPU.Count = n
	} else {
		fail("cpu count", err)
	}
	if ts, err := cpu.TimesWithContext(ctx, false); err == nil && len(ts) == 1 {
		out.CPU.UsedPct = busyPct(u.lastHost, ts[0])
		u.lastHost = ts[0]
	} else {
		fail("cpu times", cmpErr(err, "no total"))
	}
	if vm, err := mem.VirtualMemoryWithContext(ctx); err == nil {
		out.Memory = protocol.HostMemory{TotalBytes: vm.Total, AvailableBytes: vm.Available, UsedPct: round2(vm.UsedPercent)}
	} else {
		fail("memory", err)
	}
	if l, err := load.AvgWithContext(ctx); err == nil {
		out.Load = protocol.HostLoad{Load1: l.Load1, Load5: l.Load5, Load15: l.Load15}
	} else {
		fail("load", err)
	}

	procs, err := findQEMU(u.procRoot, u.pidDir)
	if err != nil {
		fail("qemu processes", err)
	}
	if u.shared.enabled() {
		paths := u.served()
		procs = slices.DeleteFunc(procs, func(p qemuProc) bool { return !servedBy(p, paths) })
	}
	elapsed := now.Sub(u.lastAt).Seconds()
	seen := make(map[int]procTimes, len(procs))
	for _, p := range procs {
		v := protocol.VMUsage{VM: p.vm.name, PID: p.pid, RSSBytes: p.rss, MemoryBytes: p.vm.memBytes, VCPUs: p.vm.vcpus}
		if prev, ok := u.lastProc[p.pid]; ok && prev.start == p.times.start && elapsed > 0 && p.times.ticks >= prev.ticks {
			v.CPUPct = round2(float64(p.times.ticks-prev.ticks) / clockTicks / elapsed * 100)
		}
		seen[p.pid] = p.times
		out.VMs = append(out.VMs, v)
	}
	u.lastProc, u.lastAt = seen, now
	if u.shared.enabled() {
		u.shared.apply(&out)
	}
	slices.SortFunc(out.VMs, func(a, b protocol.VMUsage) int { return strings.Compare(a.VM, b.VM) })
	return out
}

func cmpErr(err error, otherwise string) error {
	if err != nil {
		return err
	}
	return errors.New(otherwise)
}

// busyPct is the share of CPU time not idle between two samples; from
// boot when prev is zero.
func busyPct(prev, cur cpu.TimesStat) float64 {
	total := func(t cpu.TimesStat) float64 {
		return t.User + t.System + t.Idle + t.Nice + t.Iowait + t.Irq + t.Softirq + t.Steal
	}
	dt := total(cur) - total(prev)
	if dt <= 0 {
		return 0
	}
	idle := (cur.Idle + cur.Iowait) - (prev.Idle + prev.Iowait)
	return round2(max(0, min(100, (dt-idle)/dt*100)))
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

// qemuProc is one QEMU process found.
type qemuProc struct {
	pid     int
	vm      qemuVM
	rss     uint64
	times   procTimes
	sockets []string // chardev paths
}

// findQEMU lists the QEMU processes under procRoot with the VM each runs:
// the name from libvirt's pid file in pidDir when there is one for the
// process, else from its command line's -name. Processes without a name
// are left out: they cannot be told apart.
func findQEMU(procRoot, pidDir string) ([]qemuProc, error) {
	byPID := map[int]string{}
	if files, err := filepath.Glob(filepath.Join(pidDir, "*.pid")); err == nil {
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
				byPID[pid] = strings.TrimSuffix(filepath.Base(f), ".pid")
			}
		}
	}
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, err
	}
	var out []qemuProc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		dir := filepath.Join(procRoot, e.Name())
		cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline"))
		if err != nil || len(cmdline) == 0 {
			continue // gone, or a kernel thread
		}
		args := strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
		if !isQEMU(args[0]) {
			continue
		}
		vm, _ := parseQEMUArgs(args[1:])
		if name, ok := byPID[pid]; ok {
			vm.name = name
		}
		if vm.name == "" {
			continue
		}
		p := qemuProc{pid: pid, vm: vm, sockets: chardevPaths(args[1:])}
		p.times, p.rss, err = readProcStat(dir)
		if err != nil {
			continue // exited between the listing and the read
		}
		out = append(out, p)
	}
	return out, nil
}

// readProcStat reads a process's start time and CPU time from stat and
// its resident memory from statm.
func readProcStat(dir string) (procTimes, uint64, error) {
	b, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return procTimes{}, 0, err
	}
	// The command name, in parentheses, may hold spaces and parentheses:
	// the fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procTimes{}, 0, fmt.Errorf("%s/stat: no command name", dir)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): utime is field 14, stime 15, starttime 22.
	if len(f) < 20 {
		return procTimes{}, 0, fmt.Errorf("%s/stat: %d fields", dir, len(f)+2)
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	start, err3 := strconv.ParseUint(f[19], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return procTimes{}, 0, fmt.Errorf("%s/stat: %w", dir, err)
	}
	sm, err := os.ReadFile(filepath.Join(dir, "statm"))
	if err != nil {
		return procTimes{}, 0, err
	}
	sf := strings.Fields(string(sm))
	if len(sf) < 2 {
		return procTimes{}, 0, fmt.Errorf("%s/statm: %q", dir, sm)
	}
	pages, err := strconv.ParseUint(sf[1], 10, 64)
	if err != nil {
		return procTimes{}, 0, fmt.Errorf("%s/statm: %w", dir, err)
	}
	return procTimes{start: start, ticks: utime + stime}, pages * uint64(os.Getpagesize()), nil
}

// publishUsage publishes host usage every interval until ctx ends.
func (r *Relay) publishUsage(ctx context.Context) {
	u := newUsageSampler(r.cfg.Host, r.cfg.ProcRoot, r.cfg.LibvirtRunDir, r.cfg.HostUsageInterval)
	u.shared, u.served = r.cfg.SharedMachine, r.channelPaths
	subj := protocol.HostSubject(r.cfg.Host)
	tick := time.NewTicker(r.cfg.HostUsageInterval)
	defer tick.Stop()
	for {
		sctx, cancel := context.WithTimeout(ctx, r.cfg.HostUsageInterval)
		usage := u.sample(sctx, time.Now())
		cancel()
		if data, err := json.Marshal(usage); err == nil {
			if r.nc.IsConnected() {
				r.publishAsync(&nats.Msg{Subject: subj, Data: data}, "", "host_usage")
			}
		} else {
			r.log.Warn("host_usage_encode_failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
