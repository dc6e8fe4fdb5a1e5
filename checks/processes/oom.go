package processes

import (
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The kernel's OOM report (mm/oom_kill.c, the same from 5.0 to 6.x) ends
// with a summary line and then the kill:
//
//	oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/system.slice/foo.service,task_memcg=/system.slice/foo.service,task=foo,pid=1234,uid=0
//	Memory cgroup out of memory: Killed process 1234 (foo) total-vm:1049000kB, anon-rss:32412kB, file-rss:1200kB, shmem-rss:0kB, UID:0 pgtables:120kB oom_score_adj:0
//
// A process names itself (comm, 15 bytes), so the names are matched up to
// the fixed text that follows them, and pid and uid from the end.
var (
	oomSummaryRE = regexp.MustCompile(`^oom-kill:constraint=(\w+),.*?task_memcg=(.*?),task=(.*),pid=(\d+),uid=(\d+)$`)
	oomLimitRE   = regexp.MustCompile(`,oom_memcg=(.*?),task_memcg=`)
	oomKilledRE  = regexp.MustCompile(`^(?:Memory cgroup out of memory|Out of memory[^:]*): Killed process (\d+) \((.*)\) total-vm:(\d+)kB, anon-rss:(\d+)kB, file-rss:(\d+)kB, shmem-rss:(\d+)kB, UID:(\d+)(?: pgtables:\d+kB)?(?: oom_score_adj:(-?\d+))?`)
)

// oomReader pairs the summary with the kill line that follows it.
type oomReader struct {
	summary *OOMKill
}

// line reads one kernel log line and returns a kill once its line is read.
func (r *oomReader) line(msg string, at time.Time) (OOMKill, bool) {
	if m := oomSummaryRE.FindStringSubmatch(msg); m != nil {
		o := OOMKill{Constraint: m[1], Cgroup: m[2], Name: m[3], Source: "kmsg"}
		o.PID, _ = strconv.Atoi(m[4])
		o.UID, _ = strconv.Atoi(m[5])
		if l := oomLimitRE.FindStringSubmatch(msg); l != nil {
			o.LimitCgroup = l[1]
		}
		o.Unit = unitOfCgroup(o.Cgroup)
		r.summary = &o
		return OOMKill{}, false
	}
	m := oomKilledRE.FindStringSubmatch(msg)
	if m == nil {
		return OOMKill{}, false
	}
	o := OOMKill{Source: "kmsg"}
	pid, _ := strconv.Atoi(m[1])
	if s := r.summary; s != nil && s.PID == pid {
		o = *s
	}
	r.summary = nil
	o.PID, o.Name = pid, m[2]
	o.TotalVMKB, _ = strconv.ParseUint(m[3], 10, 64)
	o.AnonRSSKB, _ = strconv.ParseUint(m[4], 10, 64)
	o.FileRSSKB, _ = strconv.ParseUint(m[5], 10, 64)
	o.ShmemRSSKB, _ = strconv.ParseUint(m[6], 10, 64)
	o.UID, _ = strconv.Atoi(m[7])
	o.OOMScoreAdj, _ = strconv.Atoi(m[8])
	if !at.IsZero() {
		o.At = &at
	}
	return o, true
}

// unitOfCgroup names the systemd unit a cgroup path belongs to: the
// innermost component that is a unit other than a slice, else the
// innermost slice. Paths outside systemd's tree name no unit.
func unitOfCgroup(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	slice := ""
	for i := len(parts) - 1; i >= 0; i-- {
		p := parts[i]
		for _, t := range []string{".service", ".scope", ".socket", ".mount", ".swap"} {
			if strings.HasSuffix(p, t) && len(p) > len(t) {
				return p
			}
		}
		if slice == "" && strings.HasSuffix(p, ".slice") {
			slice = p
		}
	}
	return slice
}
