//go:build linux

package processes

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// memWatchDepth is how deep under the cgroup root memory.events files are
// watched: slices (1) and the units in them (2). The kernel counts a kill
// in every ancestor's memory.events too, so a kill deeper down, in a
// user's session or a container, still shows at depth 2.
const memWatchDepth = 2

// watchMemoryEvents follows the oom_kill counters of cgroup v2
// memory.events through inotify (the kernel notifies IN_MODIFY when a
// counter changes). It is what finds an OOM kill when /dev/kmsg cannot be
// read; the kill then has its cgroup, unit and memory figures but no pid.
// A kill that /dev/kmsg also reports is left to that report.
func (p *Processes) watchMemoryEvents(ctx context.Context, trigger func()) error {
	root := p.cfg.CgroupRoot
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err != nil {
		return fmt.Errorf("no cgroup v2 tree at %s: %w", root, err)
	}
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("inotify: %w", err)
	}
	f := os.NewFile(uintptr(fd), "inotify")
	stop := context.AfterFunc(ctx, func() { f.Close() })
	defer stop()
	defer f.Close()

	type watch struct {
		rel   string // cgroup path under root, "" for root
		depth int
		dir   bool // watching for new cgroups, not memory.events
	}
	counts := map[string]uint64{} // cgroup path under root -> oom_kill
	wds := map[int32]watch{}
	var add func(rel string, depth int)
	add = func(rel string, depth int) {
		dir := filepath.Join(root, rel)
		if depth > 0 {
			events := filepath.Join(dir, "memory.events")
			if b, err := os.ReadFile(events); err == nil {
				counts[rel], _ = oomKillCount(b)
				if wd, err := unix.InotifyAddWatch(fd, events, unix.IN_MODIFY); err == nil {
					wds[int32(wd)] = watch{rel: rel, depth: depth}
				}
			}
		}
		if depth == memWatchDepth {
			return
		}
		if wd, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE|unix.IN_ONLYDIR); err == nil {
			wds[int32(wd)] = watch{rel: rel, depth: depth, dir: true}
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.IsDir() {
				add(filepath.Join(rel, e.Name()), depth+1)
			}
		}
	}
	add("", 0)
	buf := make([]byte, 64<<10)
	for {
		n, err := f.Read(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, os.ErrClosed) {
				return nil
			}
			return fmt.Errorf("read inotify: %w", err)
		}
		changed := false
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			nameEnd := min(n, off+unix.SizeofInotifyEvent+int(ev.Len))
			name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:nameEnd]), "\x00")
			off = nameEnd
			w, ok := wds[ev.Wd]
			switch {
			case !ok:
			case ev.Mask&unix.IN_IGNORED != 0: // the cgroup was removed
				delete(wds, ev.Wd)
				if !w.dir {
					delete(counts, w.rel)
				}
			case w.dir && ev.Mask&unix.IN_CREATE != 0 && name != "":
				add(filepath.Join(w.rel, name), w.depth+1)
			case !w.dir && ev.Mask&unix.IN_MODIFY != 0:
				changed = true
			}
		}
		if changed && p.oomCounters(counts) {
			trigger()
		}
	}
}

// oomCounters rereads the watched counters and records a kill in each
// deepest cgroup whose counter rose, unless /dev/kmsg already told of it.
func (p *Processes) oomCounters(counts map[string]uint64) bool {
	rose := map[string]uint64{}
	for rel, old := range counts {
		b, err := os.ReadFile(filepath.Join(p.cfg.CgroupRoot, rel, "memory.events"))
		if err != nil {
			continue
		}
		if n, ok := oomKillCount(b); ok {
			if n > old {
				rose[rel] = n - old
			}
			counts[rel] = n
		}
	}
	added := false
	for rel, n := range rose {
		deepest := true
		for other := range rose {
			if strings.HasPrefix(other, rel+"/") {
				deepest = false
			}
		}
		if !deepest {
			continue
		}
		o := OOMKill{Seen: time.Now(), Cgroup: "/" + rel, Unit: unitOfCgroup(rel), Source: "memory.events"}
		p.readCgroupMemory(&o)
		o.Kills = n
		p.ev.addOOM(o)
		added = true
	}
	return added
}

// oomKillCount reads the oom_kill counter of a cgroup v2 memory.events file.
func oomKillCount(b []byte) (uint64, bool) {
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "oom_kill "); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// cgroupBytes reads a cgroup v2 size file such as memory.max: a number of
// bytes, or "max" for no limit (false).
func cgroupBytes(b []byte) (uint64, bool) {
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return n, err == nil
}
