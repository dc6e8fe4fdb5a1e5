package checks

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/guestdiag/guestdiag/protocol"
)

// LogsName is the registered name of the logs check.
const LogsName = "logs"

func init() {
	register(LogsName, true, time.Minute, 20*time.Second, DefaultLogsConfig,
		func(cfg LogsConfig, env Env) (Check, error) { return NewLogs(cfg, env) })
}

// Finding codes of the logs check.
const (
	CodeLogError    = "log.error"
	CodeLogCritical = "log.critical"
)

// Syslog priorities the check maps its sources onto. Windows levels map as
// Critical → logsPriCrit, Error → logsPriErr, Warning → logsPriWarning.
const (
	logsPriCrit    = 2
	logsPriErr     = 3
	logsPriWarning = 4
	logsPriUnknown = -1 // the source gave none; the keyword patterns decide
)

// LogsConfig tunes the logs check. Zero numbers and durations take the
// defaults of DefaultLogsConfig.
type LogsConfig struct {
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
	AggregateWindow Duration `json:"aggregate_window"`
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
	PollInterval Duration `json:"poll_interval"`
	// ScanWindow is how far back a run looks when nothing follows the
	// sources (check --once) and there is no saved position.
	ScanWindow Duration `json:"scan_window"`
	// ScanBytes is how much of a file's end such a run reads.
	ScanBytes int64 `json:"scan_bytes"`
}

// DefaultLogsConfig returns the defaults.
func DefaultLogsConfig() LogsConfig {
	return LogsConfig{
		Journal:          "auto",
		Kmsg:             "auto",
		Channels:         []string{"System", "Application"},
		MinPriority:      logsPriErr,
		ErrorKeywords:    []string{"err", "fail", "fatal", "crit", "panic", "oops", "segfault", "out of memory", "call trace"},
		ErrorPatterns:    []string{`(?i)\b(errors?|err|fail(s|ed|ure|ures)?|fatal|critical|panic|oops|segfault|out of memory|call trace)\b`},
		CriticalPatterns: []string{`(?i)\b(kernel panic|critical|fatal|emerg(ency)?)\b`},
		IgnorePatterns:   []string{`(?i)\b(no|0|zero|without) (errors?|failures?)\b`},
		AggregateWindow:  D(5 * time.Minute),
		MaxPerSource:     50,
		MaxRate:          200,
		MaxFindings:      50,
		MaxEntries:       20,
		MaxMessageLen:    1024,
		PollInterval:     D(250 * time.Millisecond),
		ScanWindow:       D(5 * time.Minute),
		ScanBytes:        64 << 10,
	}
}

var logsDefaultFiles = []string{"/var/log/syslog", "/var/log/messages", "/var/log/kern.log"}

func (c LogsConfig) withDefaults() (LogsConfig, error) {
	d := DefaultLogsConfig()
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

// logsEntry is one error entry of any source.
type logsEntry struct {
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

// logsSink takes what a reader read. push hands over the error entries of
// one chunk together with the position just after it, so a position is
// never ahead of the entries that were taken; read counts every entry or
// line of the chunk, errors or not.
type logsSink interface {
	push(source string, pos LogsPosition, read uint64, entries []logsEntry)
	// started says how reading of source began (see LogsSourceData.Start).
	started(source, kind, how string)
	// failed records that source cannot be read now; nil clears it.
	failed(source string, err error)
	position(source string) (LogsPosition, bool)
}

// logsReader reads one kind of log. read starts at the sink's position of
// each source it reads; with follow it keeps reading until ctx ends,
// otherwise it returns once it has read what is there now. A source without
// a position is followed from its end, or scanned over its recent tail.
type logsReader interface {
	name() string
	read(ctx context.Context, follow bool, sink logsSink) error
}

// Logs is the logs check.
type Logs struct {
	cfg     LogsConfig
	filter  *logsFilter
	logger  *slog.Logger
	state   *State
	readers []logsReader
	notes   []string // why sources are not read
	locks   map[string]*sync.Mutex

	agg      *logsAggregator
	watching atomic.Bool

	mu      sync.Mutex // serialises Run and Commit
	pending *logsBatch // drained but not yet committed
}

// NewLogs builds the logs check with the readers this system offers.
func NewLogs(cfg LogsConfig, env Env) (*Logs, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	filter, err := newLogsFilter(cfg)
	if err != nil {
		return nil, err
	}
	l := newLogs(cfg, filter, env)
	l.readers, l.notes = logsReaders(cfg, filter, l.logger)
	for _, r := range l.readers {
		l.locks[r.name()] = &sync.Mutex{}
	}
	return l, nil
}

func newLogs(cfg LogsConfig, filter *logsFilter, env Env) *Logs {
	l := &Logs{cfg: cfg, filter: filter, logger: env.logger(), state: env.State, locks: map[string]*sync.Mutex{}}
	l.agg = newLogsAggregator(cfg)
	var saved map[string]LogsPosition
	if ok, err := l.state.Load(logsStateKey, &saved); err != nil {
		l.logger.Warn("logs_state_unreadable", "err", err)
	} else if ok {
		l.agg.committed(saved)
	}
	return l
}

const logsStateKey = "positions"

// Name returns "logs".
func (l *Logs) Name() string { return LogsName }

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
func (l *Logs) follow(ctx context.Context, r logsReader) {
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
func (l *Logs) Run(ctx context.Context) Result {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.readers) == 0 {
		return Unknown("no log source to read: %s", strings.Join(l.notes, "; "))
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
	if err := l.state.Save(logsStateKey, all); err != nil {
		return fmt.Errorf("save log positions: %w", err)
	}
	return nil
}

// LogsData is the data of a logs result.
type LogsData struct {
	// Mode is "follow" when Watch read the sources as entries came, "scan"
	// when the run read them itself.
	Mode    string           `json:"mode"`
	Sources []LogsSourceData `json:"sources"`
	// Entries are the most recent error entries, raw, newest last.
	Entries         []LogsEntryData `json:"entries,omitempty"`
	EntriesLeftOut  uint64          `json:"entries_left_out,omitempty"`
	FindingsLeftOut int             `json:"findings_left_out,omitempty"`
	// NotRead says why sources were not read (absent, turned off).
	NotRead []string `json:"not_read,omitempty"`
}

// LogsSourceData describes one source over the period of the result.
type LogsSourceData struct {
	Source string `json:"source"`
	Kind   string `json:"kind"` // journald, file, kmsg, eventlog
	// Start says where reading began: saved_position, end (no saved
	// position: older entries are not reported), recent_tail (a scan
	// without saved position), beginning (a file or boot that is new since
	// the saved position), rotated (the saved file was found rotated).
	Start string `json:"start,omitempty"`
	// Position is where reading stopped; it is saved once the result is.
	Position   *LogsPosition `json:"position,omitempty"`
	Read       uint64        `json:"read"`
	Matched    uint64        `json:"matched"`
	Suppressed uint64        `json:"suppressed,omitempty"`
	Error      string        `json:"error,omitempty"`
}

// LogsPosition is a source's read position, as saved in the state.
type LogsPosition struct {
	Cursor   string `json:"cursor,omitempty"` // journald
	Dev      uint64 `json:"dev,omitempty"`    // file
	Inode    uint64 `json:"inode,omitempty"`
	Offset   int64  `json:"offset,omitempty"`
	HeadLen  int    `json:"head_len,omitempty"` // length and FNV-1a hash of the file's first bytes, to tell a reused inode
	HeadHash uint64 `json:"head_hash,omitempty"`
	NextSeq  uint64 `json:"next_seq,omitempty"` // kmsg
	BootID   string `json:"boot_id,omitempty"`
	Bookmark string `json:"bookmark,omitempty"` // Windows bookmark XML
}

// LogsEntryData is one raw error entry.
type LogsEntryData struct {
	Time     time.Time `json:"time"`
	Source   string    `json:"source"`
	Priority int       `json:"priority"`
	Unit     string    `json:"unit,omitempty"`
	PID      int       `json:"pid,omitempty"`
	Provider string    `json:"provider,omitempty"`
	EventID  uint32    `json:"event_id,omitempty"`
	RecordID uint64    `json:"record_id,omitempty"`
	Message  string    `json:"message"`
}

func (l *Logs) result(b *logsBatch, mode string) Result {
	data := LogsData{Mode: mode, NotRead: l.notes}
	for _, name := range slices.Sorted(maps.Keys(b.sources)) {
		s := b.sources[name]
		sd := LogsSourceData{Source: name, Kind: s.kind, Start: s.start, Read: s.read, Matched: s.matched, Suppressed: s.suppressed}
		if p, ok := b.positions[name]; ok {
			sd.Position = &p
		}
		if s.err != nil {
			sd.Error = protocol.Clip(s.err.Error(), 512)
		}
		data.Sources = append(data.Sources, sd)
	}
	if data.Sources == nil {
		data.Sources = []LogsSourceData{}
	}
	data.Entries, data.EntriesLeftOut = b.entries, b.entriesLeftOut

	groups := slices.Clone(b.groups)
	slices.SortStableFunc(groups, func(a, b *logsGroup) int {
		return cmp.Or(cmp.Compare(a.entry.Priority, b.entry.Priority), cmp.Compare(b.count, a.count), a.first.Compare(b.first))
	})
	if len(groups) > l.cfg.MaxFindings {
		data.FindingsLeftOut = len(groups) - l.cfg.MaxFindings
		groups = groups[:l.cfg.MaxFindings]
	}
	findings := make([]protocol.Finding, 0, len(groups))
	var total, crit uint64
	for _, g := range b.groups {
		total += g.count
		if g.entry.Priority <= logsPriCrit {
			crit += g.count
		}
	}
	for _, g := range groups {
		findings = append(findings, g.finding(l.cfg.MaxMessageLen))
	}

	var errs, suppressed []string
	var read uint64
	for _, sd := range data.Sources {
		read += sd.Read
		if sd.Error != "" {
			errs = append(errs, sd.Source+": "+sd.Error)
		}
		if sd.Suppressed > 0 {
			suppressed = append(suppressed, fmt.Sprintf("%d from %s", sd.Suppressed, sd.Source))
		}
	}
	var parts []string
	if len(findings) > 0 {
		s := logsPlural(total, "error entry", "error entries")
		if crit > 0 {
			s += fmt.Sprintf(" (%d critical)", crit)
		}
		s += " in " + logsPlural(uint64(len(b.groups)), "finding", "findings")
		if data.FindingsLeftOut > 0 {
			s += fmt.Sprintf(" (%d left out)", data.FindingsLeftOut)
		}
		parts = append(parts, s+": "+logsFirstMessages(findings, 3))
	} else {
		parts = append(parts, fmt.Sprintf("no error entries in %d entries read from %s", read, logsSourceList(data.Sources)))
	}
	if len(suppressed) > 0 {
		parts = append(parts, "suppressed by the rate cap "+strings.Join(suppressed, ", "))
	}
	var fromEnd []string
	for _, sd := range data.Sources {
		if sd.Start == "end" {
			fromEnd = append(fromEnd, sd.Source)
		}
	}
	if len(fromEnd) > 0 {
		parts = append(parts, "no saved position, so older entries of "+strings.Join(fromEnd, ", ")+" are not reported")
	}
	res := Result{Status: StatusOf(findings), Findings: findings, Data: data}
	if len(errs) > 0 {
		res.Status = protocol.StatusUnknown
		parts = append([]string{"could not read " + strings.Join(errs, "; ")}, parts...)
	}
	res.Summary = protocol.Clip(strings.Join(parts, "; "), protocol.MaxSummaryLen)
	return res
}

func logsPlural(n uint64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func logsFirstMessages(fs []protocol.Finding, n int) string {
	var b strings.Builder
	for i, f := range fs[:min(n, len(fs))] {
		if i > 0 {
			b.WriteString("; ")
		}
		if f.Unit != "" {
			b.WriteString(f.Unit + ": ")
		} else if f.Provider != "" {
			b.WriteString(f.Provider + ": ")
		}
		b.WriteString(protocol.Clip(f.Message, 160))
		if f.Count > 1 {
			fmt.Fprintf(&b, " (×%d)", f.Count)
		}
	}
	return b.String()
}

func logsSourceList(ss []LogsSourceData) string {
	if len(ss) == 0 {
		return "no source yet"
	}
	names := make([]string, len(ss))
	for i, s := range ss {
		names[i] = s.Source
	}
	return strings.Join(names, ", ")
}

// logsGroup is a set of identical entries: same source, unit, provider,
// event id and normalized message.
type logsGroup struct {
	key         string
	entry       logsEntry // the latest
	count       uint64    // not yet reported
	first, last time.Time
	reportedAt  time.Time // zero if never reported
}

func (g *logsGroup) finding(maxLen int) protocol.Finding {
	code, sev := logsCode(g.entry.Priority)
	first, last := g.first.UTC(), g.last.UTC()
	msg := logsOneLine(g.entry.Message)
	if msg == "" {
		msg = "(empty message)"
	}
	return protocol.Finding{
		Code:     code,
		Severity: sev,
		Message:  protocol.Clip(msg, maxLen),
		Source:   logsLabel(g.entry.Source),
		Provider: logsLabel(g.entry.Provider),
		EventID:  g.entry.EventID,
		Unit:     logsLabel(g.entry.Unit),
		Count:    g.count,
		First:    &first,
		Last:     &last,
	}
}

// logsCode maps a priority: emerg, alert and crit are critical; err is an
// error worth a warning; anything milder (only with min_priority above 3)
// is an error code at info severity.
func logsCode(pri int) (string, protocol.Severity) {
	switch {
	case pri <= logsPriCrit:
		return CodeLogCritical, protocol.SeverityCrit
	case pri == logsPriErr:
		return CodeLogError, protocol.SeverityWarn
	}
	return CodeLogError, protocol.SeverityInfo
}

// logsLabel makes guest text a valid one-line finding label.
func logsLabel(s string) string {
	if s == "" {
		return ""
	}
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
	return protocol.Clip(s, protocol.MaxSourceLen)
}

// logsOneLine trims a message and makes it valid UTF-8; a multi-line
// message keeps its lines.
func logsOneLine(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return strings.TrimSpace(s)
}

// logsSourceStats counts what one source read between two drains.
type logsSourceStats struct {
	kind, start               string
	read, matched, suppressed uint64
	err                       error
	tokens                    float64 // rate cap bucket
	refilled                  time.Time
	groups                    map[string]*logsGroup
}

// logsBatch is what one run drained.
type logsBatch struct {
	groups         []*logsGroup
	sources        map[string]*logsSourceStats
	positions      map[string]LogsPosition
	entries        []LogsEntryData
	entriesLeftOut uint64
	maxEntries     int
}

// merge adds a newer batch to b, which was never committed.
func (b *logsBatch) merge(n *logsBatch) *logsBatch {
	byKey := map[string]*logsGroup{}
	for _, g := range b.groups {
		byKey[g.key] = g
	}
	for _, g := range n.groups {
		if o, ok := byKey[g.key]; ok {
			o.count += g.count
			o.entry = g.entry
			o.last = g.last
			continue
		}
		b.groups = append(b.groups, g)
	}
	for name, s := range n.sources {
		o, ok := b.sources[name]
		if !ok {
			b.sources[name] = s
			continue
		}
		o.read += s.read
		o.matched += s.matched
		o.suppressed += s.suppressed
		o.err = s.err
		if s.start != "" && o.start == "" {
			o.start = s.start
		}
	}
	for name, p := range n.positions {
		b.positions[name] = p
	}
	b.entries = append(b.entries, n.entries...)
	b.entriesLeftOut += n.entriesLeftOut
	if over := len(b.entries) - b.maxEntries; over > 0 {
		b.entries = slices.Delete(b.entries, 0, over)
		b.entriesLeftOut += uint64(over)
	}
	return b
}

// logsAggregator gathers the error entries of every source between runs,
// in bounded memory: at most MaxPerSource distinct entries per source, at
// most MaxRate entries per second per source.
type logsAggregator struct {
	cfg LogsConfig

	mu        sync.Mutex
	trigger   func()
	sources   map[string]*logsSourceStats
	current   map[string]LogsPosition // where reading has got to
	saved     map[string]LogsPosition // committed
	recent    []LogsEntryData         // ring of the latest entries
	recentAt  int
	recentOut uint64
}

func newLogsAggregator(cfg LogsConfig) *logsAggregator {
	return &logsAggregator{cfg: cfg, sources: map[string]*logsSourceStats{}, current: map[string]LogsPosition{}, saved: map[string]LogsPosition{}}
}

func (a *logsAggregator) setTrigger(f func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.trigger = f
}

func (a *logsAggregator) committed(p map[string]LogsPosition) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, v := range p {
		a.saved[k] = v
		a.current[k] = v
	}
}

// commit records ps as saved and returns every saved position.
func (a *logsAggregator) commit(ps map[string]LogsPosition) map[string]LogsPosition {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, v := range ps {
		a.saved[k] = v
	}
	return maps.Clone(a.saved)
}

func (a *logsAggregator) position(source string) (LogsPosition, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p, ok := a.current[source]
	return p, ok
}

func (a *logsAggregator) stats(source string) *logsSourceStats {
	s := a.sources[source]
	if s == nil {
		s = &logsSourceStats{tokens: float64(a.cfg.MaxRate), groups: map[string]*logsGroup{}}
		a.sources[source] = s
	}
	return s
}

func (a *logsAggregator) started(source, kind, how string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.stats(source)
	s.kind, s.start, s.err = kind, how, nil
}

func (a *logsAggregator) failed(source string, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stats(source).err = err
}

func (a *logsAggregator) push(source string, pos LogsPosition, read uint64, entries []logsEntry) {
	now := time.Now()
	a.mu.Lock()
	s := a.stats(source)
	s.err = nil
	s.read += read
	a.current[source] = pos
	fire := false
	for _, e := range entries {
		s.matched++
		if !s.take(now, a.cfg.MaxRate) {
			s.suppressed++
			continue
		}
		key := logsKey(e)
		g := s.groups[key]
		if g == nil {
			if len(s.groups) >= a.cfg.MaxPerSource {
				s.evict(now, a.cfg.AggregateWindow.Duration)
			}
			if len(s.groups) >= a.cfg.MaxPerSource {
				s.suppressed++
				continue
			}
			g = &logsGroup{key: key, first: e.Time}
			s.groups[key] = g
		}
		if g.count == 0 {
			g.first = e.Time
			if g.reportedAt.IsZero() || now.Sub(g.reportedAt) >= a.cfg.AggregateWindow.Duration {
				fire = true
			}
		}
		g.count++
		g.entry = e
		if e.Time.After(g.last) {
			g.last = e.Time
		}
		if e.Time.Before(g.first) {
			g.first = e.Time
		}
		a.remember(e)
	}
	trigger := a.trigger
	a.mu.Unlock()
	if fire && trigger != nil {
		trigger()
	}
}

// take spends a token of the source's rate bucket.
func (s *logsSourceStats) take(now time.Time, rate int) bool {
	if !s.refilled.IsZero() {
		s.tokens = min(float64(rate), s.tokens+now.Sub(s.refilled).Seconds()*float64(rate))
	}
	s.refilled = now
	if s.tokens < 1 {
		return false
	}
	s.tokens--
	return true
}

// evict forgets groups that have nothing to report and whose window is
// over.
func (s *logsSourceStats) evict(now time.Time, window time.Duration) {
	for k, g := range s.groups {
		if g.count == 0 && now.Sub(g.reportedAt) >= window {
			delete(s.groups, k)
		}
	}
}

func (a *logsAggregator) remember(e logsEntry) {
	d := LogsEntryData{Time: e.Time.UTC(), Source: logsLabel(e.Source), Priority: e.Priority, Unit: logsLabel(e.Unit), PID: e.PID,
		Provider: logsLabel(e.Provider), EventID: e.EventID, RecordID: e.RecordID, Message: protocol.Clip(logsOneLine(e.Message), 512)}
	if len(a.recent) < a.cfg.MaxEntries {
		a.recent = append(a.recent, d)
		return
	}
	a.recent[a.recentAt] = d
	a.recentAt = (a.recentAt + 1) % len(a.recent)
	a.recentOut++
}

// drain takes everything reportable at now: groups seen for the first
// time, and repeats whose window has passed. Repeats still inside their
// window stay for a later run.
func (a *logsAggregator) drain(now time.Time) *logsBatch {
	a.mu.Lock()
	defer a.mu.Unlock()
	b := &logsBatch{sources: map[string]*logsSourceStats{}, positions: maps.Clone(a.current), maxEntries: a.cfg.MaxEntries}
	window := a.cfg.AggregateWindow.Duration
	for name, s := range a.sources {
		for k, g := range s.groups {
			if g.count > 0 && (g.reportedAt.IsZero() || now.Sub(g.reportedAt) >= window) {
				cp := *g
				b.groups = append(b.groups, &cp)
				g.count, g.reportedAt = 0, now
			}
			if g.count == 0 && now.Sub(g.reportedAt) >= window {
				delete(s.groups, k)
			}
		}
		b.sources[name] = &logsSourceStats{kind: s.kind, start: s.start, read: s.read, matched: s.matched, suppressed: s.suppressed, err: s.err}
		s.read, s.matched, s.suppressed, s.start = 0, 0, 0, ""
	}
	b.entries = make([]LogsEntryData, 0, a.cfg.MaxEntries)
	b.entries = append(b.entries, a.recent[a.recentAt:]...)
	b.entries = append(b.entries, a.recent[:a.recentAt]...)
	b.entriesLeftOut = a.recentOut
	a.recent, a.recentAt, a.recentOut = a.recent[:0], 0, 0
	return b
}

// logsKey identifies identical entries.
func logsKey(e logsEntry) string {
	return e.Source + "\x00" + e.Unit + "\x00" + e.Provider + "\x00" + fmt.Sprint(e.EventID) + "\x00" + logsNormalize(e.Message)
}

// logsNormalize makes messages that differ only in numbers, hex values,
// ids or spacing equal: every run of digits, a 0x number or a long hex
// word becomes "#", whitespace runs become one space, and at most 512
// bytes are kept.
func logsNormalize(m string) string {
	var b strings.Builder
	b.Grow(min(len(m), 512))
	space := false
	for i := 0; i < len(m) && b.Len() < 512; {
		c := m[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			space = b.Len() > 0
			i++
			continue
		case c == '0' && i+2 < len(m) && (m[i+1] == 'x' || m[i+1] == 'X') && logsIsHex(m[i+2]):
			i += 2
			for i < len(m) && logsIsHex(m[i]) {
				i++
			}
			c = '#'
		case logsIsHex(c) && (i == 0 || !logsIsWord(m[i-1])) && logsHexRun(m, i) >= 8:
			i += logsHexRun(m, i)
			c = '#'
		case c >= '0' && c <= '9':
			for i < len(m) && m[i] >= '0' && m[i] <= '9' {
				i++
			}
			c = '#'
		default:
			i++
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteByte(c)
	}
	return b.String()
}

func logsIsHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func logsIsWord(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// logsHexRun is the length of the hex word at m[i:] if it holds a digit
// and ends at a word boundary, else 0.
func logsHexRun(m string, i int) int {
	j, digit := i, false
	for j < len(m) && logsIsHex(m[j]) {
		digit = digit || m[j] <= '9'
		j++
	}
	if !digit || j < len(m) && logsIsWord(m[j]) {
		return 0
	}
	return j - i
}

// logsFilter decides which entries are errors.
type logsFilter struct {
	minPri   int
	keywords [][]byte  // lowercase
	first    [256]bool // first bytes of keywords, both cases
	errorRE  *regexp.Regexp
	critRE   *regexp.Regexp
	ignoreRE *regexp.Regexp
}

func newLogsFilter(cfg LogsConfig) (*logsFilter, error) {
	f := &logsFilter{minPri: cfg.MinPriority}
	var err error
	if f.errorRE, err = logsCompile("error_patterns", cfg.ErrorPatterns); err != nil {
		return nil, err
	}
	if f.critRE, err = logsCompile("critical_patterns", cfg.CriticalPatterns); err != nil {
		return nil, err
	}
	if f.ignoreRE, err = logsCompile("ignore_patterns", cfg.IgnorePatterns); err != nil {
		return nil, err
	}
	for _, k := range cfg.ErrorKeywords {
		k = strings.ToLower(k)
		if k == "" {
			continue
		}
		f.keywords = append(f.keywords, []byte(k))
		f.first[k[0]] = true
		f.first[strings.ToUpper(k[:1])[0]] = true
	}
	return f, nil
}

func logsCompile(key string, patterns []string) (*regexp.Regexp, error) {
	if len(patterns) == 0 {
		return nil, nil
	}
	for _, p := range patterns {
		if _, err := regexp.Compile(p); err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
	}
	return regexp.Compile("(?:" + strings.Join(patterns, ")|(?:") + ")")
}

// mayMatch is the cheap test every line without a priority goes through:
// does it contain one of the keywords, in any case?
func (f *logsFilter) mayMatch(line []byte) bool {
	if len(f.keywords) == 0 {
		return true
	}
	for i := 0; i < len(line); i++ {
		if !f.first[line[i]] {
			continue
		}
		for _, k := range f.keywords {
			if logsHasPrefixFold(line[i:], k) {
				return true
			}
		}
	}
	return false
}

// logsHasPrefixFold reports whether s starts with the lowercase ASCII k,
// ignoring case.
func logsHasPrefixFold(s, k []byte) bool {
	if len(s) < len(k) {
		return false
	}
	for j, c := range k {
		if s[j]|0x20 != c && s[j] != c {
			return false
		}
	}
	return true
}

// classify returns the priority of an entry and whether it is reported.
// pri is the source's priority, or logsPriUnknown: then the patterns
// decide, and a match is err, or crit if a critical pattern matches too.
func (f *logsFilter) classify(pri int, msg []byte) (int, bool) {
	if pri == logsPriUnknown {
		if f.errorRE == nil || !f.errorRE.Match(msg) {
			return 0, false
		}
		pri = logsPriErr
		if f.critRE != nil && f.critRE.Match(msg) {
			pri = logsPriCrit
		}
	}
	if pri > f.minPri {
		return pri, false
	}
	if f.ignoreRE != nil && f.ignoreRE.Match(msg) {
		return pri, false
	}
	return pri, true
}
