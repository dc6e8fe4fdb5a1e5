package hostrelay

import (
	"errors"
	"log/slog"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rescanner wakes the discovery loop when a watched folder changes, through
// inotify. The periodic rescan stays: inotify can run out of watches, and
// a folder created between a scan and its watch would be missed.
type rescanner struct {
	C   chan struct{}
	log *slog.Logger
	f   *os.File // nil when inotify is not available

	mu      sync.Mutex
	watched map[string]int // folder → watch descriptor
	dirs    map[int]string
}

const watchMask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_DELETE_SELF | unix.IN_ONLYDIR

func newRescanner(log *slog.Logger) *rescanner {
	rs := &rescanner{C: make(chan struct{}, 1), log: log, watched: make(map[string]int), dirs: make(map[int]string)}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		log.Warn("inotify_unavailable", "err", err)
		return rs
	}
	// Non-blocking, so that os.File reads through the runtime's poller and
	// Close ends a pending Read.
	rs.f = os.NewFile(uintptr(fd), "inotify")
	go rs.read()
	return rs
}

// watch makes the set of watched folders dirs. Folders that do not exist
// are skipped; they are in dirs again at the next scan.
func (rs *rescanner) watch(dirs []string) {
	if rs.f == nil {
		return
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	want := make(map[string]bool, len(dirs))
	for _, d := range dirs {
		want[d] = true
		if _, ok := rs.watched[d]; ok {
			continue
		}
		wd, err := unix.InotifyAddWatch(int(rs.f.Fd()), d, watchMask)
		if err != nil {
			if errors.Is(err, unix.ENOSPC) {
				rs.log.Warn("inotify_watch_failed", "dir", d, "err", err)
			}
			continue
		}
		rs.watched[d], rs.dirs[wd] = wd, d
	}
	for d, wd := range rs.watched {
		if !want[d] {
			_, _ = unix.InotifyRmWatch(int(rs.f.Fd()), uint32(wd))
			delete(rs.watched, d)
			delete(rs.dirs, wd)
		}
	}
}

func (rs *rescanner) read() {
	buf := make([]byte, 64<<10)
	for {
		n, err := rs.f.Read(buf)
		if err != nil {
			return // closed
		}
		rs.forgetRemoved(buf[:n])
		select {
		case rs.C <- struct{}{}:
		default: // a rescan is already due
		}
	}
}

// forgetRemoved drops the watches the kernel removed (IN_IGNORED: the
// folder went), so that a folder created again under the same name is
// watched again.
func (rs *rescanner) forgetRemoved(b []byte) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for len(b) >= unix.SizeofInotifyEvent {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&b[0]))
		if ev.Mask&unix.IN_IGNORED != 0 {
			if d, ok := rs.dirs[int(ev.Wd)]; ok {
				delete(rs.watched, d)
				delete(rs.dirs, int(ev.Wd))
			}
		}
		b = b[min(len(b), unix.SizeofInotifyEvent+int(ev.Len)):]
	}
}

func (rs *rescanner) close() {
	if rs.f != nil {
		rs.f.Close()
	}
}
