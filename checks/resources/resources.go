package resources

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/guestdiag/guestdiag/checks"
	"github.com/guestdiag/guestdiag/checks/internal/num"
	"github.com/guestdiag/guestdiag/protocol"
)

// Name is the registered name of the resources check.
const Name = "resources"

func init() {
	checks.Register(Name, true, 30*time.Second, 20*time.Second, DefaultConfig,
		func(cfg Config, env checks.Env) (checks.Check, error) {
			return New(cfg, env.Log()), nil
		})
}

// Finding codes of the resources check.
const (
	CodeCPUHigh    = "res.cpu_high"
	CodeMemoryHigh = "res.memory_high"
	CodeSwapHigh   = "res.swap_high"
	CodeDiskFull   = "res.disk_full"
	CodeInodesFull = "res.inodes_full"
	// CodeStealHigh says the hypervisor keeps the guest's CPUs from
	// running: the host is overcommitted. The host's scheduler reads it to
	// move or rebalance guests, so its meaning must stay put.
	CodeStealHigh = "res.steal_high"
)

// maxTop bounds top_processes, to keep a result's data small.
const maxTop = 20

// Config tunes the resources check. Zero fields take the defaults
// of DefaultConfig.
type Config struct {
	CPU Threshold `json:"cpu"` // percent of CPU time used (everything but idle and iowait)
	// CPUSamples is how many consecutive samples must reach CPU.Warn (or
	// CPU.Crit) before res.cpu_high is reported.
	CPUSamples int `json:"cpu_samples"`
	// Steal is the share of CPU time the hypervisor gave to others while
	// the guest wanted it; StealSamples (0: CPUSamples) consecutive samples
	// at or above it make res.steal_high.
	Steal        Threshold `json:"steal"`
	StealSamples int       `json:"steal_samples"`
	Memory       Threshold `json:"memory"` // percent of memory not available
	Swap         Threshold `json:"swap"`   // percent of swap used, when there is swap
	Disk         Threshold `json:"disk"`   // percent of a filesystem used, as df computes it
	Inodes       Threshold `json:"inodes"` // percent of a filesystem's inodes used
	// TopProcesses is how many processes to list by CPU and by memory when
	// CPU, steal, memory or swap is high (at most 20; -1 lists none and
	// stops watching processes at all). TopProcessesAlways lists them in
	// every result.
	TopProcesses       int  `json:"top_processes"`
	TopProcessesAlways bool `json:"top_processes_always"`
	// FirstWindow is the window the first run measures CPU over, since it
	// has no previous sample to compare with. Later runs measure over the
	// time since the previous run.
	FirstWindow checks.Duration `json:"first_window"`
	// DiskTimeout bounds the listing of mounts and every statfs. A call that
	// does not return in time is abandoned, and its mount is skipped until it
	// does return.
	DiskTimeout checks.Duration `json:"disk_timeout"`
}

// DefaultConfig returns the default thresholds and time limits.
func DefaultConfig() Config {
	return Config{
		CPU:          Threshold{Warn: 90, Crit: 98},
		CPUSamples:   3,
		Steal:        Threshold{Warn: 10, Crit: 30},
		Memory:       Threshold{Warn: 90, Crit: 97},
		Swap:         Threshold{Warn: 80, Crit: 95},
		Disk:         Threshold{Warn: 90, Crit: 97},
		Inodes:       Threshold{Warn: 90, Crit: 97},
		TopProcesses: 5,
		FirstWindow:  checks.D(time.Second),
		DiskTimeout:  checks.D(5 * time.Second),
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	c.CPU = c.CPU.or(d.CPU)
	c.Steal = c.Steal.or(d.Steal)
	c.Memory = c.Memory.or(d.Memory)
	c.Swap = c.Swap.or(d.Swap)
	c.Disk = c.Disk.or(d.Disk)
	c.Inodes = c.Inodes.or(d.Inodes)
	if c.CPUSamples <= 0 {
		c.CPUSamples = d.CPUSamples
	}
	if c.StealSamples <= 0 {
		c.StealSamples = c.CPUSamples
	}
	switch {
	case c.TopProcesses == 0:
		c.TopProcesses = d.TopProcesses
	case c.TopProcesses < 0:
		c.TopProcesses = 0
	}
	c.TopProcesses = min(c.TopProcesses, maxTop)
	if c.FirstWindow.Duration <= 0 {
		c.FirstWindow = d.FirstWindow
	}
	if c.DiskTimeout.Duration <= 0 {
		c.DiskTimeout = d.DiskTimeout
	}
	return c
}

// Data is the data of a resources result. A section is absent when
// it could not be gathered; Errors then says why.
type Data struct {
	CPU    *CPUData    `json:"cpu,omitempty"`
	Memory *MemoryData `json:"memory,omitempty"`
	Swap   *SwapData   `json:"swap,omitempty"`
	Load   *LoadData   `json:"load,omitempty"`
	Disks  []DiskData  `json:"disks"`
	// PSI is Linux pressure stall information; absent on other systems.
	PSI *PSI `json:"psi,omitempty"`
	// TopCPU and TopMemory are the busiest processes, listed when CPU,
	// steal, memory or swap is high (or always, by config). TopError says
	// why they are missing; it does not make the result unknown, since
	// they only explain findings.
	TopCPU    []Proc   `json:"top_cpu,omitempty"`
	TopMemory []Proc   `json:"top_memory,omitempty"`
	TopError  string   `json:"top_error,omitempty"`
	Errors    []string `json:"errors,omitempty"`
}

// CPUData is CPU time by mode, in percent of all CPUs over WindowSec. The
// modes add up to 100: user includes nice, system includes irq and softirq.
// UsedPct is everything but idle and iowait; steal counts as used, because
// the guest wanted that time.
type CPUData struct {
	WindowSec float64 `json:"window_s"`
	Count     int     `json:"count"`
	UsedPct   float64 `json:"used_pct"`
	UserPct   float64 `json:"user_pct"`
	SystemPct float64 `json:"system_pct"`
	IowaitPct float64 `json:"iowait_pct"`
	StealPct  float64 `json:"steal_pct"`
	IdlePct   float64 `json:"idle_pct"`
}

// MemoryData is physical memory. UsedPct is the share that is not
// available to new allocations without swapping.
type MemoryData struct {
	TotalBytes     uint64  `json:"total_bytes"`
	AvailableBytes uint64  `json:"available_bytes"`
	UsedPct        float64 `json:"used_pct"`
}

// SwapData is swap space; all zero when the guest has none.
type SwapData struct {
	TotalBytes uint64  `json:"total_bytes"`
	UsedBytes  uint64  `json:"used_bytes"`
	UsedPct    float64 `json:"used_pct"`
}

// LoadData is the load average. Windows has none; gopsutil emulates it.
type LoadData struct {
	Load1  float64 `json:"load1"`
	Load5  float64 `json:"load5"`
	Load15 float64 `json:"load15"`
}

// DiskData is the usage of one mounted filesystem.
type DiskData struct {
	Mountpoint string  `json:"mountpoint"`
	Device     string  `json:"device"`
	Fstype     string  `json:"fstype"`
	TotalBytes uint64  `json:"total_bytes"`
	UsedBytes  uint64  `json:"used_bytes"`
	FreeBytes  uint64  `json:"free_bytes"`
	UsedPct    float64 `json:"used_pct"`
	// Inodes is absent for filesystems without a fixed inode table
	// (btrfs, vfat, most network filesystems report none).
	Inodes *Inodes `json:"inodes,omitempty"`
}

// Inodes is the inode usage of a filesystem.
type Inodes struct {
	Total   uint64  `json:"total"`
	Used    uint64  `json:"used"`
	Free    uint64  `json:"free"`
	UsedPct float64 `json:"used_pct"`
}

// cpuTimes are cumulative CPU seconds over all CPUs since boot.
type cpuTimes struct {
	User, Nice, System, Idle, Iowait, Irq, Softirq, Steal float64
}

// total leaves out guest and guest_nice: Linux already counts them in user
// and nice.
func (t cpuTimes) total() float64 {
	return t.User + t.Nice + t.System + t.Idle + t.Iowait + t.Irq + t.Softirq + t.Steal
}

type memoryStat struct{ Total, Available uint64 }

type swapStat struct{ Total, Used uint64 }

type mount struct {
	Device, Mountpoint, Fstype string
}

type diskUsage struct {
	Total, Used, Free                   uint64
	InodesTotal, InodesUsed, InodesFree uint64
}

// resourceSource gathers the raw numbers. usage may block for good (a dead
// NFS server); the caller bounds it.
type resourceSource interface {
	cpuTimes(ctx context.Context) (cpuTimes, error)
	memory(ctx context.Context) (memoryStat, error)
	swap(ctx context.Context) (swapStat, error)
	load(ctx context.Context) (LoadData, error)
	mounts(ctx context.Context) ([]mount, error)
	usage(path string) (diskUsage, error)
	// procs lists the processes, kernel threads left out; procUser names
	// one's user, "" when unknown. Both are cheap enough for every run.
	procs(ctx context.Context) ([]proc, error)
	procUser(ctx context.Context, p proc) string
	// psi returns nil where the OS has no such thing.
	psi(ctx context.Context) *PSI
}

// Resources is the resources check: CPU (steal included), memory, swap,
// load, disk space and inodes, Linux PSI, and the processes behind a high
// reading. It lists the processes with every CPU sample, so that the top
// CPU ranking covers the same window as the CPU figures.
type Resources struct {
	cfg    Config
	src    resourceSource
	logger *slog.Logger

	mu         sync.Mutex // serialises Run
	prev       *cpuTimes
	prevAt     time.Time
	cpuWarnN   int // consecutive samples at or above CPU.Warn
	cpuCritN   int // consecutive samples at or above CPU.Crit
	stealWarnN int
	stealCritN int

	// The process listing taken with this run's CPU sample, and the CPU
	// times of the one before it, which the top CPU ranking subtracts.
	procs      []proc
	procsAt    time.Time
	procsErr   error
	procsFresh bool // procs was listed in this run
	procBase   map[procKey]time.Duration
	procBaseAt time.Time
	procBaseOK bool

	busyMu sync.Mutex
	busy   map[string]time.Time // mountpoints with a statfs in flight, and since when
}

// New returns the resources check gathering through gopsutil.
func New(cfg Config, logger *slog.Logger) *Resources {
	return newCheck(cfg, psutilSource{users: &users{}}, logger)
}

func newCheck(cfg Config, src resourceSource, logger *slog.Logger) *Resources {
	return &Resources{
		cfg:    cfg.withDefaults(),
		src:    src,
		logger: logger,
		busy:   map[string]time.Time{},
	}
}

// Name returns "resources".
func (r *Resources) Name() string { return Name }

// Run gathers one sample. If any metric cannot be gathered the status is
// unknown, never ok, and the summary says what failed; findings about the
// metrics that were gathered are still reported.
func (r *Resources) Run(ctx context.Context) checks.Result {
	r.mu.Lock()
	defer r.mu.Unlock()

	var (
		data     Data
		findings []protocol.Finding
	)
	fail := func(what string, err error) {
		data.Errors = append(data.Errors, what+": "+err.Error())
	}

	r.procsFresh = false
	if c, err := r.cpu(ctx); err != nil {
		r.cpuWarnN, r.cpuCritN = 0, 0
		r.stealWarnN, r.stealCritN = 0, 0
		fail("cpu", err)
	} else {
		data.CPU = &c
		findings = append(findings, r.cpuFindings(c)...)
		findings = append(findings, r.stealFindings(c)...)
	}
	if m, err := r.src.memory(ctx); err != nil {
		fail("memory", err)
	} else if m.Total == 0 {
		fail("memory", errors.New("total memory reported as 0"))
	} else {
		data.Memory = &MemoryData{
			TotalBytes:     m.Total,
			AvailableBytes: m.Available,
			UsedPct:        num.Pct(float64(m.Total)-float64(m.Available), float64(m.Total)),
		}
		findings = append(findings, r.memoryFindings(*data.Memory)...)
	}
	if s, err := r.src.swap(ctx); err != nil {
		fail("swap", err)
	} else {
		data.Swap = &SwapData{TotalBytes: s.Total, UsedBytes: s.Used, UsedPct: num.Pct(float64(s.Used), float64(s.Total))}
		findings = append(findings, r.swapFindings(*data.Swap)...)
	}
	if l, err := r.src.load(ctx); err != nil {
		fail("load", err)
	} else {
		data.Load = &l
	}
	disks, errs := r.disks(ctx)
	data.Disks = append([]DiskData{}, disks...) // [] rather than null when none
	data.Errors = append(data.Errors, errs...)
	for _, d := range disks {
		findings = append(findings, r.diskFindings(d)...)
	}
	for _, d := range disks {
		findings = append(findings, r.inodeFindings(d)...)
	}
	data.PSI = r.src.psi(ctx)
	if r.cfg.TopProcessesAlways || slices.ContainsFunc(findings, explainable) {
		data.TopCPU, data.TopMemory, data.TopError = r.top(ctx)
		nameTop(findings, data.TopCPU, data.TopMemory)
	}

	res := checks.Result{Status: checks.StatusOf(findings), Findings: findings, Data: data}
	switch {
	case len(data.Errors) > 0:
		res.Status = protocol.StatusUnknown
		res.Summary = "could not gather " + strings.Join(data.Errors, "; ")
		if len(findings) > 0 {
			res.Summary += "; " + checks.JoinMessages(findings)
		}
	case len(findings) > 0:
		res.Summary = checks.JoinMessages(findings)
	default:
		res.Summary = okSummary(data)
	}
	res.Summary = protocol.Clip(res.Summary, protocol.MaxSummaryLen)
	return res
}

// cpu returns CPU use since the previous run. The first run, and a run after
// the counters went backwards (CPU hot-unplug), measures over FirstWindow.
func (r *Resources) cpu(ctx context.Context) (CPUData, error) {
	cur, err := r.src.cpuTimes(ctx)
	if err != nil {
		r.prev = nil
		return CPUData{}, err
	}
	r.listProcs(ctx)
	now := time.Now()
	if r.prev == nil || cur.total() < r.prev.total() {
		first := cur
		r.prev, r.prevAt = &first, now
		t := time.NewTimer(r.cfg.FirstWindow.Duration)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			r.prev = nil
			return CPUData{}, ctx.Err()
		}
		if cur, err = r.src.cpuTimes(ctx); err != nil {
			r.prev = nil
			return CPUData{}, err
		}
		r.listProcs(ctx)
		now = time.Now()
	}
	prev, prevAt := *r.prev, r.prevAt
	r.prev, r.prevAt = &cur, now
	return cpuPercent(prev, cur, now.Sub(prevAt))
}

// cpuPercent turns two samples into percentages. It is pure so that the
// arithmetic is tested without a clock.
func cpuPercent(prev, cur cpuTimes, window time.Duration) (CPUData, error) {
	total := cur.total() - prev.total()
	if total <= 0 {
		return CPUData{}, errors.New("no cpu time elapsed between samples")
	}
	share := func(d float64) float64 { return num.Round1(math.Max(0, d) / total * 100) }
	c := CPUData{
		WindowSec: num.Round1(window.Seconds()),
		Count:     runtime.NumCPU(),
		UserPct:   share(cur.User + cur.Nice - prev.User - prev.Nice),
		SystemPct: share(cur.System + cur.Irq + cur.Softirq - prev.System - prev.Irq - prev.Softirq),
		IowaitPct: share(cur.Iowait - prev.Iowait),
		StealPct:  share(cur.Steal - prev.Steal),
		IdlePct:   share(cur.Idle - prev.Idle),
	}
	c.UsedPct = num.Round1(math.Max(0, 100-c.IdlePct-c.IowaitPct))
	return c, nil
}

// disks returns the usage of every real filesystem and the reasons for the
// ones it could not measure. Every statfs runs in its own goroutine; one
// that does not answer within DiskTimeout is abandoned, and its mount is
// skipped (and reported) until that call returns, so a dead NFS server costs
// one stuck goroutine, not one per run.
func (r *Resources) disks(ctx context.Context) ([]DiskData, []string) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.DiskTimeout.Duration)
	defer cancel()

	all, err := bounded(ctx, func() ([]mount, error) { return r.src.mounts(ctx) })
	if err != nil {
		return nil, []string{"mounts: " + err.Error()}
	}
	ms := realMounts(all)

	type answer struct {
		i   int
		u   diskUsage
		err error
	}
	answers := make(chan answer, len(ms)) // buffered: an abandoned call must not block
	var errs []string
	waiting := map[int]bool{}
	for i, m := range ms {
		if since, ok := r.startStatfs(m.Mountpoint); !ok {
			errs = append(errs, fmt.Sprintf("statfs %s: no answer since %s", m.Mountpoint, since.UTC().Format(time.RFC3339)))
			continue
		}
		waiting[i] = true
		go func() {
			u, err := r.src.usage(m.Mountpoint)
			r.endStatfs(m.Mountpoint)
			answers <- answer{i, u, err}
		}()
	}

	got := make([]*DiskData, len(ms))
	for len(waiting) > 0 {
		select {
		case a := <-answers:
			delete(waiting, a.i)
			m := ms[a.i]
			if a.err != nil {
				errs = append(errs, fmt.Sprintf("statfs %s: %v", m.Mountpoint, a.err))
				continue
			}
			got[a.i] = &DiskData{
				Mountpoint: m.Mountpoint,
				Device:     m.Device,
				Fstype:     m.Fstype,
				TotalBytes: a.u.Total,
				UsedBytes:  a.u.Used,
				FreeBytes:  a.u.Free,
				UsedPct:    num.Pct(float64(a.u.Used), float64(a.u.Used+a.u.Free)),
			}
			if a.u.InodesTotal > 0 {
				got[a.i].Inodes = &Inodes{
					Total:   a.u.InodesTotal,
					Used:    a.u.InodesUsed,
					Free:    a.u.InodesFree,
					UsedPct: num.Pct(float64(a.u.InodesUsed), float64(a.u.InodesTotal)),
				}
			}
		case <-ctx.Done():
			for i := range waiting {
				errs = append(errs, fmt.Sprintf("statfs %s: no answer within %s", ms[i].Mountpoint, r.cfg.DiskTimeout))
				r.logger.Warn("statfs_abandoned", "mountpoint", ms[i].Mountpoint, "timeout", r.cfg.DiskTimeout)
			}
			waiting = nil
		}
	}
	out := make([]DiskData, 0, len(ms))
	for _, d := range got {
		if d != nil {
			out = append(out, *d)
		}
	}
	return out, errs
}

// startStatfs marks a statfs of mountpoint as in flight. It refuses, and
// says since when, if an earlier one has not returned yet.
func (r *Resources) startStatfs(mountpoint string) (time.Time, bool) {
	r.busyMu.Lock()
	defer r.busyMu.Unlock()
	if since, ok := r.busy[mountpoint]; ok {
		return since, false
	}
	r.busy[mountpoint] = time.Now()
	return time.Time{}, true
}

func (r *Resources) endStatfs(mountpoint string) {
	r.busyMu.Lock()
	defer r.busyMu.Unlock()
	delete(r.busy, mountpoint)
}

// bounded runs f in a goroutine and gives up when ctx ends; f's late answer
// is discarded.
func bounded[T any](ctx context.Context, f func() (T, error)) (T, error) {
	type answer struct {
		v   T
		err error
	}
	ch := make(chan answer, 1)
	go func() {
		v, err := f()
		ch <- answer{v, err}
	}()
	select {
	case a := <-ch:
		return a.v, a.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// Filesystems that are never worth a disk_full finding: kernel interfaces,
// and read-only images that are always 100% full by design.
var skipFstypes = map[string]bool{
	"autofs": true, "binfmt_misc": true, "bpf": true, "cgroup": true, "cgroup2": true,
	"configfs": true, "debugfs": true, "devpts": true, "devtmpfs": true, "fusectl": true,
	"hugetlbfs": true, "mqueue": true, "nsfs": true, "overlay": true, "proc": true,
	"pstore": true, "ramfs": true, "rootfs": true, "rpc_pipefs": true, "securityfs": true,
	"selinuxfs": true, "sysfs": true, "tmpfs": true, "tracefs": true, "efivarfs": true,
	"squashfs": true, "iso9660": true, "udf": true, "erofs": true, "cdfs": true,
}

// Mount trees that belong to the kernel or to container runtimes.
var skipMountPrefixes = []string{"/proc", "/sys", "/dev", "/run/credentials", "/var/lib/docker", "/var/lib/containers", "/snap"}

// realMounts keeps the filesystems that hold data, once per device: a bind
// mount or a second mount of the same device would only repeat its usage.
func realMounts(ms []mount) []mount {
	var out []mount
	seen := map[string]bool{}
	for _, m := range ms {
		if skipFstypes[strings.ToLower(m.Fstype)] || m.Mountpoint == "" {
			continue
		}
		if p := path.Clean(m.Mountpoint); p != "/" && hasAnyPrefix(p, skipMountPrefixes) {
			continue
		}
		if m.Device != "" && m.Device != "none" {
			if seen[m.Device] {
				continue
			}
			seen[m.Device] = true
		}
		out = append(out, m)
	}
	return out
}

func hasAnyPrefix(p string, prefixes []string) bool {
	for _, pre := range prefixes {
		if p == pre || strings.HasPrefix(p, pre+"/") {
			return true
		}
	}
	return false
}
