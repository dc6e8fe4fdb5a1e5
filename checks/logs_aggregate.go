package checks

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/guestdiag/guestdiag/protocol"
)

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
