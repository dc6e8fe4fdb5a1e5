package procstat

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// ReadAll parses /proc/<pid>/stat of every process under root, one
// small read each. A process that exits while being read is left out; a
// stat that does not parse is an error that names it.
func ReadAll(ctx context.Context, root string) ([]Stat, error) {
	d, err := os.Open(root)
	if err != nil {
		return nil, err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, err
	}
	page := uint64(os.Getpagesize())
	buf := make([]byte, 4096)
	out := make([]Stat, 0, len(names))
	for i, name := range names {
		if name[0] < '1' || name[0] > '9' {
			continue
		}
		if i%64 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		b, err := readSmall(root+"/"+name+"/stat", buf)
		if err != nil {
			continue // gone since the listing
		}
		p, err := Parse(b, page)
		if err != nil {
			return nil, fmt.Errorf("%s/%s/stat: %w", root, name, err)
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no readable processes under %s", root)
	}
	return out, nil
}

// ReadTasks parses /proc/<pid>/task/<tid>/stat of every thread of pid
// but the main one, whose state /proc/<pid>/stat already gives. Each Stat's
// PID is the thread's id and Name its own comm. A thread that exits while
// being read is left out, and so is a process that exited.
func ReadTasks(ctx context.Context, root string, pid int) ([]Stat, error) {
	dir := root + "/" + strconv.Itoa(pid) + "/task"
	d, err := os.Open(dir)
	if err != nil {
		return nil, nil // gone since the listing, or no task directory
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, nil
	}
	page := uint64(os.Getpagesize())
	buf := make([]byte, 4096)
	main := strconv.Itoa(pid)
	var out []Stat
	for i, name := range names {
		if name == main || name[0] < '1' || name[0] > '9' {
			continue
		}
		if i%64 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		b, err := readSmall(dir+"/"+name+"/stat", buf)
		if err != nil {
			continue
		}
		t, err := Parse(b, page)
		if err != nil {
			return nil, fmt.Errorf("%s/%s/stat: %w", dir, name, err)
		}
		out = append(out, t)
	}
	return out, nil
}

// readSmall reads a file of at most len(buf) bytes with three system calls
// and no allocation beyond the path.
func readSmall(path string, buf []byte) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	n := 0
	for n < len(buf) {
		m, err := unix.Read(fd, buf[n:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if m == 0 {
			return buf[:n], nil
		}
		n += m
	}
	return nil, fmt.Errorf("%s: longer than %d bytes", path, len(buf))
}
