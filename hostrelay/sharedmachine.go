package hostrelay

import (
	"flag"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/guestdiag/guestdiag/protocol"
)

// SharedMachine declares that several relays share one machine, each
// playing a host of its own: the VM lab's stand-in for a second
// hypervisor. It is off while CPUs is 0. On, this relay's host usage
// counts only the QEMU processes with one of its channel sockets on their
// command line, its CPU count is CPUs, and its CPU use is those
// processes' CPU over CPUs, so that one relay's host can be overloaded
// while another's on the same machine is not. With MemoryBytes set, the
// host's memory is that much and its use is those processes' resident
// memory; else it is the machine's. The load average stays the machine's.
type SharedMachine struct {
	CPUs        int
	MemoryBytes uint64
}

func (s SharedMachine) enabled() bool { return s.CPUs > 0 }

// apply replaces out's host part with the declared host's, computed from
// the VMs left in out.
func (s SharedMachine) apply(out *protocol.HostUsage) {
	var cpu float64
	var rss uint64
	for _, v := range out.VMs {
		cpu += v.CPUPct
		rss += v.RSSBytes
	}
	out.CPU = protocol.HostCPU{Count: s.CPUs, UsedPct: round2(min(100, cpu/float64(s.CPUs)))}
	if s.MemoryBytes > 0 {
		used := min(rss, s.MemoryBytes)
		out.Memory = protocol.HostMemory{TotalBytes: s.MemoryBytes, AvailableBytes: s.MemoryBytes - used,
			UsedPct: round2(float64(used) / float64(s.MemoryBytes) * 100)}
	}
}

// chardevPaths lists the path= of every -chardev on a QEMU command line:
// the sockets of its channels, by which a shared machine's relay knows
// its VMs.
func chardevPaths(args []string) []string {
	var out []string
	for i := 0; i+1 < len(args); i++ {
		if strings.TrimPrefix(strings.TrimPrefix(args[i], "-"), "-") != "chardev" {
			continue
		}
		for _, o := range splitOpts(args[i+1]) {
			if o.key == "path" {
				out = append(out, filepath.Clean(o.val))
			}
		}
		i++
	}
	return out
}

// servedBy says whether p has one of the channel sockets in paths.
func servedBy(p qemuProc, paths map[string]bool) bool {
	for _, s := range p.sockets {
		if paths[s] {
			return true
		}
	}
	return false
}

// SharedMachineFlag is a flag.Value for Config.SharedMachine:
// CPUS[,memory=SIZE], SIZE in MiB or with a k, M, G or T suffix.
func SharedMachineFlag(p *SharedMachine) flag.Value { return sharedMachineFlag{p} }

type sharedMachineFlag struct{ p *SharedMachine }

func (f sharedMachineFlag) String() string {
	if f.p == nil || !f.p.enabled() {
		return ""
	}
	s := strconv.Itoa(f.p.CPUs)
	if f.p.MemoryBytes > 0 {
		s += ",memory=" + strconv.FormatUint(f.p.MemoryBytes>>20, 10) + "M"
	}
	return s
}

func (f sharedMachineFlag) Set(v string) error {
	cpus, rest, _ := strings.Cut(v, ",")
	n, err := strconv.Atoi(cpus)
	if err != nil || n <= 0 {
		return fmt.Errorf("shared machine %q: want CPUS[,memory=SIZE] with CPUS a positive number", v)
	}
	s := SharedMachine{CPUs: n}
	if rest != "" {
		size, ok := strings.CutPrefix(rest, "memory=")
		if s.MemoryBytes = parseSize(size); !ok || s.MemoryBytes == 0 {
			return fmt.Errorf("shared machine %q: want memory=SIZE after the CPU count, such as memory=2G", v)
		}
	}
	*f.p = s
	return nil
}

// channelPaths is the set of the watched channels' socket paths.
func (r *Relay) channelPaths() map[string]bool {
	chs := r.Channels()
	out := make(map[string]bool, len(chs))
	for _, ch := range chs {
		out[filepath.Clean(ch.Path)] = true
	}
	return out
}
