package resources

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/guestdiag/guestdiag/checks/internal/num"
	"github.com/guestdiag/guestdiag/checks/internal/procstat"
	"github.com/guestdiag/guestdiag/protocol"
)

// Proc is one process in the top lists of a resources result.
// CPUPct is its CPU time over the same window as the CPU figures, in
// percent of one CPU the way top shows it: a process busy on two CPUs is at
// 200.
type Proc struct {
	PID      int     `json:"pid"`
	Name     string  `json:"name"`
	User     string  `json:"user,omitempty"`
	CPUPct   float64 `json:"cpu_pct"`
	RSSBytes uint64  `json:"rss_bytes"`
}

// proc is one process as a gatherer sees it.
type proc struct {
	PID int
	// Start is when the process started, in the OS's own units; with PID it
	// tells a process from a later one that got the same pid.
	Start uint64
	Name  string
	CPU   time.Duration // user plus system time since the process started
	RSS   uint64
	// Kernel marks kernel threads (Linux) and the kernel's own processes
	// (Windows): they are nobody's workload to blame.
	Kernel bool
}

// procOf keeps what the resources check reports of a process's stat.
func procOf(p procstat.Stat) proc {
	return proc{PID: p.PID, Start: p.Start, Name: p.Name, CPU: p.CPU, RSS: p.RSS, Kernel: p.Kernel}
}

type procKey struct {
	PID   int
	Start uint64
}

// parseStatusUID returns the effective uid from /proc/<pid>/status, the
// one ps shows as the process's user.
func parseStatusUID(b []byte) (string, bool) {
	for line := range bytes.Lines(b) {
		rest, ok := bytes.CutPrefix(line, []byte("Uid:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) < 2 {
			return "", false
		}
		if _, ok := procstat.Atou(f[1]); !ok {
			return "", false
		}
		return string(f[1]), true
	}
	return "", false
}

// parsePasswd maps uids to user names from an /etc/passwd. The first
// entry of a uid wins, as with getpwuid.
func parsePasswd(b []byte) map[string]string {
	names := map[string]string{}
	for line := range bytes.Lines(b) {
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		f := bytes.SplitN(line, []byte(":"), 4)
		if len(f) < 4 || len(f[0]) == 0 {
			continue
		}
		if _, ok := procstat.Atou(f[2]); !ok {
			continue
		}
		uid := string(f[2])
		if _, dup := names[uid]; !dup {
			names[uid] = string(f[0])
		}
	}
	return names
}

// users caches user names: on Linux uid to name from /etc/passwd, on
// Windows SID to DOMAIN\name. A nil *users caches nothing.
type users struct {
	mu    sync.Mutex
	names map[string]string
	stamp string // Linux: which /etc/passwd, with its size and mtime, names came from
}

// passwdName returns the name of uid from etcRoot/passwd, re-reading the
// file only when it changed. An unknown uid comes back as itself.
func (u *users) passwdName(etcRoot, uid string) string {
	if u == nil {
		u = &users{}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	p := etcRoot + "/passwd"
	fi, err := os.Stat(p)
	if err != nil {
		return uid
	}
	stamp := p + " " + strconv.FormatInt(fi.Size(), 10) + " " + fi.ModTime().String()
	if stamp != u.stamp {
		b, err := os.ReadFile(p)
		if err != nil {
			return uid
		}
		u.names, u.stamp = parsePasswd(b), stamp
	}
	if n, ok := u.names[uid]; ok {
		return n
	}
	return uid
}

// topProcs ranks the processes of cur by CPU over window and by
// resident memory, n of each. prev holds the CPU time of every process of
// the previous listing; a process missing from it started within the
// window, so all its CPU time counts. A nil prev means no previous listing:
// the CPU ranking is then empty. Kernel threads are left out, and so are
// processes that used no CPU from the CPU ranking.
func topProcs(prev map[procKey]time.Duration, cur []proc, window time.Duration, n, cpus int) (byCPU, byMem []Proc) {
	if n <= 0 {
		return nil, nil
	}
	type ranked struct {
		p   *proc
		cpu time.Duration
	}
	rs := make([]ranked, 0, len(cur))
	for i := range cur {
		p := &cur[i]
		if p.Kernel {
			continue
		}
		used := p.CPU
		if before, ok := prev[procKey{p.PID, p.Start}]; ok {
			used -= before
		}
		rs = append(rs, ranked{p, max(used, 0)})
	}
	entry := func(r ranked) Proc {
		e := Proc{PID: r.p.PID, Name: r.p.Name, RSSBytes: r.p.RSS}
		if prev != nil && window > 0 {
			// A process seen for the first time after a gap in the listings
			// may bring more CPU time than the window holds.
			e.CPUPct = num.Round1(min(float64(r.cpu)/float64(window)*100, float64(100*max(cpus, 1))))
		}
		return e
	}
	if prev != nil && window > 0 {
		slices.SortFunc(rs, func(a, b ranked) int {
			return cmp.Or(cmp.Compare(b.cpu, a.cpu), cmp.Compare(a.p.PID, b.p.PID))
		})
		for _, r := range rs[:min(n, len(rs))] {
			if r.cpu <= 0 {
				break
			}
			byCPU = append(byCPU, entry(r))
		}
	}
	slices.SortFunc(rs, func(a, b ranked) int {
		return cmp.Or(cmp.Compare(b.p.RSS, a.p.RSS), cmp.Compare(a.p.PID, b.p.PID))
	})
	for _, r := range rs[:min(n, len(rs))] {
		if r.p.RSS == 0 {
			break
		}
		byMem = append(byMem, entry(r))
	}
	return byCPU, byMem
}

// windowsKernelProc tells the processes the Windows kernel runs for
// itself: the idle process (its CPU time is the idle time), System, and the
// minimal processes System starts for the registry, memory compression and
// the secure kernel.
func windowsKernelProc(pid, ppid int, name string) bool {
	if pid == 0 || pid == 4 {
		return true
	}
	if ppid != 4 {
		return false
	}
	switch name {
	case "Registry", "Memory Compression", "Secure System":
		return true
	}
	return false
}

// listProcs takes a process listing next to a CPU sample; the listing it
// replaces becomes the baseline of the next top CPU ranking.
func (r *Resources) listProcs(ctx context.Context) {
	if r.cfg.TopProcesses == 0 {
		return
	}
	if r.procBase == nil {
		r.procBase = map[procKey]time.Duration{}
	}
	clear(r.procBase)
	for _, p := range r.procs {
		r.procBase[procKey{p.PID, p.Start}] = p.CPU
	}
	r.procBaseAt, r.procBaseOK = r.procsAt, r.procsErr == nil && !r.procsAt.IsZero()

	r.procs, r.procsErr = r.src.procs(ctx)
	r.procsAt, r.procsFresh = time.Now(), true
	if r.procsErr != nil {
		r.procs = nil
		r.logger.Debug("process_listing_failed", "err", r.procsErr)
	}
}

// top ranks this run's process listing and names the users of the
// processes it keeps. The third result says why a list is missing.
func (r *Resources) top(ctx context.Context) (byCPU, byMem []Proc, why string) {
	switch {
	case r.cfg.TopProcesses == 0:
		return nil, nil, ""
	case !r.procsFresh:
		return nil, nil, "no process listing: the cpu sample failed"
	case r.procsErr != nil:
		return nil, nil, "processes: " + r.procsErr.Error()
	}
	base := r.procBase
	if !r.procBaseOK {
		base = nil
		why = "no earlier process listing to measure cpu against"
	}
	byCPU, byMem = topProcs(base, r.procs, r.procsAt.Sub(r.procBaseAt), r.cfg.TopProcesses, runtime.NumCPU())
	users := map[int]string{}
	name := func(e *Proc) {
		u, ok := users[e.PID]
		if !ok {
			u = r.src.procUser(ctx, proc{PID: e.PID})
			users[e.PID] = u
		}
		e.User = u
	}
	for i := range byCPU {
		name(&byCPU[i])
	}
	for i := range byMem {
		name(&byMem[i])
	}
	return byCPU, byMem, why
}

// explainable tells the findings that the top processes may explain.
func explainable(f protocol.Finding) bool {
	switch f.Code {
	case CodeCPUHigh, CodeStealHigh, CodeMemoryHigh, CodeSwapHigh:
		return true
	}
	return false
}

// nameTop adds the busiest process to the message of a CPU, memory or
// swap finding, so that the one line an operator reads says who.
func nameTop(fs []protocol.Finding, byCPU, byMem []Proc) {
	for i := range fs {
		f := &fs[i]
		switch {
		case f.Code == CodeCPUHigh && len(byCPU) > 0:
			p := byCPU[0]
			f.Message += fmt.Sprintf("; top: %q (pid %d) %.1f%% of a cpu", p.Name, p.PID, p.CPUPct)
		case (f.Code == CodeMemoryHigh || f.Code == CodeSwapHigh) && len(byMem) > 0:
			p := byMem[0]
			f.Message += fmt.Sprintf("; top: %q (pid %d) %s resident", p.Name, p.PID, bytesIEC(p.RSSBytes))
		}
		f.Message = protocol.Clip(f.Message, protocol.MaxMessageLen)
	}
}
