package software

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"unsafe"

	"github.com/guestdiag/guestdiag/protocol"
	"golang.org/x/sys/unix"
)

// rpmFiles are the files that hold an rpm database, by backend:
// sqlite (rpm 4.16 and later, Fedora 33+, RHEL 9), ndb (openSUSE) and
// Berkeley DB (older systems).
var rpmFiles = []string{"rpmdb.sqlite", "Packages.db", "Packages"}

// rpmQueryFormat makes `rpm -qa` print name, [epoch:]version-release
// and arch separated by tabs, one package a line.
const rpmQueryFormat = `%{NAME}\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\t%{ARCH}\n`

func (s *Software) path(p string) string { return filepath.Join(s.cfg.Root, p) }

// gatherOS reads dpkg's status file, apk's installed file and, through
// `rpm -qa`, the rpm database, whichever exist.
func (s *Software) gatherOS(ctx context.Context) ([]database, error) {
	var dbs []database
	looked := []string{s.path(s.cfg.DpkgStatus), s.path(s.cfg.APKInstalled)}
	for _, f := range []struct {
		source, path string
		parse        func([]byte) ([]pkg, error)
	}{
		{SourceDpkg, s.path(s.cfg.DpkgStatus), parseDpkgStatus},
		{SourceAPK, s.path(s.cfg.APKInstalled), parseAPKInstalled},
	} {
		b, err := os.ReadFile(f.path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s database: %w", f.source, err)
		}
		pkgs, err := f.parse(b)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", f.path, err)
		}
		dbs = append(dbs, database{Source: f.source, Path: f.path, Packages: pkgs})
	}

	if s.cfg.RPM != RPMOff {
		dir := ""
		for _, d := range s.cfg.RPMDBPaths {
			looked = append(looked, s.path(d))
			if dir == "" && hasRPMDB(s.path(d)) {
				dir = s.path(d)
			}
		}
		switch {
		case dir != "":
			pkgs, err := rpmQuery(ctx, dir)
			if err != nil {
				return nil, err
			}
			dbs = append(dbs, database{Source: SourceRPM, Path: dir, Packages: pkgs})
		case s.cfg.RPM == RPMOn:
			return nil, fmt.Errorf("rpm is on but no rpm database found in %s", strings.Join(looked[2:], ", "))
		}
	}
	if len(dbs) == 0 {
		return nil, fmt.Errorf("%w (looked for %s)", errNoDatabase, strings.Join(looked, ", "))
	}
	return dbs, nil
}

func hasRPMDB(dir string) bool {
	for _, f := range rpmFiles {
		if st, err := os.Stat(filepath.Join(dir, f)); err == nil && st.Mode().IsRegular() {
			return true
		}
	}
	return false
}

// rpmQuery lists the packages of the rpm database in dir. It runs
// rpm rather than reading the database itself: a pure Go reader of the
// sqlite backend would double the agent binary, and rpm knows its own
// locking and backends.
func rpmQuery(ctx context.Context, dir string) ([]pkg, error) {
	bin, err := exec.LookPath("rpm")
	if err != nil {
		return nil, fmt.Errorf("rpm database in %s but no rpm command (set rpm to off to skip it): %w", dir, err)
	}
	cmd := exec.CommandContext(ctx, bin, "-qa", "--dbpath", dir, "--queryformat", rpmQueryFormat)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("rpm -qa --dbpath %s: %w: %s", dir, err, protocol.Clip(strings.TrimSpace(stderr.String()), 300))
	}
	pkgs, err := parseRPMQuery(out)
	if err != nil {
		return nil, fmt.Errorf("parse rpm -qa output for %s: %w", dir, err)
	}
	return pkgs, nil
}

// Watch triggers a run when a package database changes. It watches the
// directories holding the databases rather than the files, because dpkg
// and apk replace their file by a rename.
func (s *Software) Watch(ctx context.Context, trigger func()) error {
	return s.watch(ctx, trigger, nil)
}

// watch is Watch that calls ready, when not nil, once it sees changes:
// tests wait for that instead of sleeping.
func (s *Software) watch(ctx context.Context, trigger, ready func()) error {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("software: inotify: %w", err)
	}
	f := os.NewFile(uintptr(fd), "inotify") // non-blocking, so Close ends a pending Read
	defer f.Close()

	w := watchSet{names: map[int32]map[string]bool{}, dirs: map[int32]string{}, seen: map[string]fileSig{}}
	add := func(dir string, files ...string) {
		wd, err := unix.InotifyAddWatch(fd, dir, unix.IN_CLOSE_WRITE|unix.IN_MOVED_TO|unix.IN_CREATE|unix.IN_DELETE)
		if err != nil {
			if !errors.Is(err, unix.ENOENT) {
				s.logger.Warn("software_watch_failed", "dir", dir, "err", err)
			}
			return
		}
		w.add(int32(wd), dir, files...)
	}
	dpkg := s.path(s.cfg.DpkgStatus)
	add(filepath.Dir(dpkg), filepath.Base(dpkg))
	apk := s.path(s.cfg.APKInstalled)
	add(filepath.Dir(apk), filepath.Base(apk))
	if s.cfg.RPM != RPMOff {
		for _, d := range s.cfg.RPMDBPaths {
			add(s.path(d), rpmFiles...)
		}
	}
	if len(w.names) == 0 {
		return fmt.Errorf("software: no package database directory to watch: %w", errors.ErrUnsupported)
	}

	go func() {
		<-ctx.Done()
		f.Close()
	}()
	if ready != nil {
		ready()
	}
	buf := make([]byte, 64*1024)
	for {
		n, err := f.Read(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("software: read inotify: %w", err)
		}
		if w.changed(inotifyEvents(buf[:n])) {
			trigger()
		}
	}
}

// watchSet is what Watch watches: by inotify watch descriptor, the
// directory and the database files in it, and how each file looked when
// last seen.
type watchSet struct {
	names map[int32]map[string]bool
	dirs  map[int32]string
	seen  map[string]fileSig
}

func (w *watchSet) add(wd int32, dir string, files ...string) {
	if w.names[wd] == nil {
		w.names[wd] = map[string]bool{}
	}
	w.dirs[wd] = dir
	for _, f := range files {
		w.names[wd][f] = true
		w.seen[filepath.Join(dir, f)] = sigOf(filepath.Join(dir, f))
	}
}

// changed reports whether events show a database file written, replaced
// or removed, or the kernel dropping events. rpm closes its database
// written-to even for a query (the check's own included), so an event
// counts only when the file really differs from when it was last seen.
func (w *watchSet) changed(events []inotifyEvent) bool {
	changed := false
	for _, ev := range events {
		if ev.overflow {
			changed = true
			continue
		}
		if !w.names[ev.wd][ev.name] {
			continue
		}
		p := filepath.Join(w.dirs[ev.wd], ev.name)
		if sig := sigOf(p); sig != w.seen[p] {
			w.seen[p] = sig
			changed = true
		}
	}
	return changed
}

// fileSig tells whether a file was replaced or written: its inode,
// size and modification time, all zero when it does not exist.
type fileSig struct {
	ino, size uint64
	mtime     int64
}

func sigOf(path string) fileSig {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fileSig{}
	}
	return fileSig{ino: st.Ino, size: uint64(st.Size), mtime: st.Mtim.Nano()}
}

type inotifyEvent struct {
	wd       int32
	name     string
	overflow bool
}

// inotifyEvents splits a read from an inotify descriptor into its
// events; a truncated tail is dropped.
func inotifyEvents(b []byte) []inotifyEvent {
	var out []inotifyEvent
	for len(b) >= unix.SizeofInotifyEvent {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&b[0]))
		end := unix.SizeofInotifyEvent + int(ev.Len)
		if end > len(b) {
			break
		}
		out = append(out, inotifyEvent{
			wd:       ev.Wd,
			name:     string(bytes.TrimRight(b[unix.SizeofInotifyEvent:end], "\x00")),
			overflow: ev.Mask&unix.IN_Q_OVERFLOW != 0,
		})
		b = b[end:]
	}
	return out
}
