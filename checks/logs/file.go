package logs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// fileSource tails the classic log files matching globs. Every poll it
// stats each file: a new inode means the file was rotated, so the old file
// is read to its end through the descriptor still open before the new one
// is read from its start; a size below the offset, or different first
// bytes, means it was truncated (copytruncate) and is read from 0.
type fileSource struct {
	globs      []string
	filter     *entryFilter
	poll       time.Duration
	scanBytes  int64
	skipKernel bool // kmsg is read: the kernel's lines in the files repeat it
	logger     *slog.Logger
	now        func() time.Time
}

func (r *fileSource) name() string { return "files" }

// maxLine bounds one line; the rest of a longer line is skipped.
const maxLine = 64 << 10

func (r *fileSource) read(ctx context.Context, follow bool, sink entrySink) error {
	tails := map[string]*tail{}
	defer func() {
		for _, t := range tails {
			t.close()
		}
	}()
	initial := true
	var tick *time.Ticker
	for {
		for _, p := range r.paths() {
			if tails[p] != nil {
				continue
			}
			t, err := r.open(p, sink, follow, initial)
			if err != nil {
				sink.failed(p, err)
				continue
			}
			tails[p] = t
		}
		for p, t := range tails {
			if err := t.poll(sink); err != nil {
				sink.failed(p, err)
				t.close()
				delete(tails, p)
			}
		}
		if !follow {
			return nil
		}
		initial = false
		if tick == nil {
			tick = time.NewTicker(r.poll)
			defer tick.Stop()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// paths expands the globs to the regular files there now.
func (r *fileSource) paths() []string {
	var out []string
	for _, g := range r.globs {
		ms, err := filepath.Glob(g)
		if err != nil {
			continue
		}
		for _, m := range ms {
			if fi, err := os.Stat(m); err == nil && fi.Mode().IsRegular() && !slices.Contains(out, m) {
				out = append(out, m)
			}
		}
	}
	return out
}

// tail is one followed file.
type tail struct {
	r    *fileSource
	path string
	f    *os.File
	id   fileIdent
	off  int64 // just after the last whole line handed to the sink
	// partial is a line read without its newline yet; skipping says the
	// rest of an over-long line is being dropped.
	partial  []byte
	pend     int64 // bytes read after off, in partial or skipped
	skipping bool
	buf      []byte
	entries  []entry
}

// fileIdent tells one file from another across renames.
type fileIdent struct {
	dev, ino uint64
	headLen  int
	headHash uint64
}

func (id fileIdent) sameInode(o fileIdent) bool { return id.dev == o.dev && id.ino == o.ino }

func (r *fileSource) open(path string, sink entrySink, follow, initial bool) (*tail, error) {
	t := &tail{r: r, path: path, buf: make([]byte, 256<<10)}
	pos, saved := sink.position(path)
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	id, size, err := identify(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	want := fileIdent{dev: pos.Dev, ino: pos.Inode, headLen: pos.HeadLen, headHash: pos.HeadHash}
	switch {
	case saved && id.sameInode(want) && headMatches(f, want) && size >= pos.Offset:
		t.f, t.id, t.off = f, id, pos.Offset
		sink.started(path, "file", "saved_position")
	case saved:
		// Rotated while we were not reading: finish the old file if it is
		// still next to the new one, under another name.
		if old := r.findRotated(path, want); old != nil {
			f.Close()
			oid, _, _ := identify(old)
			oid.headLen, oid.headHash = want.headLen, want.headHash
			t.f, t.id, t.off = old, oid, pos.Offset
			sink.started(path, "file", "rotated")
			break
		}
		t.f, t.id = f, id
		sink.started(path, "file", "beginning")
	case follow && initial:
		t.f, t.id, t.off = f, id, size
		sink.started(path, "file", "end")
	case follow:
		t.f, t.id = f, id
		sink.started(path, "file", "beginning")
	default:
		t.f, t.id = f, id
		if size > r.scanBytes {
			t.off = size - r.scanBytes
			t.skipping = true // the first line is likely cut
		}
		sink.started(path, "file", "recent_tail")
	}
	if _, err := t.f.Seek(t.off, io.SeekStart); err != nil {
		t.close()
		return nil, err
	}
	if !t.skipping {
		sink.push(path, t.position(), 0, nil)
	}
	return t, nil
}

// findRotated looks next to path (path.1, path-20250101, …) for the file
// with identity want.
func (r *fileSource) findRotated(path string, want fileIdent) *os.File {
	if want.ino == 0 {
		return nil
	}
	ms, _ := filepath.Glob(path + "?*")
	for _, m := range ms {
		f, err := os.Open(m)
		if err != nil {
			continue
		}
		if id, _, err := identify(f); err == nil && id.sameInode(want) && headMatches(f, want) {
			return f
		}
		f.Close()
	}
	return nil
}

// identify returns f's identity and size. The head is the first line
// (or 256 bytes); it stays unset while the file is shorter than that.
func identify(f *os.File) (fileIdent, int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return fileIdent{}, 0, err
	}
	var id fileIdent
	id.dev, id.ino = fileID(fi)
	var head [256]byte
	n, err := f.ReadAt(head[:], 0)
	if err != nil && err != io.EOF {
		return id, 0, err
	}
	if i := bytes.IndexByte(head[:n], '\n'); i >= 0 {
		id.headLen = i + 1
	} else if n == len(head) {
		id.headLen = n
	}
	id.headHash = hash(head[:id.headLen])
	return id, fi.Size(), nil
}

func hash(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

// headMatches says whether f still starts with the head in want; an
// unset head matches.
func headMatches(f *os.File, want fileIdent) bool {
	if want.headLen == 0 {
		return true
	}
	b := make([]byte, want.headLen)
	if _, err := f.ReadAt(b, 0); err != nil {
		return false
	}
	return hash(b) == want.headHash
}

func (t *tail) close() {
	if t.f != nil {
		t.f.Close()
		t.f = nil
	}
}

func (t *tail) position() Position {
	return Position{Dev: t.id.dev, Inode: t.id.ino, Offset: t.off, HeadLen: t.id.headLen, HeadHash: t.id.headHash}
}

// poll reads what was added and follows a rotation or truncation.
func (t *tail) poll(sink entrySink) error {
	fi, err := os.Stat(t.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// Renamed away and not recreated yet: finish the old file.
		return t.pump(sink, false)
	case err != nil:
		return err
	}
	if dev, ino := fileID(fi); dev != t.id.dev || ino != t.id.ino {
		if err := t.pump(sink, true); err != nil {
			return err
		}
		f, err := os.Open(t.path)
		if err != nil {
			return err
		}
		id, _, err := identify(f)
		if err != nil {
			f.Close()
			return err
		}
		t.close()
		t.f, t.id, t.off, t.pend, t.partial, t.skipping = f, id, 0, 0, t.partial[:0], false
		sink.push(t.path, t.position(), 0, nil)
		return t.pump(sink, false)
	}
	if err := t.checkTruncated(fi.Size(), sink); err != nil {
		return err
	}
	return t.pump(sink, false)
}

// checkTruncated starts over from 0 when the file shrank below what was
// read, or when its first bytes changed (truncated and rewritten between
// two polls).
func (t *tail) checkTruncated(size int64, sink entrySink) error {
	read := t.off + t.pend
	truncated := size < read
	if !truncated && t.id.headLen > 0 && size > read {
		truncated = !headMatches(t.f, t.id)
	}
	if !truncated {
		if t.id.headLen == 0 && size > 0 {
			id, _, err := identify(t.f)
			if err != nil {
				return err
			}
			t.id = id
		}
		return nil
	}
	id, _, err := identify(t.f)
	if err != nil {
		return err
	}
	if _, err := t.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	t.id, t.off, t.pend, t.partial, t.skipping = id, 0, 0, t.partial[:0], false
	sink.push(t.path, t.position(), 0, nil)
	return nil
}

// pump reads f to its end and hands every whole line to the sink, one
// chunk at a time. With final (the file was rotated away) a last line
// without newline counts as whole.
func (t *tail) pump(sink entrySink, final bool) error {
	for {
		n, err := t.f.Read(t.buf)
		if n > 0 {
			t.chunk(t.buf[:n], sink)
		}
		if err == io.EOF || n == 0 && err == nil {
			break
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", t.path, err)
		}
	}
	if final && t.pend > 0 {
		var lines uint64
		t.entries = t.entries[:0]
		if !t.skipping {
			t.line(t.partial)
			lines = 1
		}
		t.off += t.pend
		t.pend, t.partial, t.skipping = 0, t.partial[:0], false
		sink.push(t.path, t.position(), lines, t.entries)
	}
	return nil
}

// chunk splits b into lines, joined to the partial line before it, and
// hands its error entries and the offset after its last whole line to the
// sink.
func (t *tail) chunk(b []byte, sink entrySink) {
	t.entries = t.entries[:0]
	var lines uint64
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			t.pend += int64(len(b))
			if !t.skipping {
				if room := maxLine - len(t.partial); len(b) >= room {
					// Too long: what fits is the line, the rest is dropped.
					t.line(append(t.partial, b[:room]...))
					lines++
					t.partial, t.skipping = t.partial[:0], true
				} else {
					t.partial = append(t.partial, b...)
				}
			}
			break
		}
		switch line := b[:i]; {
		case t.skipping:
			t.skipping = false
		case len(t.partial) > 0:
			t.line(append(t.partial, line[:min(len(line), maxLine-len(t.partial))]...))
			lines++
		default:
			t.line(line[:min(len(line), maxLine)])
			lines++
		}
		t.off += t.pend + int64(i+1)
		t.pend, t.partial = 0, t.partial[:0]
		b = b[i+1:]
	}
	sink.push(t.path, t.position(), lines, t.entries)
}

// line classifies one line and keeps it if it is an error.
func (t *tail) line(b []byte) {
	f := t.r.filter
	pri, body := syslogPri(b)
	if pri > f.minPri || pri == priUnknown && !f.mayMatch(body) {
		return
	}
	sl := parseSyslogLine(body, t.r.now())
	if t.r.skipKernel && sl.ident == "kernel" {
		return
	}
	pri, ok := f.classify(pri, sl.msg)
	if !ok {
		return
	}
	t.entries = append(t.entries, entry{Source: t.path, Unit: string(sl.ident), PID: sl.pid, Priority: pri, Time: sl.time, Message: string(sl.msg)})
}

// syslogPri takes a leading "<PRI>" off b and returns its severity.
func syslogPri(b []byte) (int, []byte) {
	if len(b) < 3 || b[0] != '<' {
		return priUnknown, b
	}
	n := 0
	for i := 1; i < len(b) && i <= 4; i++ {
		switch c := b[i]; {
		case c >= '0' && c <= '9':
			n = n*10 + int(c-'0')
		case c == '>' && i > 1:
			return n & 7, b[i+1:]
		default:
			return priUnknown, b
		}
	}
	return priUnknown, b
}

// syslogRecord is a parsed syslog file line.
type syslogRecord struct {
	time  time.Time
	host  []byte
	ident string
	pid   int
	msg   []byte
}

// parseSyslogLine reads the traditional format ("Nov  3 04:05:06 host
// tag[pid]: msg") and the RFC 3339 one of rsyslog's high-precision
// template ("2025-11-03T04:05:06.123456+00:00 host tag[pid]: msg"). A line
// in neither format is all message, at now.
func parseSyslogLine(b []byte, now time.Time) syslogRecord {
	l := syslogRecord{time: now, msg: b}
	var rest []byte
	switch {
	case len(b) > 16 && b[3] == ' ' && b[6] == ' ' && b[9] == ':' && b[12] == ':' && b[15] == ' ':
		t, err := time.ParseInLocation(time.Stamp, string(b[:15]), now.Location())
		if err != nil {
			return l
		}
		t = t.AddDate(now.Year(), 0, 0)
		if t.After(now.Add(24 * time.Hour)) { // December's lines read in January
			t = t.AddDate(-1, 0, 0)
		}
		l.time, rest = t, b[16:]
	case len(b) > 20 && b[4] == '-' && b[7] == '-' && b[10] == 'T':
		sp := bytes.IndexByte(b, ' ')
		if sp < 0 {
			return l
		}
		t, err := time.Parse(time.RFC3339Nano, string(b[:sp]))
		if err != nil {
			return l
		}
		l.time, rest = t, b[sp+1:]
	default:
		return l
	}
	sp := bytes.IndexByte(rest, ' ')
	if sp < 0 {
		l.msg = rest
		return l
	}
	l.host, rest = rest[:sp], rest[sp+1:]
	l.msg = rest
	// The tag ends at ": " within its first 64 bytes and has no space.
	end := bytes.IndexByte(rest[:min(len(rest), 64)], ':')
	if end <= 0 || bytes.IndexByte(rest[:end], ' ') >= 0 {
		return l
	}
	tag := rest[:end]
	if i := bytes.IndexByte(tag, '['); i > 0 && tag[len(tag)-1] == ']' {
		l.pid, _ = strconv.Atoi(string(tag[i+1 : len(tag)-1]))
		tag = tag[:i]
	}
	l.ident = string(tag)
	l.msg = bytes.TrimLeft(rest[end+1:], " ")
	return l
}
