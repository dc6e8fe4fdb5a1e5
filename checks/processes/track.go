package processes

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/guestdiag/guestdiag/checks/internal/num"
	"github.com/guestdiag/guestdiag/protocol"
)

// class groups the states the check follows: D is uninterruptible
// sleep, T stopped by a signal and t by a tracer, Z a zombie.
func class(state string) byte {
	switch state {
	case "D":
		return 'D'
	case "T", "t":
		return 'T'
	case "Z":
		return 'Z'
	}
	return 0
}

// track returns what to remember after a sample taken at now:
// every process in D, T or Z, since when it has been so. A process keeps
// its Since while every sample sees it in the same class and, in D, with
// the same count of context switches: like the kernel's hung-task detector,
// a task that ran in between is not hung, however often it is caught in D.
// Processes are keyed by PID and start time, so a reused PID starts afresh.
func track(prev map[key]seenState, procs []proc, now time.Time) map[key]seenState {
	next := make(map[key]seenState, len(prev))
	for _, pr := range procs {
		c := class(pr.State)
		if c == 0 {
			continue
		}
		k := pr.key()
		s, ok := prev[k]
		if !ok || s.Class != c || (c == 'D' && s.Switches != pr.Switches) {
			s.Class, s.Since, s.Switches = c, now, pr.Switches
		}
		s.PID = pr.PID
		next[k] = s
	}
	return next
}

// readCmdlines reads the command line of every followed process that has
// none yet. A read that does not answer within a second is abandoned, and
// that process is not asked again until the read returns.
func (p *Processes) readCmdlines(ctx context.Context) {
	type answer struct {
		k   key
		cmd string
		err error
	}
	var want []key
	for k, s := range p.seen {
		if !s.CmdlineRead && s.Class != 'Z' && len(want) < maxListed {
			want = append(want, k)
		}
	}
	answers := make(chan answer, len(want))
	n := 0
	for _, k := range want {
		if !p.startRead(k) {
			continue
		}
		n++
		pid := p.seen[k].PID // a thread's key holds its tid
		go func() {
			cmd, err := p.src.cmdline(pid)
			p.endRead(k)
			answers <- answer{k, cmd, err}
		}()
	}
	t := time.NewTimer(time.Second)
	defer t.Stop()
	for ; n > 0; n-- {
		select {
		case a := <-answers:
			s, ok := p.seen[a.k]
			if !ok {
				continue
			}
			s.CmdlineRead = true
			if a.err == nil {
				s.Cmdline = protocol.Clip(a.cmd, cmdlineLen)
			}
			p.seen[a.k] = s
		case <-t.C:
			p.logger.Warn("cmdline_read_abandoned", "pending", n)
			return
		case <-ctx.Done():
			return
		}
	}
}

func (p *Processes) startRead(k key) bool {
	p.busyMu.Lock()
	defer p.busyMu.Unlock()
	if p.busy[k] {
		return false
	}
	p.busy[k] = true
	return true
}

func (p *Processes) endRead(k key) {
	p.busyMu.Lock()
	defer p.busyMu.Unlock()
	delete(p.busy, k)
}

// findingsOf judges one sample against the thresholds. It returns
// the findings, the followed processes for the data (oldest first, at most
// maxListed) and how many were left out of that list.
func findingsOf(cfg Config, procs []proc, seen map[key]seenState, now time.Time) ([]protocol.Finding, []Proc, int) {
	byPID := make(map[int]proc, len(procs))
	var followed []Proc
	for _, pr := range procs {
		if pr.TID == 0 {
			byPID[pr.PID] = pr
		}
		s, ok := seen[pr.key()]
		if !ok {
			continue
		}
		followed = append(followed, Proc{
			PID: pr.PID, PPID: pr.PPID, Name: displayName(pr), Cmdline: s.Cmdline,
			State: pr.State, Since: s.Since, ForSec: num.Round1(now.Sub(s.Since).Seconds()),
			Wchan: pr.Wchan, KernelThread: pr.Kernel, TID: pr.TID, Thread: pr.Thread,
		})
	}
	slices.SortFunc(followed, func(a, b Proc) int {
		if c := a.Since.Compare(b.Since); c != 0 {
			return c
		}
		return a.PID - b.PID
	})

	var hung, stopped, zombies []Proc
	zombieCount := 0
	for _, f := range followed {
		age := now.Sub(f.Since)
		switch class(f.State) {
		case 'D':
			if age >= cfg.HungAfter.Duration {
				hung = append(hung, f)
			}
		case 'T':
			if age >= cfg.StoppedAfter.Duration {
				stopped = append(stopped, f)
			}
		case 'Z':
			zombieCount++
			if age >= cfg.ZombieAge.Duration {
				zombies = append(zombies, f)
			}
		}
	}

	var out []protocol.Finding
	out = append(out, each(hung, func(f Proc) protocol.Finding {
		what := "pid"
		if f.KernelThread {
			what = "kernel thread"
		}
		msg := fmt.Sprintf("%s %d %s%s in uninterruptible sleep (D) without running for %s", what, f.PID, f.Name, threadOf(f), ageSince(now, f.Since))
		if f.Wchan != "" {
			msg += ", waiting in " + f.Wchan
		}
		return procFinding(CodeProcessesHung, protocol.SeverityCrit, msg, f, now)
	}, func(n int) protocol.Finding {
		return protocol.Finding{Code: CodeProcessesHung, Severity: protocol.SeverityCrit, Count: uint64(n),
			Message: fmt.Sprintf("%d more processes in D state for over %s", n, cfg.HungAfter)}
	})...)
	out = append(out, each(stopped, func(f Proc) protocol.Finding {
		by := "by a signal"
		if f.State == "t" {
			by = "by a debugger or tracer"
		}
		msg := fmt.Sprintf("pid %d %s%s stopped (%s) %s for %s", f.PID, f.Name, threadOf(f), f.State, by, ageSince(now, f.Since))
		return procFinding(CodeProcessesStopped, protocol.SeverityWarn, msg, f, now)
	}, func(n int) protocol.Finding {
		return protocol.Finding{Code: CodeProcessesStopped, Severity: protocol.SeverityWarn, Count: uint64(n),
			Message: fmt.Sprintf("%d more processes stopped for over %s", n, cfg.StoppedAfter)}
	})...)
	out = append(out, zombieFindings(cfg, zombies, zombieCount, byPID, now)...)
	listed, left := capList(followed)
	return out, listed, left
}

func capList(l []Proc) ([]Proc, int) {
	if l == nil {
		return []Proc{}, 0
	}
	if len(l) > maxListed {
		return l[:maxListed], len(l) - maxListed
	}
	return l, 0
}

// zombieFindings reports zombies by parent, since the parent is
// what fails to reap them, and the total when it is over ZombieCount.
func zombieFindings(cfg Config, aged []Proc, total int, byPID map[int]proc, now time.Time) []protocol.Finding {
	type parent struct {
		pid    int
		oldest Proc
		n      int
	}
	var parents []*parent
	idx := map[int]*parent{}
	for _, z := range aged { // oldest first, so a parent's first zombie is its oldest
		pa, ok := idx[z.PPID]
		if !ok {
			pa = &parent{pid: z.PPID, oldest: z}
			idx[z.PPID] = pa
			parents = append(parents, pa)
		}
		pa.n++
	}
	var out []protocol.Finding
	for i, pa := range parents {
		if i == maxPerCode {
			rest := 0
			for _, q := range parents[i:] {
				rest += q.n
			}
			out = append(out, protocol.Finding{Code: CodeProcessesZombies, Severity: protocol.SeverityWarn, Count: uint64(rest),
				Message: fmt.Sprintf("%d more zombies of %d more parents unreaped for over %s", rest, len(parents)-i, cfg.ZombieAge)})
			break
		}
		pname := "?"
		if pp, ok := byPID[pa.pid]; ok {
			pname = displayName(pp)
		}
		first := pa.oldest.Since
		last := now
		out = append(out, protocol.Finding{
			Code:     CodeProcessesZombies,
			Severity: protocol.SeverityWarn,
			Message: fmt.Sprintf("parent pid %d %s has not reaped %d zombie children for over %s (oldest pid %d %s, %s)",
				pa.pid, pname, pa.n, cfg.ZombieAge, pa.oldest.PID, pa.oldest.Name, ageSince(now, first)),
			Source: protocol.Clip(fmt.Sprintf("%s[%d]", pname, pa.pid), protocol.MaxSourceLen),
			Count:  uint64(pa.n),
			First:  &first,
			Last:   &last,
		})
	}
	if total > cfg.ZombieCount {
		out = append(out, protocol.Finding{Code: CodeProcessesZombies, Severity: protocol.SeverityWarn, Count: uint64(total),
			Message: fmt.Sprintf("%d zombie processes, more than %d", total, cfg.ZombieCount)})
	}
	return out
}

// each makes one finding per entry up to maxPerCode and
// one that counts the rest.
func each[T any](l []T, one func(T) protocol.Finding, rest func(int) protocol.Finding) []protocol.Finding {
	var out []protocol.Finding
	for i, v := range l {
		if i == maxPerCode {
			return append(out, rest(len(l)-i))
		}
		out = append(out, one(v))
	}
	return out
}

func procFinding(code string, sev protocol.Severity, msg string, f Proc, now time.Time) protocol.Finding {
	first, last := f.Since, now
	if f.Cmdline != "" {
		msg += ": " + f.Cmdline
	}
	return protocol.Finding{
		Code:     code,
		Severity: sev,
		Message:  protocol.Clip(msg, protocol.MaxMessageLen),
		Source:   protocol.Clip(procSource(f), protocol.MaxSourceLen),
		First:    &first,
		Last:     &last,
	}
}

// threadOf names the worker thread of f, or is empty for a process.
func threadOf(f Proc) string {
	if f.TID == 0 {
		return ""
	}
	return fmt.Sprintf(" thread %d %s", f.TID, f.Thread)
}

// procSource is name[pid] for a process and name[pid]/thread[tid] for a
// worker thread, so that two hung threads of one process are two sources.
func procSource(f Proc) string {
	s := fmt.Sprintf("%s[%d]", strings.Trim(f.Name, "[]"), f.PID)
	if f.TID != 0 {
		s += fmt.Sprintf("/%s[%d]", f.Thread, f.TID)
	}
	return s
}

// displayName is comm, in brackets for a kernel thread as ps
// shows them.
func displayName(pr proc) string {
	if pr.Kernel {
		return "[" + pr.Name + "]"
	}
	return pr.Name
}

func ageSince(now, since time.Time) string {
	return now.Sub(since).Round(time.Second).String()
}
