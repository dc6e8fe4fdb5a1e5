package resources

import (
	"fmt"
	"strings"

	"github.com/guestdiag/guestdiag/protocol"
)

// Threshold holds the percentages at or above which a value is a warning and
// a critical finding.
type Threshold struct {
	Warn float64 `json:"warn"`
	Crit float64 `json:"crit"`
}

func (r *Resources) cpuFindings(c CPUData) []protocol.Finding {
	sev, limit, ok := sustained(&r.cpuWarnN, &r.cpuCritN, c.UsedPct, r.cfg.CPU, r.cfg.CPUSamples)
	if !ok {
		return nil
	}
	return []protocol.Finding{{
		Code:     CodeCPUHigh,
		Severity: sev,
		Message:  fmt.Sprintf("cpu %.1f%% used, at or above %.0f%% for %d samples in a row", c.UsedPct, limit, r.cpuWarnN),
		Count:    uint64(r.cpuWarnN),
	}}
}

func (r *Resources) stealFindings(c CPUData) []protocol.Finding {
	sev, limit, ok := sustained(&r.stealWarnN, &r.stealCritN, c.StealPct, r.cfg.Steal, r.cfg.StealSamples)
	if !ok {
		return nil
	}
	return []protocol.Finding{{
		Code:     CodeStealHigh,
		Severity: sev,
		Message: fmt.Sprintf("cpu steal %.1f%%, at or above %.0f%% for %d samples in a row: the hypervisor is running others while this guest waits",
			c.StealPct, limit, r.stealWarnN),
		Count: uint64(r.stealWarnN),
	}}
}

// sustained counts v into the streaks of samples at or above t.Warn and
// t.Crit, and reports once n samples in a row reached t.Warn: crit if they
// all reached t.Crit.
func sustained(warnN, critN *int, v float64, t Threshold, n int) (protocol.Severity, float64, bool) {
	*warnN = streak(*warnN, v >= t.Warn)
	*critN = streak(*critN, v >= t.Crit)
	switch {
	case *warnN < n:
		return "", 0, false
	case *critN >= n:
		return protocol.SeverityCrit, t.Crit, true
	}
	return protocol.SeverityWarn, t.Warn, true
}

func streak(n int, hit bool) int {
	if hit {
		return n + 1
	}
	return 0
}

func (r *Resources) memoryFindings(m MemoryData) []protocol.Finding {
	sev, limit, ok := r.cfg.Memory.classify(m.UsedPct)
	if !ok {
		return nil
	}
	return []protocol.Finding{{
		Code:     CodeMemoryHigh,
		Severity: sev,
		Message:  fmt.Sprintf("memory %.1f%% used (threshold %.0f%%), %s available", m.UsedPct, limit, bytesIEC(m.AvailableBytes)),
	}}
}

func (r *Resources) swapFindings(s SwapData) []protocol.Finding {
	if s.TotalBytes == 0 {
		return nil
	}
	sev, limit, ok := r.cfg.Swap.classify(s.UsedPct)
	if !ok {
		return nil
	}
	return []protocol.Finding{{
		Code:     CodeSwapHigh,
		Severity: sev,
		Message:  fmt.Sprintf("swap %.1f%% used (threshold %.0f%%), %s of %s", s.UsedPct, limit, bytesIEC(s.UsedBytes), bytesIEC(s.TotalBytes)),
	}}
}

func (r *Resources) inodeFindings(d DiskData) []protocol.Finding {
	if d.Inodes == nil {
		return nil
	}
	sev, limit, ok := r.cfg.Inodes.classify(d.Inodes.UsedPct)
	if !ok {
		return nil
	}
	return []protocol.Finding{{
		Code:     CodeInodesFull,
		Severity: sev,
		Message:  fmt.Sprintf("%s has %.1f%% of its inodes used (threshold %.0f%%), %d free", d.Mountpoint, d.Inodes.UsedPct, limit, d.Inodes.Free),
		Source:   protocol.Clip(d.Mountpoint, protocol.MaxSourceLen),
	}}
}

func (r *Resources) diskFindings(d DiskData) []protocol.Finding {
	sev, limit, ok := r.cfg.Disk.classify(d.UsedPct)
	if !ok {
		return nil
	}
	return []protocol.Finding{{
		Code:     CodeDiskFull,
		Severity: sev,
		Message:  fmt.Sprintf("%s %.1f%% full (threshold %.0f%%), %s free", d.Mountpoint, d.UsedPct, limit, bytesIEC(d.FreeBytes)),
		Source:   protocol.Clip(d.Mountpoint, protocol.MaxSourceLen),
	}}
}

// or fills the fields left at zero from def, so that a config setting only
// warn keeps the default crit rather than a crit of 0 %.
func (t Threshold) or(def Threshold) Threshold {
	if t.Warn <= 0 {
		t.Warn = def.Warn
	}
	if t.Crit <= 0 {
		t.Crit = max(def.Crit, t.Warn)
	}
	return t
}

func (t Threshold) classify(v float64) (protocol.Severity, float64, bool) {
	switch {
	case v >= t.Crit:
		return protocol.SeverityCrit, t.Crit, true
	case v >= t.Warn:
		return protocol.SeverityWarn, t.Warn, true
	}
	return "", 0, false
}

func okSummary(d Data) string {
	var parts []string
	if d.CPU != nil {
		parts = append(parts, fmt.Sprintf("cpu %.1f%%", d.CPU.UsedPct))
	}
	if d.Memory != nil {
		parts = append(parts, fmt.Sprintf("memory %.1f%%", d.Memory.UsedPct))
	}
	if d.Load != nil {
		parts = append(parts, fmt.Sprintf("load %.2f", d.Load.Load1))
	}
	var full *DiskData
	for i := range d.Disks {
		if full == nil || d.Disks[i].UsedPct > full.UsedPct {
			full = &d.Disks[i]
		}
	}
	if full != nil {
		parts = append(parts, fmt.Sprintf("fullest disk %s %.1f%%", full.Mountpoint, full.UsedPct))
	}
	return strings.Join(parts, ", ")
}

func bytesIEC(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
