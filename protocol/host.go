package protocol

import (
	"strings"
	"time"
)

// HostUsage is what a relay publishes on HostSubject every interval: the
// host's capacity and load, and each VM's use of it as seen from outside
// the guest, from the VM's QEMU process. It is the scheduler's black-box
// view; nothing in it comes from a guest.
type HostUsage struct {
	V    int       `json:"v"`
	Host string    `json:"host"`
	TS   time.Time `json:"ts"`
	// IntervalS is the publishing interval; CPU figures are averages over
	// the last one (over the relay's lifetime in the first message).
	IntervalS uint32     `json:"interval_s"`
	CPU       HostCPU    `json:"cpu"`
	Memory    HostMemory `json:"memory"`
	Load      HostLoad   `json:"load"`
	// VMs lists the QEMU processes found, sorted by name.
	VMs []VMUsage `json:"vms"`
	// Errors says what could not be gathered; the fields it names are
	// zero then, never a guess.
	Errors []string `json:"errors,omitempty"`
}

// Lacks reports whether u's Errors say a figure was not gathered: the
// relay starts each error with what failed ("cpu times: ...", "memory:
// ..."), so figure "cpu" matches any CPU error and "mem" the memory's.
func (u *HostUsage) Lacks(figure string) bool {
	for _, e := range u.Errors {
		if strings.HasPrefix(strings.ToLower(e), figure) {
			return true
		}
	}
	return false
}

// HostCPU is the host's CPU count and how busy it was.
type HostCPU struct {
	Count   int     `json:"count"`
	UsedPct float64 `json:"used_pct"`
}

// HostMemory is the host's memory in bytes.
type HostMemory struct {
	TotalBytes     uint64  `json:"total_bytes"`
	AvailableBytes uint64  `json:"available_bytes"`
	UsedPct        float64 `json:"used_pct"`
}

// HostLoad is the host's load average.
type HostLoad struct {
	Load1  float64 `json:"load1"`
	Load5  float64 `json:"load5"`
	Load15 float64 `json:"load15"`
}

// VMUsage is one VM's QEMU process.
type VMUsage struct {
	// VM is the name QEMU was given (-name), as libvirt names the domain.
	VM  string `json:"vm"`
	PID int    `json:"pid"`
	// CPUPct is the process's CPU time over the interval as a percentage
	// of one CPU: 250 is two and a half CPUs busy.
	CPUPct   float64 `json:"cpu_pct"`
	RSSBytes uint64  `json:"rss_bytes"`
	// MemoryBytes (-m) and VCPUs (-smp) are the VM's configured size, when
	// its command line says; 0 when it does not.
	MemoryBytes uint64 `json:"memory_bytes,omitempty"`
	VCPUs       int    `json:"vcpus,omitempty"`
}
