package logs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/guestdiag/guestdiag/checks"
	"github.com/guestdiag/guestdiag/protocol"
)

// Name is the registered name of the logs check.
const Name = "logs"

func init() {
	checks.Register(Name, true, time.Minute, 20*time.Second, DefaultConfig,
		func(cfg Config, env checks.Env) (checks.Check, error) { return New(cfg, env) })
}

// Finding codes of the logs check.
const (
	CodeLogError    = "log.error"
	CodeLogCritical = "log.critical"
)

// Syslog priorities the check maps its sources onto. Windows levels map as
// Critical → priCrit, Error → priErr, Warning → priWarning.
const (
	priCrit    = 2
	priErr     = 3
	priWarning = 4
	priUnknown = -1 // the source gave none; the keyword patterns decide
)

// Config tunes the logs check. Zero numbers and durations take the
// defaults of DefaultConfig.
type Config struct {
	// Journal reads the systemd journal: "auto" (when /run/systemd/journal
	// exists and journalctl is on PATH), "on" or "off".
	Journal string `json:"journal"`
	// Kmsg reads /dev/kmsg: "auto" (when the journal is not read and no
	// syslog file is there), "on" or "off".
	Kmsg string `json:"kmsg"`
	// Files are globs of classic syslog files to tail. Null means
	// /var/log/syslog, /var/log/messages and /var/log/kern.log, but only
	// when the journal is not read (it holds the same entries); an explicit
	// list is always read, an empty list reads none.
	Files []string `json:"files"`
	// Channels are the Windows event log channels to subscribe to.
	Channels []string `json:"channels"`
	// MinPriority is the least severe syslog priority reported: 3 (err)
	// reports emerg, alert, crit and err; 4 would add warning.
	MinPriority int `json:"min_priority"`
	// ErrorKeywords are lowercase substrings that a line without a priority
	// must contain before ErrorPatterns are tried; they keep the common
	// case (a line that is no error) cheap. Empty means every line is
	// matched against ErrorPatterns.
	ErrorKeywords []string `json:"error_keywords"`
	// ErrorPatterns are regular expressions that make a line without a
	// priority (a file line) an error.
	ErrorPatterns []string `json:"error_patterns"`
	// CriticalPatterns raise such a line to critical.
	CriticalPatterns []string `json:"critical_patterns"`
	// IgnorePatterns drop an error entry of any source.
	IgnorePatterns []string `json:"ignore_patterns"`
	// AggregateWindow is how long an entry that was reported holds back
	// its repeats: identical entries within the window are counted and
	// reported once the window has passed, as one finding.
	AggregateWindow checks.Duration `json:"aggregate_window"`
	// MaxPerSource bounds the distinct entries one source keeps between
	// reports; entries beyond are counted as suppressed.
	MaxPerSource int `json:"max_per_source"`
	// MaxRate bounds the error entries per second one source may feed in
	// (with a burst of as many); entries beyond are counted as suppressed.
	MaxRate int `json:"max_rate"`
	// MaxFindings bounds the findings of one result.
	MaxFindings int `json:"max_findings"`
	// MaxEntries bounds the raw entries listed in the result's data.
	MaxEntries int `json:"max_entries"`
	// MaxMessageLen clips messages, in bytes.
	MaxMessageLen int `json:"max_message_len"`
	// PollInterval is how often followed files are checked for growth,
	// rotation and truncation.
	PollInterval checks.Duration `json:"poll_interval"`
	// ScanWindow is how far back a run looks when nothing follows the
	// sources (check --once) and there is no saved position.
	ScanWindow checks.Duration `json:"scan_window"`
	// ScanBytes is how much of a file's end such a run reads.
	ScanBytes int64 `json:"scan_bytes"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Journal:          "auto",
		Kmsg:             "auto",
		Channels:         []string{"System", "Application"},
		MinPriority:      priErr,
		ErrorKeywords:    []string{"err", "fail", "fatal", "crit", "panic", "oops", "segfault", "out of memory", "call trace"},
		ErrorPatterns:    []string{`(?i)\b(errors?|err|fail(s|ed|ure|ures)?|fatal|critical|panic|oops|segfault|out of memory|call trace)\b`},
		CriticalPatterns: []string{`(?i)\b(kernel panic|critical|fatal|emerg(ency)?)\b`},
		IgnorePatterns:   []string{`(?i)\b(no|0|zero|without) (errors?|failures?)\b`},
		AggregateWindow:  checks.D(5 * time.Minute),
		MaxPerSource:     50,
		MaxRate:          200,
		MaxFindings:      50,
		MaxEntries:       20,
		MaxMessageLen:    1024,
		PollInterval:     checks.D(250 * time.Millisecond),
		ScanWindow:       checks.D(5 * time.Minute),
		ScanBytes:        64 << 10,
	}
}

func (c Config) withDefaults() (Config, error) {
	d := DefaultConfig()
	for _, m := range []*string{&c.Journal, &c.Kmsg} {
		switch *m {
		case "":
			*m = "auto"
		case "auto", "on", "off":
		default:
			return c, fmt.Errorf("journal and kmsg take auto, on or off, not %q", *m)
		}
	}
	if c.MinPriority < 0 || c.MinPriority > 7 {
		return c, fmt.Errorf("min_priority %d: want 0 (emerg) to 7 (debug)", c.MinPriority)
	}
	if c.AggregateWindow.Duration < 0 {
		c.AggregateWindow = d.AggregateWindow
	}
	if c.MaxPerSource <= 0 {
		c.MaxPerSource = d.MaxPerSource
	}
	if c.MaxRate <= 0 {
		c.MaxRate = d.MaxRate
	}
	if c.MaxFindings <= 0 {
		c.MaxFindings = d.MaxFindings
	}
	if c.MaxEntries <= 0 {
		c.MaxEntries = d.MaxEntries
	}
	if c.MaxMessageLen <= 0 {
		c.MaxMessageLen = d.MaxMessageLen
	}
	c.MaxFindings = min(c.MaxFindings, protocol.MaxFindings)
	c.MaxMessageLen = min(c.MaxMessageLen, protocol.MaxMessageLen)
	if c.PollInterval.Duration <= 0 {
		c.PollInterval = d.PollInterval
	}
	if c.ScanWindow.Duration <= 0 {
		c.ScanWindow = d.ScanWindow
	}
	if c.ScanBytes <= 0 {
		c.ScanBytes = d.ScanBytes
	}
	return c, nil
}

// entry is one error entry of any source.
type entry struct {
	Source   string // journald, a file path, kmsg, a Windows channel
	Unit     string // systemd unit, syslog identifier
	Provider string // Windows provider
	EventID  uint32
	RecordID uint64 // Windows event record id
	PID      int
	Priority int // syslog priority, 0 emerg … 7 debug
	Time     time.Time
	Message  string
}

// entrySink takes what a reader read. push hands over the error entries of
// one chunk together with the position just after it, so a position is
// never ahead of the entries that were taken; read counts every entry or
// line of the chunk, errors or not.
type entrySink interface {
	push(source string, pos Position, read uint64, entries []entry)
	// started says how reading of source began (see SourceData.Start).
	started(source, kind, how string)
	// failed records that source cannot be read now; nil clears it.
	failed(source string, err error)
	position(source string) (Position, bool)
}

// reader reads one kind of log. read starts at the sink's position of
// each source it reads; with follow it keeps reading until ctx ends,
// otherwise it returns once it has read what is there now. A source without
// a position is followed from its end, or scanned over its recent tail.
type reader interface {
	name() string
	read(ctx context.Context, follow bool, sink entrySink) error
}

// Logs is the logs check.
type Logs struct {
	cfg     Config
	filter  *entryFilter
	logger  *slog.Logger
	state   *checks.State
	readers []reader
	notes   []string // why sources are not read
	locks   map[string]*sync.Mutex

	agg      *aggregator
	watching atomic.Bool

	mu      sync.Mutex // serialises Run and Commit
	pending *batch     // drained but not yet committed
}

// New builds the logs check with the readers this system offers.
func New(cfg Config, env checks.Env) (*Logs, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	filter, err := newFilter(cfg)
	if err != nil {
		return nil, err
	}
	l := newCheck(cfg, filter, env)
	l.readers, l.notes = readers(cfg, filter, l.logger)
	for _, r := range l.readers {
		l.locks[r.name()] = &sync.Mutex{}
	}
	return l, nil
}

func newCheck(cfg Config, filter *entryFilter, env checks.Env) *Logs {
	l := &Logs{cfg: cfg, filter: filter, logger: env.Log(), state: env.State, locks: map[string]*sync.Mutex{}}
	l.agg = newAggregator(cfg)
	var saved map[string]Position
	if ok, err := l.state.Load(stateKey, &saved); err != nil {
		l.logger.Warn("logs_state_unreadable", "err", err)
	} else if ok {
		l.agg.committed(saved)
	}
	return l
}

const stateKey = "positions"

// Name returns "logs".
func (l *Logs) Name() string { return Name }

// Watch follows every source until ctx ends and triggers a run when an
// error entry arrives that is not a repeat held back by the window.
func (l *Logs) Watch(ctx context.Context, trigger func()) error {
	if len(l.readers) == 0 {
		return fmt.Errorf("no log source to follow: %s: %w", strings.Join(l.notes, "; "), errors.ErrUnsupported)
	}
	l.agg.setTrigger(trigger)
	l.watching.Store(true)
	defer l.watching.Store(false)
	var wg sync.WaitGroup
	for _, r := range l.readers {
		wg.Go(func() { l.follow(ctx, r) })
	}
	wg.Wait()
	return nil
}

// follow keeps r reading, restarting it with backoff when it stops. It
// holds r's lock for good, so a run does not also scan r.
func (l *Logs) follow(ctx context.Context, r reader) {
	mu := l.locks[r.name()]
	mu.Lock()
	defer mu.Unlock()
	backoff := time.Second
	for ctx.Err() == nil {
		began := time.Now()
		err := r.read(ctx, true, l.agg)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("stopped")
		}
		l.agg.failed(r.name(), err)
		l.logger.Warn("log_source_stopped", "source", r.name(), "err", err, "retry_in", backoff)
		if time.Since(began) > time.Minute {
			backoff = time.Second
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// Run reports the error entries gathered since the last run. When no Watch
// follows a source, the run reads it itself up to now: from its saved
// position, or else its recent tail.
func (l *Logs) Run(ctx context.Context) checks.Result {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.readers) == 0 {
		return checks.Unknown("no log source to read: %s", strings.Join(l.notes, "; "))
	}
	mode := "follow"
	for _, r := range l.readers {
		mu := l.locks[r.name()]
		if !mu.TryLock() {
			continue // followed by Watch
		}
		mode = "scan"
		if err := r.read(ctx, false, l.agg); err != nil {
			l.agg.failed(r.name(), err)
		}
		mu.Unlock()
	}
	b := l.agg.drain(time.Now())
	if l.pending != nil {
		b = l.pending.merge(b)
	}
	l.pending = b
	return l.result(b, mode)
}

// Commit makes the positions of the last run the baseline and saves them.
func (l *Logs) Commit() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pending == nil {
		return nil
	}
	all := l.agg.commit(l.pending.positions)
	l.pending = nil
	if err := l.state.Save(stateKey, all); err != nil {
		return fmt.Errorf("save log positions: %w", err)
	}
	return nil
}
