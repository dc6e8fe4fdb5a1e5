package procstat

import (
	"bytes"
	"errors"
	"fmt"
	"time"
)

// Stat is what the processes and resources checks read from
// /proc/<pid>/stat: one parser for both, since both walk every process.
type Stat struct {
	PID, PPID int
	State     string // the state letter: R, S, D, T, t, Z, I, ...
	Start     uint64 // clock ticks after boot: with PID, names one process
	Name      string // comm
	CPU       time.Duration
	RSS       uint64 // bytes
	Threads   int    // num_threads: 1 for a process without worker threads
	// Kernel marks kernel threads: PF_KTHREAD, kthreadd itself, or its
	// children.
	Kernel bool
}

// userTick is the unit of the CPU times in /proc/<pid>/stat. USER_HZ
// is 100 on every architecture Linux exports to user space, whatever the
// kernel's own HZ.
const userTick = time.Second / 100

// pfKthread is PF_KTHREAD in the flags field of /proc/<pid>/stat.
const pfKthread = 0x00200000

var ErrMalformed = errors.New("malformed /proc/<pid>/stat")

// Parse reads /proc/<pid>/stat without allocating beyond the name.
// The name between the parentheses may itself hold spaces and parentheses,
// so it ends at the last ')'. pageSize converts the rss field, which counts
// pages.
func Parse(b []byte, pageSize uint64) (Stat, error) {
	open := bytes.IndexByte(b, '(')
	shut := bytes.LastIndexByte(b, ')')
	if open < 1 || shut < open {
		return Stat{}, ErrMalformed
	}
	pid, ok := Atou(bytes.TrimSpace(b[:open]))
	if !ok {
		return Stat{}, ErrMalformed
	}
	// Fields after the name, counted from 0 (state); man 5 proc numbers them
	// from 3.
	const (
		fState   = 0
		fPPID    = 1
		fFlags   = 6
		fUtime   = 11
		fStime   = 12
		fThreads = 17
		fStart   = 19
		fRSS     = 21
	)
	var (
		vals  [fRSS + 1]uint64
		state []byte
	)
	rest := b[shut+1:]
	for i := 0; i <= fRSS; i++ {
		rest = bytes.TrimLeft(rest, " ")
		end := bytes.IndexAny(rest, " \n")
		if end < 0 {
			end = len(rest)
		}
		field := rest[:end]
		rest = rest[end:]
		if len(field) == 0 {
			return Stat{}, fmt.Errorf("%w: %d fields after the name, want %d", ErrMalformed, i, fRSS+1)
		}
		switch i {
		case fState:
			state = field
			continue
		case fPPID, fFlags, fUtime, fStime, fThreads, fStart, fRSS:
		default:
			continue // numbers that may be negative, and ones nobody reads
		}
		if vals[i], ok = Atou(field); !ok {
			return Stat{}, fmt.Errorf("%w: field %d is %q", ErrMalformed, i+3, field)
		}
	}
	return Stat{
		PID:     int(pid),
		PPID:    int(vals[fPPID]),
		State:   string(state),
		Start:   vals[fStart],
		Name:    string(b[open+1 : shut]),
		CPU:     time.Duration(vals[fUtime]+vals[fStime]) * userTick,
		RSS:     vals[fRSS] * pageSize,
		Threads: int(vals[fThreads]),
		Kernel:  vals[fFlags]&pfKthread != 0 || pid == 2 || vals[fPPID] == 2,
	}, nil
}

// Atou parses a decimal without allocating.
func Atou(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (1<<64-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}
